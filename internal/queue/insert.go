package queue

import (
	"context"
	"database/sql"
	"encoding/json"

	"github.com/google/uuid"
)

// A run's job is inserted by statements of ours rather than by River's
// InsertTx, which is made for batches and unique jobs. On PostgreSQL,
// through database/sql, it encodes thirteen parameter arrays as text that
// pgx parses back, runs a CTE with ON CONFLICT, decodes the whole row it
// returns, and sends the notification as a second statement; on SQLite it
// builds and parses a JSON document of the batch, and does the same. With
// the workers busy and 4 clients posting back to back on a 2-core host,
// InsertTx was half the cost of accepting a run:
//
//	PostgreSQL  660-690 runs/s (runbox 1.0 ms and PostgreSQL 1.2 ms of CPU
//	            a run); with these statements 860-980/s (0.45-0.5 and
//	            0.76-0.85 ms); with no job at all 1,280-1,320/s.
//	SQLite      990-1,120 runs/s; with this statement and River's
//	            notification row 1,250-1,330/s, without the row (wake.go)
//	            1,370-1,530/s; with no job at all 2,000-2,080/s.
//
// The row is the one InsertTx writes for an ExecuteArgs job without
// options: every column it leaves to River's defaults (queue "default",
// priority 1, state "available", no tags or unique key) is left to them
// here, and on PostgreSQL the notification is the one River's producers
// listen for (on SQLite, see wake.go). River still fetches, retries,
// rescues and completes the job. The tests compare our row with
// InsertTx's column by column and check, on both drivers, that an idle
// worker wakes at once, so that a River upgrade that changes either fails
// CI.

// insertJobPostgres inserts the job and notifies in one statement. River
// qualifies its channel by the schema its tables are in (the current one).
const insertJobPostgres = `WITH job AS (
	INSERT INTO river_job (args, kind, max_attempts) VALUES ($1, $2, $3) RETURNING queue)
SELECT pg_notify(current_schema() || '.river_insert', json_build_object('queue', queue)::text) FROM job`

// On SQLite, River keeps JSON as JSONB and times as text in this exact
// format (at millisecond precision, which its fetch compares against).
// No notification row: see wake.go.
const insertJobSQLite = `INSERT INTO river_job (args, kind, max_attempts, created_at, scheduled_at)
	VALUES (jsonb(?1), ?2, ?3, datetime('now', 'subsec'), datetime('now', 'subsec'))`

// insertJob inserts the job of an execution inside tx.
func (q *Queue) insertJob(ctx context.Context, tx *sql.Tx, executionID uuid.UUID) error {
	args, err := json.Marshal(ExecuteArgs{ExecutionID: executionID})
	if err != nil {
		return err
	}
	kind := ExecuteArgs{}.Kind()
	if q.pool != nil {
		_, err = tx.ExecContext(ctx, insertJobPostgres, string(args), kind, q.max)
		return err
	}
	_, err = tx.ExecContext(ctx, insertJobSQLite, string(args), kind, q.max)
	return err
}
