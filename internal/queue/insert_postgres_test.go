package queue

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"

	"github.com/runbox/runbox/internal/pgtest"
	"github.com/runbox/runbox/internal/store"
)

// signalWorker reports each execution it is given.
type signalWorker struct {
	river.WorkerDefaults[ExecuteArgs]
	got chan uuid.UUID
}

func (w *signalWorker) Work(ctx context.Context, job *river.Job[ExecuteArgs]) error {
	w.got <- job.Args.ExecutionID
	return nil
}

func openPostgres(t *testing.T) (store.Store, string) {
	t.Helper()
	u := pgtest.Database(t)
	st, err := store.Open(context.Background(), u, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := store.MigrateAll(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	return st, u
}

func inTx(t *testing.T, db *sql.DB, fn func(tx *sql.Tx) error) {
	t.Helper()
	tx, err := db.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestPostgresEnqueueWritesRiversRow: the job row of our insert is the
// one River's InsertTx writes for the same execution, column for column
// but for its id and times.
func TestPostgresEnqueueWritesRiversRow(t *testing.T) {
	ctx := context.Background()
	st, u := openPostgres(t)
	q, err := New(ctx, Options{Store: st, DatabaseURL: u, MaxAttempts: 4, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	id := uuid.New()
	inTx(t, st.DB(), func(tx *sql.Tx) error { return q.Enqueue(ctx, tx, id) })
	inTx(t, st.DB(), func(tx *sql.Tx) error {
		_, err := q.client.InsertTx(ctx, tx, ExecuteArgs{ExecutionID: id}, &river.InsertOpts{MaxAttempts: q.max})
		return err
	})
	rows, err := st.DB().QueryContext(ctx, `SELECT to_jsonb(j) - 'id' - 'created_at' - 'scheduled_at',
		created_at > now() - interval '1 minute' AND scheduled_at <= now()
		FROM river_job j ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var row string
		var timesNow bool
		if err := rows.Scan(&row, &timesNow); err != nil {
			t.Fatal(err)
		}
		if !timesNow {
			t.Errorf("job %s: created_at or scheduled_at is not now", row)
		}
		got = append(got, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != got[1] {
		t.Fatalf("our job row and River's differ:\nours:  %s\nRiver: %s", got[0], got[1])
	}
}

// TestPostgresEnqueueWakesAWorker: an idle worker fetches a job we insert
// when its notification arrives, not at its next poll (a minute away).
func TestPostgresEnqueueWakesAWorker(t *testing.T) {
	ctx := context.Background()
	st, u := openPostgres(t)
	w := &signalWorker{got: make(chan uuid.UUID, 1)}
	workers := river.NewWorkers()
	river.AddWorker(workers, w)
	q, err := New(ctx, Options{Store: st, DatabaseURL: u, Workers: workers, Concurrency: 1, MaxAttempts: 2,
		JobTimeout: time.Minute, RescueAfter: time.Hour, FetchPollInterval: time.Minute,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if err := q.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		q.Stop(sctx)
	}()
	time.Sleep(500 * time.Millisecond) // past River's first fetch, which finds nothing
	id := uuid.New()
	inTx(t, st.DB(), func(tx *sql.Tx) error { return q.Enqueue(ctx, tx, id) })
	select {
	case got := <-w.got:
		if got != id {
			t.Fatalf("worked %v, enqueued %v", got, id)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the job was not fetched within 15 s of its insert: no notification woke the worker")
	}
}
