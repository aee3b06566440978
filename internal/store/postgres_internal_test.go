package store

import (
	"context"
	"testing"

	"github.com/runbox/runbox/internal/pgtest"
)

// TestAutosavesSkipTheFlushWaitOnly: autosaves commit without waiting for
// the WAL flush; every other write waits for it.
func TestAutosavesSkipTheFlushWaitOnly(t *testing.T) {
	st, err := Open(context.Background(), pgtest.Database(t), "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := st.(*sqlStore)
	var saves, rest string
	if err := s.saves.QueryRowContext(context.Background(), "SHOW synchronous_commit").Scan(&saves); err != nil {
		t.Fatal(err)
	}
	if err := s.db.QueryRowContext(context.Background(), "SHOW synchronous_commit").Scan(&rest); err != nil {
		t.Fatal(err)
	}
	if saves != "off" || rest != "on" {
		t.Fatalf("synchronous_commit: autosaves %s, everything else %s", saves, rest)
	}
}
