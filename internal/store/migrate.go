package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/riverqueue/river/riverdriver/riverdatabasesql"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
)

// migration is one versioned step of runbox's schema. Its statements are
// written once for both dialects; {{uuid}} is the only type that differs
// (SQLite has no UUID type, and "UUID" would give the column NUMERIC affinity).
type migration struct {
	version    int
	statements []string
}

var migrations = []migration{
	{1, []string{
		`CREATE TABLE sessions (
			id          {{uuid}} PRIMARY KEY,
			tenant      TEXT    NOT NULL DEFAULT '',
			status      TEXT    NOT NULL CHECK (status IN ('ACTIVE', 'CLOSED')),
			language    TEXT    NOT NULL,
			source_code TEXT    NOT NULL,
			version     BIGINT  NOT NULL,
			created_at  BIGINT  NOT NULL,
			updated_at  BIGINT  NOT NULL
		)`,
		`CREATE INDEX sessions_closed_updated_idx ON sessions (updated_at) WHERE status = 'CLOSED'`,
		`CREATE TABLE executions (
			id                {{uuid}} PRIMARY KEY,
			session_id        {{uuid}} NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
			tenant            TEXT    NOT NULL DEFAULT '',
			language          TEXT    NOT NULL,
			source_code       TEXT    NOT NULL,
			stdin             TEXT    NOT NULL DEFAULT '',
			status            TEXT    NOT NULL CHECK (status IN ('QUEUED', 'RUNNING', 'COMPLETED', 'FAILED', 'TIMEOUT')),
			queued_at         BIGINT  NOT NULL,
			started_at        BIGINT,
			finished_at       BIGINT,
			attempts          INTEGER NOT NULL DEFAULT 0,
			idempotency_key   TEXT,
			request_hash      TEXT    NOT NULL DEFAULT '',
			stdout            TEXT,
			stderr            TEXT,
			stdout_truncated  BOOLEAN,
			stderr_truncated  BOOLEAN,
			compile_output    TEXT,
			exit_code         INTEGER,
			signal            TEXT,
			execution_time_ms BIGINT,
			cpu_time_ms       BIGINT,
			memory_kb         BIGINT,
			error_code        TEXT,
			error_message     TEXT,
			CONSTRAINT executions_session_idempotency_key UNIQUE (session_id, idempotency_key)
		)`,
		`CREATE INDEX executions_session_list_idx ON executions (session_id, queued_at DESC, id DESC)`,
		`CREATE INDEX executions_finished_idx ON executions (finished_at)`,
		`CREATE INDEX executions_queued_idx ON executions (queued_at) WHERE status = 'QUEUED'`,
		`CREATE INDEX executions_inflight_idx ON executions (session_id) WHERE status IN ('QUEUED', 'RUNNING')`,
	}},
	{2, []string{
		// For the purge of idle sessions (RUNBOX_IDLE_SESSION_TTL).
		`CREATE INDEX sessions_active_updated_idx ON sessions (updated_at) WHERE status = 'ACTIVE'`,
	}},
	{3, []string{
		// Who asked for a run, for the cap on a client's backlog
		// (RUNBOX_MAX_INFLIGHT_PER_CLIENT).
		`ALTER TABLE executions ADD COLUMN client TEXT NOT NULL DEFAULT ''`,
		`CREATE INDEX executions_client_inflight_idx ON executions (client) WHERE status IN ('QUEUED', 'RUNNING')`,
	}},
	{4, []string{
		// The purges find sessions by touched_at, which an autosave moves
		// only once an hour (see touchEvery), instead of updated_at, which
		// it moves every time: an update that changes no indexed column is
		// a HOT update on PostgreSQL, with no new index entries. Indexing
		// updated_at made every save write three index entries and left
		// dead ones that each next save of the session walked past.
		`ALTER TABLE sessions ADD COLUMN touched_at BIGINT NOT NULL DEFAULT 0`,
		`UPDATE sessions SET touched_at = updated_at`,
		`DROP INDEX sessions_closed_updated_idx`,
		`DROP INDEX sessions_active_updated_idx`,
		`CREATE INDEX sessions_closed_touched_idx ON sessions (touched_at) WHERE status = 'CLOSED'`,
		`CREATE INDEX sessions_active_touched_idx ON sessions (touched_at) WHERE status = 'ACTIVE'`,
	}},
}

