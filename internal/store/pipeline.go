package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/runbox/runbox/internal/execution"
)

// Accepting a run on PostgreSQL took five round trips through database/sql:
// BEGIN, the session's lock, the insert, the job, COMMIT. With the workers
// busy and 100,000 runs queued on a 2-vCPU host, they were most of a POST
// /run's cost: a third of the server's CPU went to the syscalls of those
// exchanges, and PostgreSQL's backends paid as much again.
//
// createPipelined sends the lock, the insert and the job as one pipeline
// that ends in a single Sync, so one round trip. PostgreSQL runs what comes
// before a Sync outside an explicit transaction as one implicit transaction:
// it commits at the Sync (durably: this is the pool that waits for the WAL
// flush), and rolls all of it back if one statement fails. Each statement
// still takes its snapshot when it starts, so the insert's in-flight counts
// see every run of the session committed before the lock was granted, as in
// CreateExecution's transaction.
//
// What the pipeline cannot do is branch: the insert is conditional on
// everything CreateExecution checks, and the job statement writes nothing
// without the execution's row (Store.CreateExecution). When nothing was
// inserted (closed or unknown session, a cap reached, a replayed key, or a
// client near its cap, whose runs must take the advisory lock), it returns
// nil, nil and CreateExecution's transaction decides, as it always did.
func (s *sqlStore) createPipelined(ctx context.Context, e *execution.Execution, queuedAt time.Time,
	caps InflightCaps, job Statement) (*execution.Execution, error) {
	if caps.Client > 0 && caps.Client <= clientLockMargin {
		return nil, nil // every run of such a client is near its cap
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT 1 FROM sessions WHERE id = $1 AND tenant = $2 FOR UPDATE`, s.d.uuidArg(e.SessionID), e.Tenant)
	// Far from its cap (the transaction's rule), a client's runs need no lock.
	clientBound, farBelow := `$10 >= 0`, 0
	if caps.Client > 0 {
		clientBound, farBelow = clientBacklog("$9", "$10")+` < $10`, caps.Client-clientLockMargin
	}
	b.Queue(`INSERT INTO executions
		(id, session_id, tenant, client, language, source_code, stdin, status, queued_at, attempts, idempotency_key, request_hash)
		SELECT $1, s.id, s.tenant, $9, s.language, s.source_code, $4, 'QUEUED', $5, 0, $6, $7 FROM sessions AS s
		WHERE s.id = $2 AND s.tenant = $3 AND s.status = 'ACTIVE'
		AND `+sessionInflight("$2")+` < $8 AND `+clientBound+`
		ON CONFLICT (session_id, idempotency_key) DO NOTHING
		RETURNING language, source_code`,
		s.d.uuidArg(e.ID), s.d.uuidArg(e.SessionID), e.Tenant, clean(e.Stdin), toDB(queuedAt),
		nullString(e.IdempotencyKey), e.RequestHash, caps.Session, e.Client, farBelow)
	if job.SQL != "" {
		b.Queue(job.SQL, job.Args...)
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var stored *execution.Execution
	err = conn.Raw(func(driverConn any) error {
		c, ok := driverConn.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("store: unexpected PostgreSQL driver connection %T", driverConn)
		}
		res := c.Conn().SendBatch(ctx, b)
		defer res.Close() // on an early return; closing twice is harmless
		if _, err := res.Exec(); err != nil {
			return err
		}
		var lang, src string
		err := res.QueryRow().Scan(&lang, &src)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		inserted := err == nil
		if job.SQL != "" {
			if _, err := res.Exec(); err != nil {
				return fmt.Errorf("store: enqueue: %w", err)
			}
		}
		// Close reads up to the Sync: an error there (the commit's) means
		// nothing was stored.
		if err := res.Close(); err != nil {
			return err
		}
		if inserted {
			stored = queued(e, queuedAt, lang, src)
		}
		return nil
	})
	return stored, err
}

// sessionInflight counts the QUEUED or RUNNING executions of the session
// whose id is parameter sessionParam.
func sessionInflight(sessionParam string) string {
	return `(SELECT COUNT(*) FROM executions WHERE session_id = ` + sessionParam + ` AND status IN ('QUEUED', 'RUNNING'))`
}

// clientBacklog counts the QUEUED or RUNNING executions of the client named
// by parameter clientParam, stopping at limitParam, so that a run costs the
// same however deep that client's backlog.
func clientBacklog(clientParam, limitParam string) string {
	return `(SELECT COUNT(*) FROM (SELECT 1 FROM executions WHERE client = ` + clientParam +
		` AND status IN ('QUEUED', 'RUNNING') LIMIT ` + limitParam + `) AS backlog)`
}
