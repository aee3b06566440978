package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib" // also registers driver "pgx"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/runbox/runbox/internal/execution"
	"github.com/runbox/runbox/internal/session"
)

// dialect holds the few differences between SQLite and PostgreSQL. Queries
// use $N placeholders, which both drivers accept.
type dialect struct {
	name      string // Store.Driver()
	postgres  bool
	uuidType  string // column type of ids
	forUpdate string // row-lock suffix for SELECT; SQLite locks the whole database (BEGIN IMMEDIATE)
}

// uuidArg is an id as a query argument. pgx encodes a [16]byte as a uuid
// directly; given a uuid.UUID it takes the driver.Valuer path (a string,
// then parsed back), 16 µs more per argument in a round trip of 80.
func (d dialect) uuidArg(id uuid.UUID) any {
	if d.postgres {
		return [16]byte(id)
	}
	return id.String()
}

var (
	sqliteDialect   = dialect{name: "sqlite", uuidType: "TEXT"}
	postgresDialect = dialect{name: "postgres", postgres: true, uuidType: "UUID", forUpdate: " FOR UPDATE"}
)

// notifyChannel is the PostgreSQL channel FinishAttempt notifies on.
const notifyChannel = "runbox_execution_finished"

type sqlStore struct {
	db *sql.DB
	// saves runs autosaves. On PostgreSQL it is a pool whose sessions do not
	// wait for the WAL flush (synchronous_commit=off): an autosave the server
	// acknowledged may be lost if PostgreSQL itself crashes within a fraction
	// of a second, and the editor saves again seconds later anyway, while
	// the flush wait is what bounds autosaves per second. Everything else
	// (sessions, runs, results) commits durably through db. On SQLite it is db.
	saves *sql.DB
	// reads serves the queries that only read (get, list, queue depth). On
	// SQLite it is a pool of read-only connections beside the one writer:
	// WAL lets readers run while the writer writes, so a long count or a
	// long-poll's re-read never queues behind River's fetches or autosaves.
	// On PostgreSQL it is db.
	reads *sql.DB
	// queue runs River's own statements (fetches, completions, maintenance)
	// and StartAttempt. On PostgreSQL it is a pool whose sessions do not
	// wait for the WAL flush (synchronous_commit=off), like saves: none of
	// those writes is a promise to a client, and the flush wait of the
	// start was the one a worker paid on every run's path. What the client
	// is promised (an accepted run: CreateExecution with its job insert; a
	// result: FinishAttempt) commits durably through db, and a durable
	// commit flushes the whole WAL before it, so a PostgreSQL crash can
	// only lose the latest of these steps, never one a durable write came
	// after. What it loses is redone: a fetch lost with its start is
	// fetched again; a start lost after a kept fetch makes that attempt's
	// result ErrStartLost, so the worker fails the attempt instead of
	// completing a job whose execution would stay QUEUED, and the next
	// attempt runs it; a lost completion of a recorded result makes the
	// next attempt find the execution settled. On SQLite it is db.
	queue *sql.DB
	// batchedSaves writes autosaves on PostgreSQL (see savebatch.go); nil
	// on SQLite.
	batchedSaves *saveBatcher
	d            dialect
	url          string        // PostgreSQL: for the LISTEN connection
	path         string        // SQLite: the database file
	ckpt         *checkpointer // SQLite: see checkpoint.go
}

// Open opens the database named by url: "" → SQLite file "runbox.db" under
// dataDir (created 0700), "sqlite://PATH" (also sqlite:///abs/path),
// "postgres://…" or "postgresql://…". It pings the database; a database that
// cannot be reached gives an error wrapping ErrUnavailable. Errors never
// contain the URL (it may hold a password).
func Open(ctx context.Context, url, dataDir string) (Store, error) {
	switch {
	case url == "":
		if dataDir == "" {
			return nil, errors.New("store: no database URL and no data directory")
		}
		return openSQLite(ctx, filepath.Join(dataDir, "runbox.db"))
	case strings.HasPrefix(url, "sqlite://"):
		path := strings.TrimPrefix(url, "sqlite://")
		if path == "" {
			return nil, errors.New("store: sqlite URL without a path")
		}
		return openSQLite(ctx, path)
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return openPostgres(ctx, url)
	default:
		return nil, errors.New("store: unsupported database URL scheme (want sqlite:// or postgres://)")
	}
}

