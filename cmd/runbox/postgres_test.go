package main

import (
	"testing"

	"github.com/runbox/runbox/internal/pgtest"
)

// The same end-to-end suites, on PostgreSQL instead of the embedded SQLite.

func TestPostgresLifecycle(t *testing.T) {
	requireRoot(t)
	s := start(t, "serve", map[string]string{"RUNBOX_DATABASE_URL": pgtest.Database(t)})
	testLifecycle(t, s)
}

func TestPostgresRunVerdicts(t *testing.T) {
	requireRoot(t)
	s := start(t, "serve", map[string]string{
		"RUNBOX_DATABASE_URL":  pgtest.Database(t),
		"RUNBOX_RUN_WALL_TIME": "1s", "RUNBOX_RUN_CPU_TIME": "1s",
	})
	testRunVerdicts(t, s)
}
