// Package store persists sessions and executions. One implementation
// (database/sql) serves both drivers, SQLite and PostgreSQL, and one contract
// suite (storetest) proves they behave the same.
package store

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/runbox/runbox/internal/execution"
	"github.com/runbox/runbox/internal/session"
)

// Errors a Store returns; callers branch on them with errors.Is.
var (
	ErrSessionNotFound   = errors.New("session not found")
	ErrExecutionNotFound = errors.New("execution not found")
	ErrSessionClosed     = errors.New("session closed")
	ErrVersionConflict   = errors.New("version conflict")
	ErrTooManyInflight   = errors.New("too many executions in flight for this session")
	ErrClientBacklog     = errors.New("too many executions in flight for this client")
	ErrIdempotencyReused = errors.New("idempotency key reused with a different request")
	// ErrFenced means the attempt no longer owns the execution: it is
	// terminal, or a newer attempt has started it. The caller drops its result.
	ErrFenced = errors.New("attempt fenced out")
	// ErrStartLost means an attempt's result found the execution not started
	// by that attempt, and not terminal: PostgreSQL lost the start in a
	// crash (starts do not wait for the WAL flush). The result is not
	// recorded; the caller fails the attempt so that the run is retried.
	ErrStartLost = errors.New("the attempt's start was lost")
	// ErrUnavailable wraps failures to reach the database at all.
	ErrUnavailable = errors.New("database unavailable")
)

// Statement is one SQL statement and its arguments, which a store write
// runs in its own transaction so that what it writes (a run's River job)
// commits or rolls back with the store's rows.
type Statement struct {
	SQL  string
	Args []any
}

// InflightCaps bound the QUEUED or RUNNING executions a new run joins.
type InflightCaps struct {
	Session int // of its session
	Client  int // of its client (Execution.Client); 0 = no bound
}

// Store is the narrow interface the API and the workers use.
type Store interface {
	// DB is the handle of durable writes; River inserts a run's job in a
	// transaction of it, so that the job and the execution row commit as one.
	DB() *sql.DB
	// QueueDB is the handle River's driver runs its own statements on. On
	// PostgreSQL they do not wait for the WAL flush (see sqlStore.queue).
	QueueDB() *sql.DB
	// Driver is "sqlite" or "postgres".
	Driver() string
	// Migrate creates or upgrades runbox's own tables (River migrates its own).
	Migrate(ctx context.Context) error
	Ping(ctx context.Context) error
	Close() error

	CreateSession(ctx context.Context, s *session.Session) error
	// GetSession returns ErrSessionNotFound for an unknown id or another tenant's.
	GetSession(ctx context.Context, tenant string, id uuid.UUID) (*session.Session, error)
	// UpdateSession applies an autosave atomically: version+1 and updated_at=now,
	// or ErrVersionConflict when p.IfMatch is set and names no current version, ErrSessionClosed when closed.
	UpdateSession(ctx context.Context, tenant string, id uuid.UUID, p session.Patch, now time.Time) (*session.Session, error)
	// CloseSession marks the session CLOSED (idempotent).
	CloseSession(ctx context.Context, tenant string, id uuid.UUID, now time.Time) error

	// CreateExecution snapshots the session's language and source into e
	// (e.ID, e.SessionID, e.Tenant, e.Stdin, e.QueuedAt, e.IdempotencyKey and
	// e.RequestHash are set by the caller), inserts it QUEUED and runs job
	// in the same transaction. job must write nothing unless e's row exists:
	// on PostgreSQL it is sent with the row's insert, before the store knows
	// whether the insert happened (see pipeline.go). With an idempotency key
	// already used for this session it returns the existing execution and
	// created=false without inserting anything, or ErrIdempotencyReused when
	// the request hash differs.
	// It returns ErrTooManyInflight when the session already has
	// caps.Session QUEUED or RUNNING executions, and ErrClientBacklog when
	// e.Client already has caps.Client (both checked under locks, not racy;
	// see clientLockMargin for what that takes on PostgreSQL).
	CreateExecution(ctx context.Context, e *execution.Execution, caps InflightCaps, job Statement) (stored *execution.Execution, created bool, err error)
	GetExecution(ctx context.Context, tenant string, id uuid.UUID) (*execution.Execution, error)
	// ExecutionByKey returns the tenant's execution of the session accepted
	// with this idempotency key, or ErrExecutionNotFound: a replay can be
	// answered without attempting a new run.
	ExecutionByKey(ctx context.Context, tenant string, sessionID uuid.UUID, key string) (*execution.Execution, error)
	// ListExecutions returns a session's executions newest first, and an
	// opaque cursor for the next page ("" when there is none).
	ListExecutions(ctx context.Context, tenant string, sessionID uuid.UUID, limit int, cursor string) ([]*execution.Execution, string, error)

	// StartAttempt moves the execution to RUNNING for this attempt, setting
	// started_at and attempts. ErrFenced when it is terminal or a later
	// attempt already started it.
	StartAttempt(ctx context.Context, id uuid.UUID, attempt int, now time.Time) (*execution.Execution, error)
	// FinishAttempt records a terminal result only if the execution is
	// RUNNING under this attempt (else ErrFenced, or ErrStartLost when
	// no attempt this late has started it), and wakes waiters of
	// other processes (PostgreSQL NOTIFY). It returns the execution as
	// stored, which GetExecution would read: the worker hands it to the
	// waiters of its own process.
	FinishAttempt(ctx context.Context, id uuid.UUID, attempt int, r *execution.Result, now time.Time) (*execution.Execution, error)
	// FailUnstarted ends a QUEUED or RUNNING execution FAILED with r (used when
	// the retry budget is spent); ErrFenced if already terminal. It returns
	// the execution as stored, like FinishAttempt.
	FailUnstarted(ctx context.Context, id uuid.UUID, r *execution.Result, now time.Time) (*execution.Execution, error)

	// QueueDepth counts QUEUED executions; it must stay cheap at 100,000.
	QueueDepth(ctx context.Context) (int64, error)
	// PurgeBefore deletes terminal executions finished before cutoff,
	// closed sessions (with their executions) updated before cutoff, and
	// ACTIVE sessions (with their executions) neither saved nor run since
	// idleCutoff and with nothing queued or running.
	PurgeBefore(ctx context.Context, cutoff, idleCutoff time.Time) (int64, error)
	// ListenFinished calls fn with the id of every execution that becomes
	// terminal in another process, until ctx ends; it reconnects on its own.
	// On SQLite it returns at once (in-process notification suffices).
	ListenFinished(ctx context.Context, fn func(uuid.UUID)) error
}