func openSQLite(ctx context.Context, path string) (Store, error) {
	if strings.ContainsAny(path, "?#") {
		return nil, errors.New("store: sqlite path must not contain '?' or '#'")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: creating data directory: %w", err)
	}
	// Create the file ourselves so that it is 0600; SQLite gives its -wal and
	// -shm files the database file's permissions.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: creating database file: %w", err)
	}
	f.Close()

	dsn := "file:" + path +
		"?_pragma=busy_timeout(5000)" +
		"&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(NORMAL)" +
		"&_pragma=foreign_keys(1)" +
		"&_pragma=wal_autocheckpoint(" + strconv.Itoa(sqliteAutoCheckpointPages) + ")" +
		"&_txlock=immediate"
	// One connection: River's SQLite driver needs it to avoid SQLITE_BUSY,
	// and SQLite serializes writers anyway.
	db, err := openSQLiteConn(dsn)
	if err != nil {
		return nil, err
	}
	reads, err := sql.Open(sqliteDriverName, "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=query_only(1)")
	if err != nil {
		db.Close()
		return nil, err
	}
	reads.SetMaxOpenConns(4)
	reads.SetMaxIdleConns(4)
	s := &sqlStore{db: db, saves: db, queue: db, reads: reads, d: sqliteDialect, path: path}
	if err := pingSQLite(ctx, s); err != nil {
		s.Close()
		return nil, err
	}
	if s.ckpt, err = startCheckpointer(path); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// openSQLiteConn opens a pool of exactly one SQLite connection, kept open
// forever so that the DSN's per-connection pragmas are set once.
func openSQLiteConn(dsn string) (*sql.DB, error) {
	db, err := sql.Open(sqliteDriverName, dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	return db, nil
}

// pingSQLite opens the first connection, which runs the DSN's pragmas.
// While another process switches a new file to WAL, SQLite answers
// SQLITE_BUSY at once, without calling the busy handler, so busy_timeout
// does not cover it: retry for as long as busy_timeout would have waited.
func pingSQLite(ctx context.Context, s *sqlStore) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := s.db.PingContext(ctx)
		if err == nil {
			return nil
		}
		var se *sqlite.Error
		if !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return s.Ping(ctx) // the error, as ErrUnavailable
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func openPostgres(ctx context.Context, url string) (Store, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, errors.New("store: invalid PostgreSQL URL")
	}
	db.SetMaxOpenConns(20)
	db.SetMaxIdleConns(10)
	db.SetConnMaxLifetime(30 * time.Minute)
	db.SetConnMaxIdleTime(5 * time.Minute)
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		db.Close()
		return nil, errors.New("store: invalid PostgreSQL URL")
	}
	cfg.RuntimeParams["synchronous_commit"] = "off"
	unflushed := func(params map[string]string) *sql.DB {
		c := cfg.Copy()
		for k, v := range params {
			c.RuntimeParams[k] = v
		}
		p := stdlib.OpenDB(*c)
		p.SetMaxOpenConns(10)
		p.SetMaxIdleConns(10)
		p.SetConnMaxLifetime(30 * time.Minute)
		p.SetConnMaxIdleTime(5 * time.Minute)
		return p
	}
	// Two pools, so that a burst of autosaves never makes a worker's fetch
	// wait for a connection.
	// The saves pool runs only the batched autosave, which must be a
	// lookup by primary key per save (see batchSaveSQL).
	byKeyOnly := map[string]string{"enable_seqscan": "off", "enable_bitmapscan": "off",
		"enable_hashjoin": "off", "enable_mergejoin": "off"}
	s := &sqlStore{db: db, saves: unflushed(byKeyOnly), queue: unflushed(nil), reads: db, d: postgresDialect, url: url}
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, err
	}
	s.batchedSaves = startSaveBatcher(s.saves)
	return s, nil
}

func (s *sqlStore) DB() *sql.DB      { return s.db }
func (s *sqlStore) QueueDB() *sql.DB { return s.queue }
func (s *sqlStore) Driver() string   { return s.d.name }
func (s *sqlStore) Close() error {
	if s.ckpt != nil {
		s.ckpt.Close()
	}
	if s.batchedSaves != nil {
		s.batchedSaves.close()
	}
	for _, extra := range []*sql.DB{s.saves, s.queue, s.reads} {
		if extra != s.db {
			extra.Close()
		}
	}
	return s.db.Close()
}

func (s *sqlStore) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		if ctx.Err() != nil {
			return err
		}
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// inTx runs fn in a transaction (BEGIN IMMEDIATE on SQLite), committing when
// it returns nil.
func (s *sqlStore) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Time: BIGINT unix microseconds in the database; UTC truncated to
// milliseconds when read back.
func toDB(t time.Time) int64 { return t.UnixMicro() }

func fromDB(us int64) time.Time { return time.UnixMicro(us).UTC().Truncate(time.Millisecond) }

func fromDBNull(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromDB(v.Int64)
	return &t
}

