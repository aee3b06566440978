package queue

import (
	"encoding/json"

	"github.com/google/uuid"
	"github.com/riverqueue/river"

	"github.com/runbox/runbox/internal/store"
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

// The job is inserted from its execution's row (the store's table, read by
// primary key only), so that the statement writes nothing when that row
// does not exist: on PostgreSQL the store sends it in one round trip with
// the row's conditional insert (store.CreateExecution).

// jobPostgres inserts the job and notifies in one statement; jobPostgresSilent
// only inserts it (see notify.go). River qualifies its channel by the schema
// its tables are in (the current one).
const (
	jobPostgres = `WITH job AS (` + jobPostgresSilent + `)
SELECT pg_notify(current_schema() || '.river_insert', json_build_object('queue', queue)::text) FROM job`
	jobPostgresSilent = `INSERT INTO river_job (args, kind, max_attempts)
	SELECT CAST($1 AS jsonb), CAST($2 AS text), CAST($3 AS smallint) FROM executions WHERE id = $4 RETURNING queue`
	// notifyPostgres is the notification a job inserted by jobPostgresSilent
	// gets later.
	notifyPostgres = `SELECT pg_notify(current_schema() || '.river_insert', '{"queue": "` + river.QueueDefault + `"}')`
)

// On SQLite, River keeps JSON as JSONB and times as text in this exact
// format (at millisecond precision, which its fetch compares against).
// No notification row: see wake.go.
const jobSQLite = `INSERT INTO river_job (args, kind, max_attempts, created_at, scheduled_at)
	SELECT jsonb(?1), ?2, ?3, datetime('now', 'subsec'), datetime('now', 'subsec') FROM executions WHERE id = ?4`

// JobOf is the statement that inserts the job of an execution, to be run
// in the transaction that inserts the execution's row.
func (q *Queue) JobOf(executionID uuid.UUID) store.Statement {
	args, err := json.Marshal(ExecuteArgs{ExecutionID: executionID})
	if err != nil {
		panic(err) // a struct of one UUID always encodes
	}
	if q.pool != nil {
		query := jobPostgresSilent
		if q.notify.claim() {
			query = jobPostgres
		}
		// The id as pgx encodes a UUID directly: the store sends this
		// statement to pgx itself, and through uuid.UUID's Value method
		// pgx would first fail to encode a string in binary.
		return store.Statement{SQL: query, Args: []any{string(args), ExecuteArgs{}.Kind(), q.max, [16]byte(executionID)}}
	}
	return store.Statement{SQL: jobSQLite, Args: []any{string(args), ExecuteArgs{}.Kind(), q.max, executionID.String()}}
}