// Advisory lock keys (PostgreSQL): one for our migrations, one held by
// MigrateAll around ours and River's. They differ so that MigrateAll, which
// holds its lock on one connection, does not deadlock with Migrate's
// transaction on another.
const (
	lockKeyMigrate    int64 = 0x72756e626f780001 // "runbox" + 1
	lockKeyMigrateAll int64 = 0x72756e626f780002
)

// lockClassClient is the first key of the two-key advisory locks (a space
// apart from the one-key locks above) that serialize a client's new runs,
// the second being a hash of the client (see CreateExecution).
const lockClassClient int64 = 0x72756e62 // "runb"

// Migrate creates or upgrades runbox's own tables, in one transaction.
func (s *sqlStore) Migrate(ctx context.Context) error {
	return s.migrate(ctx)
}

func (s *sqlStore) migrate(ctx context.Context) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if s.d.postgres {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKeyMigrate); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER PRIMARY KEY,
			applied_at BIGINT  NOT NULL
		)`); err != nil {
			return err
		}
		applied := map[int]bool{}
		rows, err := tx.QueryContext(ctx, `SELECT version FROM schema_migrations`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var v int
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return err
			}
			applied[v] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, m := range migrations {
			if applied[m.version] {
				continue
			}
			for _, st := range m.statements {
				if _, err := tx.ExecContext(ctx, strings.ReplaceAll(st, "{{uuid}}", s.d.uuidType)); err != nil {
					return fmt.Errorf("store: migration %d: %w", m.version, err)
				}
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`,
				m.version, time.Now().UnixMicro()); err != nil {
				return err
			}
		}
		return nil
	})
	return wrapErr(ctx, err)
}

// ErrSchemaBehind says that the database lacks migrations this binary's
// statements need: `runbox migrate` must run first.
var ErrSchemaBehind = errors.New("the database schema is older than this runbox: run `runbox migrate` first")

// CheckSchema returns ErrSchemaBehind unless every migration of this binary
// has been applied. A newer schema is fine: in a rolling upgrade the
// database is migrated before the processes are replaced, and migrations
// only add.
func CheckSchema(ctx context.Context, st Store) error {
	s, ok := st.(*sqlStore)
	if !ok {
		return errors.New("store: CheckSchema needs a store from Open")
	}
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version <= $1`,
		migrations[len(migrations)-1].version).Scan(&n)
	if err != nil && !isMissingTable(err) {
		return wrapErr(ctx, err)
	}
	if n < len(migrations) {
		return ErrSchemaBehind
	}
	return nil
}

// MigrateAll migrates runbox's tables and River's. It is idempotent and safe
// when several processes start at once: on PostgreSQL they serialize on an
// advisory lock, on SQLite on an flock of a file next to the database.
func MigrateAll(ctx context.Context, st Store) error {
	s, ok := st.(*sqlStore)
	if !ok {
		return errors.New("store: MigrateAll needs a store from Open")
	}
	if s.d.postgres {
		conn, err := s.db.Conn(ctx)
		if err != nil {
			return wrapErr(ctx, err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, lockKeyMigrateAll); err != nil {
			return wrapErr(ctx, err)
		}
		defer func() {
			// The lock dies with the session anyway; unlock with a fresh
			// context so that a cancelled ctx does not leave it held on a
			// pooled connection.
			uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := conn.ExecContext(uctx, `SELECT pg_advisory_unlock($1)`, lockKeyMigrateAll); err != nil {
				_ = conn.Raw(func(any) error { return driver.ErrBadConn }) // discard the connection
			}
		}()
		if err := s.migrate(ctx); err != nil {
			return err
		}
		m, err := rivermigrate.New(riverdatabasesql.New(s.db), nil)
		if err != nil {
			return err
		}
		if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
			return wrapErr(ctx, fmt.Errorf("store: river migrations: %w", err))
		}
		return nil
	}

	unlock, err := flockFile(s.path + ".migrate-lock")
	if err != nil {
		return err
	}
	defer unlock()
	if err := s.migrate(ctx); err != nil {
		return err
	}
	m, err := rivermigrate.New(riversqlite.New(s.db), nil)
	if err != nil {
		return err
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("store: river migrations: %w", err)
	}
	return nil
}

// flockFile takes an exclusive lock on path (created 0600), blocking.
func flockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: migration lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("store: migration lock: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
