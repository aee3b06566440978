package queue

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"

	"github.com/runbox/runbox/internal/pgtest"
	"github.com/runbox/runbox/internal/store"
	"github.com/runbox/runbox/internal/store/storetest"
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

// openStore returns a migrated store (River's tables included) and its URL.
func openStore(t *testing.T, driver string) (store.Store, string) {
	t.Helper()
	if driver == "sqlite" {
		return storetest.OpenSQLite(t), ""
	}
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

// insertJob runs the job statement of execution id in a transaction of its
// own, and returns it.
func insertJob(t *testing.T, st store.Store, q *Queue, id uuid.UUID) store.Statement {
	t.Helper()
	job := q.JobOf(id)
	inTx(t, st.DB(), func(tx *sql.Tx) error {
		_, err := tx.ExecContext(context.Background(), job.SQL, job.Args...)
		return err
	})
	return job
}

// jobColumns are River's job columns as text, but for the id, the times
// (checked to be now, in River's format) and, on SQLite, the nonce River
// adds to the metadata of every job it inserts to tell a duplicate apart.
var jobColumns = map[string]string{
	"postgres": `SELECT concat_ws('|', state, attempt, max_attempts, priority, args, kind, metadata, queue, tags,
			unique_key, unique_states, attempted_at, attempted_by, errors, finalized_at),
		created_at > now() - interval '1 minute' AND scheduled_at <= now()
		FROM river_job ORDER BY id`,
	"sqlite": `SELECT concat_ws('|', state, attempt, max_attempts, priority, json(args), kind,
			json_remove(json(metadata), '$."` + riverdriver.UniqueInsertMetadataKey + `"'), queue, json(tags),
			unique_key, unique_states, attempted_at, json(attempted_by), json(errors), finalized_at),
		created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]'
			AND scheduled_at = created_at AND created_at > datetime('now', '-1 minute', 'subsec')
		FROM river_job ORDER BY id`,
}

// TestEnqueueWritesRiversRow: the job row of our insert is the one River's
// InsertTx writes for the same execution.
func TestEnqueueWritesRiversRow(t *testing.T) {
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			ctx := context.Background()
			st, u := openStore(t, driver)
			q, err := New(ctx, Options{Store: st, DatabaseURL: u, MaxAttempts: 4, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			// Without its execution's row, the statement writes nothing.
			insertJob(t, st, q, uuid.New())
			id := storetest.NewExecution(t, st, storetest.NewSession(t, st, "")).ID
			insertJob(t, st, q, id)
			inTx(t, st.DB(), func(tx *sql.Tx) error {
				_, err := q.client.InsertTx(ctx, tx, ExecuteArgs{ExecutionID: id}, &river.InsertOpts{MaxAttempts: q.max})
				return err
			})
			rows, err := st.DB().QueryContext(ctx, jobColumns[driver])
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
					t.Errorf("job %s: created_at or scheduled_at is not now, in River's format", row)
				}
				got = append(got, row)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 || got[0] != got[1] {
				t.Fatalf("our job row and River's differ:\nours:  %s\nRiver: %s", got[0], got[1])
			}
		})
	}
}

// TestEnqueueWakesAWorker: an idle worker fetches a job we insert when
// its notification arrives (on SQLite, when the inserting process wakes
// its listener, as `serve` does), not at its next poll, a minute away.
func TestEnqueueWakesAWorker(t *testing.T) {
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			ctx := context.Background()
			st, u := openStore(t, driver)
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
			for i := range 3 {
				id := storetest.NewExecution(t, st, storetest.NewSession(t, st, "")).ID
				q.Committed(insertJob(t, st, q, id))
				select {
				case got := <-w.got:
					if got != id {
						t.Fatalf("worked %v, enqueued %v", got, id)
					}
				case <-time.After(15 * time.Second):
					t.Fatal(fmt.Sprintf("job %d was not fetched within 15 s of its insert: no notification woke the worker", i))
				}
			}
			if driver != "postgres" {
				return
			}
			// A job whose statement carries no notification, because one
			// was handed out just before (as to a run then refused): the
			// notification that follows its commit wakes the worker.
			time.Sleep(200 * time.Millisecond) // past River's fetch after the last job
			id := storetest.NewExecution(t, st, storetest.NewSession(t, st, "")).ID
			q.notify.claim()
			job := insertJob(t, st, q, id)
			if job.SQL != jobPostgresSilent {
				t.Fatal("a job inserted right after a notification carried one of its own")
			}
			q.Committed(job)
			select {
			case got := <-w.got:
				if got != id {
					t.Fatalf("worked %v, enqueued %v", got, id)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("a job inserted without a notification was not fetched within 15 s of its commit")
			}
		})
	}
}