func nowIfZero(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

// ---- sessions ----

// touchEvery is how stale touched_at may grow before a save moves it.
// touched_at is a session's last save, close or creation rounded down by
// up to this much (or older, if a process of an older release wrote it):
// never later than updated_at, so "touched_at < t" finds every session
// with "updated_at < t", which the purges then check exactly. Moving it
// rarely keeps autosaves from changing an indexed column (migration 4).
const touchEvery = time.Hour

// touch is the SET expression that moves column to now (an SQL
// expression in microseconds) once it is touchEvery old.
func touch(column, now string) string {
	return column + " = CASE WHEN " + column + " <= " + now + " - " + strconv.FormatInt(touchEvery.Microseconds(), 10) +
		" THEN " + now + " ELSE " + column + " END"
}

// touchAtSave is the SET term of a single-statement save, whose time is $3.
var touchAtSave = touch("touched_at", "$3")

const sessionCols = `id, tenant, status, language, source_code, version, created_at, updated_at`

type scanner interface{ Scan(dest ...any) error }

func scanSession(r scanner) (*session.Session, error) {
	var (
		s                session.Session
		status           string
		created, updated int64
	)
	if err := r.Scan(&s.ID, &s.Tenant, &status, &s.Language, &s.SourceCode, &s.Version, &created, &updated); err != nil {
		return nil, err
	}
	s.Status = session.Status(status)
	s.CreatedAt = fromDB(created)
	s.UpdatedAt = fromDB(updated)
	return &s, nil
}

func (s *sqlStore) CreateSession(ctx context.Context, ss *session.Session) error {
	if ss.ID == uuid.Nil {
		return errors.New("store: session without id")
	}
	if ss.Status == "" {
		ss.Status = session.Active
	}
	if ss.Version == 0 {
		ss.Version = 1
	}
	ss.CreatedAt = nowIfZero(ss.CreatedAt)
	if ss.UpdatedAt.IsZero() {
		ss.UpdatedAt = ss.CreatedAt
	}
	ss.SourceCode = clean(ss.SourceCode)
	_, err := s.db.ExecContext(ctx, `INSERT INTO sessions (`+sessionCols+`, touched_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)`,
		s.d.uuidArg(ss.ID), ss.Tenant, string(ss.Status), ss.Language, ss.SourceCode, ss.Version, toDB(ss.CreatedAt), toDB(ss.UpdatedAt))
	if err != nil {
		return wrapErr(ctx, err)
	}
	ss.CreatedAt = fromDB(toDB(ss.CreatedAt))
	ss.UpdatedAt = fromDB(toDB(ss.UpdatedAt))
	return nil
}

func (s *sqlStore) GetSession(ctx context.Context, tenant string, id uuid.UUID) (*session.Session, error) {
	ss, err := scanSession(s.reads.QueryRowContext(ctx,
		`SELECT `+sessionCols+` FROM sessions WHERE id = $1 AND tenant = $2`, s.d.uuidArg(id), tenant))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrSessionNotFound
	}
	return ss, wrapErr(ctx, err)
}

func (s *sqlStore) UpdateSession(ctx context.Context, tenant string, id uuid.UUID, p session.Patch, now time.Time) (*session.Session, error) {
	now = nowIfZero(now)
	if s.batchedSaves != nil {
		res := s.batchedSaves.save(ctx, &saveRequest{tenant: tenant, id: id, patch: p, now: now})
		switch {
		case res.err != nil:
			return nil, res.err
		case res.s != nil:
			return res.s, nil
		}
		return nil, s.whyNotSaved(ctx, tenant, id)
	}
	set := []string{"version = version + 1", "updated_at = $3", touchAtSave}
	args := []any{s.d.uuidArg(id), tenant, toDB(now)}
	if p.SourceCode != nil {
		args = append(args, clean(*p.SourceCode))
		set = append(set, "source_code = $"+strconv.Itoa(len(args)))
	}
	if p.Language != nil {
		args = append(args, *p.Language)
		set = append(set, "language = $"+strconv.Itoa(len(args)))
	}
	where := `id = $1 AND tenant = $2 AND status = 'ACTIVE'`
	if p.IfMatch != nil {
		in := make([]string, len(p.IfMatch))
		for i, v := range p.IfMatch {
			args = append(args, v)
			in[i] = "$" + strconv.Itoa(len(args))
		}
		if len(in) == 0 {
			in = []string{"NULL"} // matches nothing
		}
		where += " AND version IN (" + strings.Join(in, ", ") + ")"
	}
	ss, err := scanSession(s.saves.QueryRowContext(ctx,
		`UPDATE sessions SET `+strings.Join(set, ", ")+` WHERE `+where+` RETURNING `+sessionCols, args...))
	if err == nil {
		return ss, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, wrapErr(ctx, err)
	}
	return nil, s.whyNotSaved(ctx, tenant, id)
}

