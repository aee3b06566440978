package store_test

import (
	"context"
	"database/sql"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/runbox/runbox/internal/execution"
	"github.com/runbox/runbox/internal/pgtest"
	"github.com/runbox/runbox/internal/store"
	"github.com/runbox/runbox/internal/store/storetest"
)

var pgURLs sync.Map // store.Store → its database URL

// freshPGURL creates a database of its own for the test and drops it at cleanup.
func freshPGURL(t *testing.T) string { return pgtest.Database(t) }

func openPGURL(t *testing.T, u string) store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), u, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() }) // runs before the DROP DATABASE registered earlier
	pgURLs.Store(s, u)
	return s
}

func openPG(t *testing.T) store.Store {
	t.Helper()
	s := openPGURL(t, freshPGURL(t))
	if err := store.MigrateAll(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPostgresContract(t *testing.T) {
	storetest.Run(t, openPG, storetest.Options{
		Reopen: func(t *testing.T, s store.Store) store.Store {
			u, _ := pgURLs.Load(s)
			return openPGURL(t, u.(string))
		},
	})
}

func TestPostgresConcurrentMigrate(t *testing.T) {
	u := freshPGURL(t)
	ctx := context.Background()
	const n = 4
	errs := make(chan error, n)
	for range n {
		s := openPGURL(t, u)
		go func() { errs <- store.MigrateAll(ctx, s) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	s := openPGURL(t, u)
	if err := store.MigrateAll(ctx, s); err != nil {
		t.Fatal(err)
	}
	// Each version recorded once, none missing.
	var rows, versions, latest int
	err := s.DB().QueryRowContext(ctx, `SELECT COUNT(*), COUNT(DISTINCT version), MAX(version) FROM schema_migrations`).Scan(&rows, &versions, &latest)
	if err != nil || rows != versions || rows != latest || latest < 3 {
		t.Fatalf("schema_migrations: %d rows, %d versions, latest %d, %v", rows, versions, latest, err)
	}
}

func TestPostgresUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Port 1 on loopback: connection refused.
	_, err := store.Open(ctx, "postgres://u:secret@127.0.0.1:1/db?sslmode=disable&connect_timeout=2", "")
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Open on a closed port: %v, want ErrUnavailable", err)
	}
}

func TestPostgresQueueDepth100k(t *testing.T) {
	s := openPG(t)
	ctx := context.Background()
	ss := storetest.NewSession(t, s, "")
	start := time.Now()
	_, err := s.DB().ExecContext(ctx, `INSERT INTO executions (id, session_id, tenant, language, source_code, stdin, status, queued_at, request_hash)
		SELECT gen_random_uuid(), $1, '', 'python', 'print(1)', '', 'QUEUED', i, '' FROM generate_series(1, 100000) AS i`, ss.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().ExecContext(ctx, `VACUUM ANALYZE executions`); err != nil {
		t.Fatal(err)
	}
	t.Logf("postgres: inserted 100k queued rows in %v", time.Since(start))
	rows, err := s.DB().QueryContext(ctx, `EXPLAIN SELECT COUNT(*) FROM executions WHERE status = 'QUEUED'`)
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	rows.Close()
	if !strings.Contains(strings.Join(plan, "\n"), "executions_queued_idx") {
		t.Fatalf("QueueDepth does not use the partial index:\n%s", strings.Join(plan, "\n"))
	}
	storetest.MeasureQueueDepth(t, s, 100000)
}

// The listener survives its connection being killed: it reconnects and
// hears later notifications.
func TestPostgresListenReconnect(t *testing.T) {
	u := freshPGURL(t)
	listener := openPGURL(t, u)
	if err := store.MigrateAll(context.Background(), listener); err != nil {
		t.Fatal(err)
	}
	writer := openPGURL(t, u)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan uuid.UUID, 100)
	go func() { _ = listener.ListenFinished(ctx, func(id uuid.UUID) { got <- id }) }()
	ss := storetest.NewSession(t, writer, "")
	finished := map[uuid.UUID]bool{}
	hear := func() {
		t.Helper()
		deadline := time.After(15 * time.Second)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case id := <-got:
				if !finished[id] {
					t.Fatalf("notified of %s, which was not finished", id)
				}
				return
			case <-tick.C:
				e := storetest.NewExecution(t, writer, ss)
				finished[e.ID] = true
				if _, err := writer.StartAttempt(ctx, e.ID, 1, time.Now()); err != nil {
					t.Fatal(err)
				}
				if _, err := writer.FinishAttempt(ctx, e.ID, 1, &execution.Result{Status: execution.Completed}, time.Now()); err != nil {
					t.Fatal(err)
				}
			case <-deadline:
				t.Fatal("no notification")
			}
		}
	}
	hear()
	var killed int
	u2, _ := url.Parse(u)
	admin, err := sql.Open("pgx", pgtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.QueryRowContext(ctx, `SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = $1 AND query LIKE 'LISTEN%'`, strings.TrimPrefix(u2.Path, "/")).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminated %d listeners: %v", killed, err)
	}
	for len(got) > 0 {
		<-got
	}
	hear()
}