// whyNotSaved names why an autosave updated nothing.
func (s *sqlStore) whyNotSaved(ctx context.Context, tenant string, id uuid.UUID) error {
	cur, err := s.GetSession(ctx, tenant, id)
	if err != nil {
		return err
	}
	if cur.Status == session.Closed {
		return ErrSessionClosed
	}
	return ErrVersionConflict
}

func (s *sqlStore) CloseSession(ctx context.Context, tenant string, id uuid.UUID, now time.Time) error {
	res, err := s.db.ExecContext(ctx,
		`UPDATE sessions SET status = 'CLOSED', updated_at = $3, touched_at = $3 WHERE id = $1 AND tenant = $2 AND status = 'ACTIVE'`,
		s.d.uuidArg(id), tenant, toDB(nowIfZero(now)))
	if err != nil {
		return wrapErr(ctx, err)
	}
	if n, err := res.RowsAffected(); err != nil || n > 0 {
		return wrapErr(ctx, err)
	}
	_, err = s.GetSession(ctx, tenant, id)
	return err // nil when already closed
}

// ---- executions ----

const execCols = `id, session_id, tenant, language, source_code, stdin, status, queued_at, started_at, finished_at,
	attempts, idempotency_key, request_hash, stdout, stderr, stdout_truncated, stderr_truncated, compile_output,
	exit_code, signal, execution_time_ms, cpu_time_ms, memory_kb, error_code, error_message`

// scanExec scans execCols; it also returns queued_at in microseconds, the
// listing's sort key.
func scanExec(r scanner) (*execution.Execution, int64, error) {
	var (
		e                            execution.Execution
		status                       string
		queued                       int64
		started, finished            sql.NullInt64
		key                          sql.NullString
		stdout, stderr, compile, sig sql.NullString
		stdoutTrunc, stderrTrunc     sql.NullBool
		exitCode                     sql.NullInt64
		execMS, cpuMS, memKB         sql.NullInt64
		errCode, errMsg              sql.NullString
	)
	if err := r.Scan(&e.ID, &e.SessionID, &e.Tenant, &e.Language, &e.SourceCode, &e.Stdin, &status,
		&queued, &started, &finished, &e.Attempts, &key, &e.RequestHash,
		&stdout, &stderr, &stdoutTrunc, &stderrTrunc, &compile, &exitCode, &sig,
		&execMS, &cpuMS, &memKB, &errCode, &errMsg); err != nil {
		return nil, 0, err
	}
	e.Status = execution.Status(status)
	e.QueuedAt = fromDB(queued)
	e.StartedAt = fromDBNull(started)
	e.FinishedAt = fromDBNull(finished)
	e.IdempotencyKey = key.String
	if e.Status.Terminal() {
		r := &execution.Result{
			Status:          e.Status,
			Stdout:          stdout.String,
			Stderr:          stderr.String,
			StdoutTruncated: stdoutTrunc.Bool,
			StderrTruncated: stderrTrunc.Bool,
		}
		if compile.Valid {
			r.CompileOutput = &compile.String
		}
		if exitCode.Valid {
			v := int(exitCode.Int64)
			r.ExitCode = &v
		}
		if sig.Valid {
			r.Signal = &sig.String
		}
		if execMS.Valid {
			r.ExecutionTimeMS = &execMS.Int64
		}
		if cpuMS.Valid {
			r.CPUTimeMS = &cpuMS.Int64
		}
		if memKB.Valid {
			r.MemoryKB = &memKB.Int64
		}
		if errCode.Valid {
			r.Error = &execution.Error{Code: execution.ErrorCode(errCode.String), Message: errMsg.String}
		}
		e.Result = r
	}
	return &e, queued, nil
}

// clean makes text storable on both drivers: PostgreSQL text cannot hold NUL
// or invalid UTF-8 (program output can contain both), so each becomes U+FFFD,
// on SQLite too so that the drivers agree.
func clean(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	return s
}

func cleanPtr(p *string) *string {
	if p == nil {
		return nil
	}
	c := clean(*p)
	return &c
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (s *sqlStore) CreateExecution(ctx context.Context, e *execution.Execution, caps InflightCaps, job Statement) (*execution.Execution, bool, error) {
	if e.ID == uuid.Nil || e.SessionID == uuid.Nil {
		return nil, false, errors.New("store: execution without id or session id")
	}
	queuedAt := nowIfZero(e.QueuedAt)
	if s.d.postgres {
		stored, err := s.createPipelined(ctx, e, queuedAt, caps, job)
		if stored != nil || err != nil {
			return stored, stored != nil, wrapErr(ctx, err)
		}
		// Nothing was inserted: the transaction below says why (or
		// inserts, if the session changed in between).
	}
	var (
		stored  *execution.Execution
		created bool
	)
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// Lock the session row: runs of one session serialize here, so the
		// in-flight count and the snapshot are race-free. (SQLite: the
		// transaction already holds the database's write lock.)
		// On PostgreSQL each transaction counts a client's runs in its own
		// snapshot, so concurrent runs of its other sessions could all pass
		// its cap. Near the cap they serialize on an advisory lock, and the
		// count in the insert below, a later statement, then sees every run
		// of the client committed before. Far from it no lock is needed,
		// and none is taken (it halved one client's POST rate): fewer than
		// clientLockMargin runs of one client are in flight at once in an
		// API process (its pool has fewer connections), so none can cross.
		nearCap := s.d.postgres && caps.Client > 0
		sel, selArgs := `SELECT status, language, source_code`, []any{s.d.uuidArg(e.SessionID), e.Tenant}
		if nearCap {
			sel += `, ` + clientBacklog("$3", "$4")
			selArgs = append(selArgs, e.Client, caps.Client)
		}
		var status, lang, src string
		var backlog int
		dest := []any{&status, &lang, &src}
		if nearCap {
			dest = append(dest, &backlog)
		}
		err := tx.QueryRowContext(ctx, sel+` FROM sessions WHERE id = $1 AND tenant = $2`+s.d.forUpdate, selArgs...).Scan(dest...)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrSessionNotFound
		}
		if err != nil {
			return err
		}
		// A replay of an accepted request answers with the original
		// execution even when a fresh one would now be refused.
		replay := func(refusal error) error {
			if e.IdempotencyKey == "" {
				return refusal
			}
			prev, err := s.byKey(ctx, tx, e)
			if errors.Is(err, sql.ErrNoRows) {
				return refusal
			}
			if err != nil {
				return err
			}
			if prev.RequestHash != e.RequestHash {
				return ErrIdempotencyReused
			}
			stored = prev
			return nil
		}
		if session.Status(status) != session.Active {
			return replay(ErrSessionClosed)
		}
		countClient := caps.Client > 0
		if nearCap {
			countClient = backlog >= caps.Client-clientLockMargin
			if countClient {
				if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, lockClassClient, e.Client); err != nil {
					return err
				}
			}
		}
		// The in-flight counts and the insert are one statement (one round
		// trip fewer on PostgreSQL), run after the session lock was taken,
		// so its snapshot sees every run of the session. The client's count
		// stops at its cap, so a POST costs the same however deep that
		// client's backlog. No row inserted means a cap was reached or the
		// key was used before: replay, then the session's count, tell which.
		clientBound := `$12 >= 0` // true: no cap, or far from it (counted above)
		if countClient {
			clientBound = clientBacklog("$11", "$12") + ` < $12`
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO executions
			(id, session_id, tenant, client, language, source_code, stdin, status, queued_at, attempts, idempotency_key, request_hash)
			SELECT $1, $2, $3, $11, $4, $5, $6, 'QUEUED', $7, 0, $8, $9
			WHERE `+sessionInflight("$2")+` < $10
			AND `+clientBound+`
			ON CONFLICT (session_id, idempotency_key) DO NOTHING`,
			s.d.uuidArg(e.ID), s.d.uuidArg(e.SessionID), e.Tenant, lang, src, clean(e.Stdin), toDB(queuedAt), nullString(e.IdempotencyKey), e.RequestHash,
			caps.Session, e.Client, caps.Client)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			var inflight int
			if err := tx.QueryRowContext(ctx, `SELECT `+sessionInflight("$1"),
				s.d.uuidArg(e.SessionID)).Scan(&inflight); err != nil {
				return err
			}
			if inflight >= caps.Session {
				return replay(ErrTooManyInflight)
			}
			return replay(ErrClientBacklog)
		}
		if job.SQL != "" {
			if _, err := tx.ExecContext(ctx, job.SQL, job.Args...); err != nil {
				return fmt.Errorf("store: enqueue: %w", err)
			}
		}
		created = true
		stored = queued(e, queuedAt, lang, src)
		return nil
	})
	if err != nil {
		return nil, false, wrapErr(ctx, err)
	}
	return stored, created, nil
}

// queued is e as CreateExecution stored it, with its session's language
// and source.
func queued(e *execution.Execution, queuedAt time.Time, lang, src string) *execution.Execution {
	cp := *e
	cp.Language, cp.SourceCode, cp.Stdin = lang, src, clean(e.Stdin)
	cp.Status = execution.Queued
	cp.QueuedAt = fromDB(toDB(queuedAt))
	cp.StartedAt, cp.FinishedAt, cp.Attempts, cp.Result = nil, nil, 0, nil
	return &cp
}

func (s *sqlStore) byKey(ctx context.Context, q queryRower, e *execution.Execution) (*execution.Execution, error) {
	prev, _, err := scanExec(q.QueryRowContext(ctx,
		`SELECT `+execCols+` FROM executions WHERE session_id = $1 AND idempotency_key = $2 AND tenant = $3`,
		s.d.uuidArg(e.SessionID), e.IdempotencyKey, e.Tenant))
	return prev, err
}

// queryRower is a *sql.DB or a *sql.Tx.
type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *sqlStore) ExecutionByKey(ctx context.Context, tenant string, sessionID uuid.UUID, key string) (*execution.Execution, error) {
	if key == "" {
		return nil, ErrExecutionNotFound
	}
	e, err := s.byKey(ctx, s.reads, &execution.Execution{SessionID: sessionID, IdempotencyKey: key, Tenant: tenant})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrExecutionNotFound
	}
	return e, wrapErr(ctx, err)
}

func (s *sqlStore) GetExecution(ctx context.Context, tenant string, id uuid.UUID) (*execution.Execution, error) {
	e, _, err := scanExec(s.reads.QueryRowContext(ctx,
		`SELECT `+execCols+` FROM executions WHERE id = $1 AND tenant = $2`, s.d.uuidArg(id), tenant))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrExecutionNotFound
	}
	return e, wrapErr(ctx, err)
}

// Cursors are base64url("v1:<queued_at µs>:<id>") of the last item returned.
func encodeCursor(queuedUS int64, id uuid.UUID) string {
	return base64.RawURLEncoding.EncodeToString([]byte("v1:" + strconv.FormatInt(queuedUS, 10) + ":" + id.String()))
}

func decodeCursor(c string) (int64, uuid.UUID, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, uuid.Nil, ErrInvalidCursor
	}
	parts := strings.Split(string(b), ":")
	if len(parts) != 3 || parts[0] != "v1" {
		return 0, uuid.Nil, ErrInvalidCursor
	}
	us, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return 0, uuid.Nil, ErrInvalidCursor
	}
	id, err := uuid.Parse(parts[2])
	if err != nil || id.String() != parts[2] {
		return 0, uuid.Nil, ErrInvalidCursor
	}
	return us, id, nil
}

func (s *sqlStore) ListExecutions(ctx context.Context, tenant string, sessionID uuid.UUID, limit int, cursor string) ([]*execution.Execution, string, error) {
	if limit < 1 || limit > MaxListLimit {
		return nil, "", fmt.Errorf("%w: %d (want 1..%d)", ErrInvalidLimit, limit, MaxListLimit)
	}
	q := `SELECT ` + execCols + ` FROM executions WHERE session_id = $1 AND tenant = $2`
	args := []any{s.d.uuidArg(sessionID), tenant, limit + 1}
	if cursor != "" {
		us, id, err := decodeCursor(cursor)
		if err != nil {
			return nil, "", err
		}
		q += ` AND (queued_at < $4 OR (queued_at = $4 AND id < $5))`
		args = append(args, us, s.d.uuidArg(id))
	}
	q += ` ORDER BY queued_at DESC, id DESC LIMIT $3`
	rows, err := s.reads.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", wrapErr(ctx, err)
	}
	defer rows.Close()
	var (
		items  []*execution.Execution
		lastUS int64
	)
	for rows.Next() {
		e, us, err := scanExec(rows)
		if err != nil {
			return nil, "", wrapErr(ctx, err)
		}
		if len(items) == limit {
			// One more than asked: there is a next page.
			last := items[len(items)-1]
			return items, encodeCursor(lastUS, last.ID), nil
		}
		items = append(items, e)
		lastUS = us
	}
	if err := rows.Err(); err != nil {
		return nil, "", wrapErr(ctx, err)
	}
	rows.Close()
	if len(items) == 0 && cursor == "" {
		// Tell an empty session from an unknown (or another tenant's) one.
		if _, err := s.GetSession(ctx, tenant, sessionID); err != nil {
			return nil, "", err
		}
	}
	if items == nil {
		items = []*execution.Execution{}
	}
	return items, "", nil
}

// statusList renders statuses as an SQL IN list. Statuses are constants of
// package execution, never user input.
func statusList(ss []execution.Status) string {
	q := make([]string, len(ss))
	for i, st := range ss {
		q[i] = "'" + string(st) + "'"
	}
	return "(" + strings.Join(q, ", ") + ")"
}

// fencedOrMissing explains a conditional update that matched no row. It
// needs no transaction with that update: an execution never leaves a
// terminal status, nor goes back to an earlier attempt. With attempt set
// (the update was that attempt's result), an execution that is not
// terminal and has not seen that attempt start means the start was lost
// (see sqlStore.queue): ErrStartLost.
func (s *sqlStore) fencedOrMissing(ctx context.Context, id uuid.UUID, attempt *int) error {
	var (
		status   string
		attempts int
	)
	err := s.db.QueryRowContext(ctx, `SELECT status, attempts FROM executions WHERE id = $1`, s.d.uuidArg(id)).Scan(&status, &attempts)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return ErrExecutionNotFound
	case err != nil:
		return err
	case attempt != nil && attempts < *attempt && !execution.Status(status).Terminal():
		return ErrStartLost
	default:
		return ErrFenced
	}
}

func (s *sqlStore) StartAttempt(ctx context.Context, id uuid.UUID, attempt int, now time.Time) (*execution.Execution, error) {
	e, _, err := scanExec(s.queue.QueryRowContext(ctx,
		`UPDATE executions SET status = 'RUNNING', started_at = $3, attempts = $2
		WHERE id = $1 AND status IN `+statusList(execution.Predecessors(execution.Running))+` AND attempts < $2
		RETURNING `+execCols,
		s.d.uuidArg(id), attempt, toDB(nowIfZero(now))))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, wrapErr(ctx, s.fencedOrMissing(ctx, id, nil))
	}
	return e, wrapErr(ctx, err)
}

// finish writes a terminal result under a conditional update: the status
// must be one of from and, when attempt is given, attempts must equal it.
// It returns the execution as stored.
func (s *sqlStore) finish(ctx context.Context, id uuid.UUID, from []execution.Status, attempt *int,
	r *execution.Result, now time.Time) (*execution.Execution, error) {
	if r == nil || !r.Status.Terminal() {
		return nil, errors.New("store: a finished execution needs a terminal result")
	}
	if len(from) == 0 {
		return nil, ErrFenced
	}
	var errCode, errMsg any
	if r.Error != nil {
		errCode, errMsg = string(r.Error.Code), clean(r.Error.Message)
	}
	q := `UPDATE executions SET
			status = $2, finished_at = $3, stdout = $4, stderr = $5, stdout_truncated = $6, stderr_truncated = $7,
			compile_output = $8, exit_code = $9, signal = $10, execution_time_ms = $11, cpu_time_ms = $12,
			memory_kb = $13, error_code = $14, error_message = $15
			WHERE id = $1 AND status IN ` + statusList(from)
	args := []any{s.d.uuidArg(id), string(r.Status), toDB(nowIfZero(now)), clean(r.Stdout), clean(r.Stderr), r.StdoutTruncated, r.StderrTruncated,
		cleanPtr(r.CompileOutput), r.ExitCode, r.Signal, r.ExecutionTimeMS, r.CPUTimeMS, r.MemoryKB, errCode, errMsg}
	if attempt != nil {
		q += ` AND attempts = $16`
		args = append(args, *attempt)
	}
	// One statement, so no transaction: BEGIN and COMMIT would be two more
	// round trips on PostgreSQL.
	e, _, err := scanExec(s.db.QueryRowContext(ctx, s.notifying(q), args...))
	if errors.Is(err, sql.ErrNoRows) {
		err = s.fencedOrMissing(ctx, id, attempt)
	}
	return e, wrapErr(ctx, err)
}

// notifying makes a result's UPDATE of executions return the row it changed
// (execCols), which a waiter of this process is answered with instead of
// reading it back. On PostgreSQL the same statement queues the notification
// that wakes the long-polls of other processes (delivered at commit, never
// on rollback): one round trip fewer on the way to the learner's result.
// SQLite has no NOTIFY: its long-polls are woken by the worker's in-process
// hub, or re-read the row every second (DESIGN.md).
func (s *sqlStore) notifying(update string) string {
	if !s.d.postgres {
		return update + ` RETURNING ` + execCols
	}
	return `WITH done AS (` + update + ` RETURNING ` + execCols + `)
		SELECT ` + execCols + ` FROM done, LATERAL (SELECT pg_notify('` + notifyChannel + `', CAST(done.id AS TEXT))) AS sent`
}

func (s *sqlStore) FinishAttempt(ctx context.Context, id uuid.UUID, attempt int, r *execution.Result, now time.Time) (*execution.Execution, error) {
	if r == nil {
		return nil, errors.New("store: FinishAttempt without a result")
	}
	// Only a RUNNING execution under this attempt may finish.
	var from []execution.Status
	for _, st := range execution.Predecessors(r.Status) {
		if st == execution.Running {
			from = append(from, st)
		}
	}
	return s.finish(ctx, id, from, &attempt, r, now)
}

func (s *sqlStore) FailUnstarted(ctx context.Context, id uuid.UUID, r *execution.Result, now time.Time) (*execution.Execution, error) {
	if r == nil {
		return nil, errors.New("store: FailUnstarted without a result")
	}
	if r.Status != execution.Failed {
		if r.Status != "" {
			return nil, errors.New("store: FailUnstarted needs a FAILED result")
		}
		cp := *r
		cp.Status = execution.Failed
		r = &cp
	}
	return s.finish(ctx, id, execution.Predecessors(execution.Failed), nil, r, now)
}

func (s *sqlStore) QueueDepth(ctx context.Context) (int64, error) {
	var n int64
	err := s.reads.QueryRowContext(ctx, `SELECT COUNT(*) FROM executions WHERE status = 'QUEUED'`).Scan(&n)
	return n, wrapErr(ctx, err)
}

func (s *sqlStore) PurgeBefore(ctx context.Context, cutoff, idleCutoff time.Time) (int64, error) {
	var total int64
	c := toDB(cutoff)
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		total = 0
		for _, q := range []string{
			`DELETE FROM executions WHERE finished_at < $1 AND status IN ('COMPLETED', 'FAILED', 'TIMEOUT')`,
			`DELETE FROM executions WHERE session_id IN (SELECT id FROM sessions WHERE status = 'CLOSED' AND touched_at < $1 AND updated_at < $1)`,
			`DELETE FROM sessions WHERE status = 'CLOSED' AND touched_at < $1 AND updated_at < $1`,
		} {
			n, err := execCount(ctx, tx, q, c)
			if err != nil {
				return err
			}
			total += n
		}
		return nil
	})
	if err != nil {
		return 0, wrapErr(ctx, err)
	}
	for {
		n, err := s.purgeIdleBatch(ctx, toDB(idleCutoff))
		total += n
		if err != nil {
			return total, wrapErr(ctx, err)
		}
		if n == 0 {
			return total, nil
		}
	}
}

// clientLockMargin is how close to its cap a client's new runs start to
// serialize (see CreateExecution): more than an API process's connections.
const clientLockMargin = 32

// idlePurgeBatch is how many idle sessions one transaction purges, so that
// a first purge of many does not hold SQLite's write lock for long.
const idlePurgeBatch = 500

// purgeIdleBatch deletes up to idlePurgeBatch idle sessions - ACTIVE, not
// saved since idle, no run queued or finished since and none in flight -
// with their executions, and returns the rows deleted. A run being accepted for one
// of them must not be lost: on PostgreSQL the sessions are locked first
// (a session a run holds is skipped), and the deletes that follow see, in
// snapshots taken after the locks, every run committed before; a run not
// yet started then waits for the lock and finds no session (404). A
// single delete would not do: its re-check of a locked row reuses the
// snapshot from before the run committed, and the cascade would take the
// accepted run with its session. SQLite runs one writer at a time.
func (s *sqlStore) purgeIdleBatch(ctx context.Context, idle int64) (int64, error) {
	var total int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		total = 0
		lock := ""
		if s.d.postgres {
			lock = " FOR UPDATE OF s SKIP LOCKED"
		}
		rows, err := tx.QueryContext(ctx, `SELECT s.id FROM sessions s WHERE s.status = 'ACTIVE' AND s.touched_at < $1 AND s.updated_at < $1 AND NOT EXISTS (
			SELECT 1 FROM executions e WHERE e.session_id = s.id AND (e.queued_at >= $1 OR e.finished_at >= $1 OR e.status IN ('QUEUED', 'RUNNING')))
			LIMIT `+strconv.Itoa(idlePurgeBatch)+lock, idle)
		if err != nil {
			return err
		}
		var ids []any
		for rows.Next() {
			var id uuid.UUID
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, s.d.uuidArg(id))
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		in := make([]string, len(ids))
		for i := range ids {
			in[i] = "$" + strconv.Itoa(i+2)
		}
		args := append([]any{idle}, ids...)
		list := strings.Join(in, ",")
		for _, q := range []string{
			// Checked again: a run may have committed between the select's
			// snapshot and its lock.
			`DELETE FROM executions WHERE session_id IN (` + list + `) AND session_id NOT IN (
				SELECT session_id FROM executions WHERE session_id IN (` + list + `) AND (queued_at >= $1 OR finished_at >= $1 OR status IN ('QUEUED', 'RUNNING')))`,
			`DELETE FROM sessions WHERE id IN (` + list + `) AND status = 'ACTIVE' AND updated_at < $1 AND NOT EXISTS (
				SELECT 1 FROM executions e WHERE e.session_id = sessions.id)`,
		} {
			n, err := execCount(ctx, tx, q, args...)
			if err != nil {
				return err
			}
			total += n
		}
		return nil
	})
	return total, err
}

// execCount runs a statement and returns the rows it affected.
func execCount(ctx context.Context, tx *sql.Tx, q string, args ...any) (int64, error) {
	res, err := tx.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
