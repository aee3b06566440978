// Package storetest is the contract suite every store.Store implementation
// must pass; each driver's test runs it on a real database.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/runbox/runbox/internal/execution"
	"github.com/runbox/runbox/internal/session"
	"github.com/runbox/runbox/internal/store"
)

// OpenSQLite returns a fresh, migrated SQLite store in a temporary
// directory, closed at the end of the test.
func OpenSQLite(t *testing.T) store.Store {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "test.db"), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := store.MigrateAll(ctx, s); err != nil {
		t.Fatal(err)
	}
	return s
}

// Options adds what some tests need beyond a fresh store.
type Options struct {
	// Reopen returns a second, independent Store on the same database as s
	// (PostgreSQL: for ListenFinished across instances). Nil skips that check.
	Reopen func(t *testing.T, s store.Store) store.Store
}

// Run runs the contract suite. open must return a fresh, migrated store on
// its own database each time it is called; it owns the cleanup.
func Run(t *testing.T, open func(t *testing.T) store.Store, opts ...Options) {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Sessions", testSessions},
		{"UpdateSession", testUpdateSession},
		{"ConcurrentAutosave", testConcurrentAutosave},
		{"AutosavesOfManySessions", testAutosavesOfManySessions},
		{"CloseSession", testCloseSession},
		{"CreateExecutionSnapshot", testSnapshot},
		{"EnqueueInTransaction", testEnqueueInTx},
		{"InflightCapConcurrent", testInflightCap},
		{"ClientBacklogCap", testClientBacklog},
		{"Idempotency", testIdempotency},
		{"IdempotencyRace", testIdempotencyRace},
		{"AttemptFencing", testFencing},
		{"ResultRoundTrip", testResultRoundTrip},
		{"FailUnstarted", testFailUnstarted},
		{"IllegalTransitions", testIllegalTransitions},
		{"ListExecutions", testListExecutions},
		{"QueueDepth", testQueueDepth},
		{"PurgeBefore", testPurge},
		{"IdlePurgeRacingARun", testIdlePurgeRacingRun},
		{"ListenFinished", func(t *testing.T, s store.Store) { testListen(t, s, o) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// t0 is a fixed instant with sub-millisecond digits, to check truncation.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

func ms(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

// NewSession creates an ACTIVE session for tenant.
func NewSession(t *testing.T, s store.Store, tenant string) *session.Session {
	t.Helper()
	ss := &session.Session{ID: uuid.New(), Tenant: tenant, Status: session.Active, Language: "python",
		SourceCode: "print(1)", Version: 1, CreatedAt: t0, UpdatedAt: t0}
	if err := s.CreateSession(ctxT(t), ss); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return ss
}

func newExec(ss *session.Session, key, hash string) *execution.Execution {
	return &execution.Execution{ID: uuid.New(), SessionID: ss.ID, Tenant: ss.Tenant, Stdin: "in",
		QueuedAt: time.Now(), IdempotencyKey: key, RequestHash: hash}
}

// NewExecution creates a QUEUED execution of ss (no in-flight cap).
func NewExecution(t *testing.T, s store.Store, ss *session.Session) *execution.Execution {
	t.Helper()
	e, created, err := s.CreateExecution(ctxT(t), newExec(ss, "", "h"), store.InflightCaps{Session: 1 << 30}, store.Statement{})
	if err != nil || !created {
		t.Fatalf("CreateExecution: created=%v err=%v", created, err)
	}
	return e
}

// ForceStatus writes a status and attempt number directly, bypassing the
// lifecycle, to set up transition tests.
func ForceStatus(t *testing.T, s store.Store, id uuid.UUID, st execution.Status, attempts int) {
	t.Helper()
	var fin any
	if st.Terminal() {
		fin = time.Now().UnixMicro()
	}
	if _, err := s.DB().ExecContext(ctxT(t), `UPDATE executions SET status = $1, attempts = $2, finished_at = $3 WHERE id = $4`,
		string(st), attempts, fin, id); err != nil {
		t.Fatalf("force status: %v", err)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

// jobTable creates the table jobOf's statements write to.
func jobTable(t *testing.T, s store.Store) {
	t.Helper()
	if _, err := s.DB().ExecContext(ctxT(t), `CREATE TABLE IF NOT EXISTS storetest_jobs (execution_id TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
}

// jobOf is a job statement for the execution id, written the way the
// queue's is: it inserts a row into jobTable's table from the execution's
// row, so that it writes nothing when that row does not exist.
func jobOf(id uuid.UUID) store.Statement {
	return store.Statement{SQL: `INSERT INTO storetest_jobs (execution_id) SELECT CAST(id AS TEXT) FROM executions WHERE id = $1`, Args: []any{id}}
}

// jobs counts the rows jobOf's statements inserted.
func jobs(t *testing.T, s store.Store) int {
	t.Helper()
	var n int
	if err := s.DB().QueryRowContext(ctxT(t), `SELECT COUNT(*) FROM storetest_jobs`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// errOf is the error of a write that also returns the stored execution.
func errOf(_ *execution.Execution, err error) error { return err }

// wantStored fails unless stored, what a write returned, is what a read of
// the same execution gives: a waiter is answered with it instead of a read.
func wantStored(t *testing.T, s store.Store, tenant string, stored *execution.Execution) {
	t.Helper()
	read, err := s.GetExecution(ctxT(t), tenant, stored.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(stored, read) {
		t.Fatalf("the write returned\n %+v\nbut a read gives\n %+v", stored, read)
	}
}

func okResult() *execution.Result {
	code := 0
	ms := int64(12)
	return &execution.Result{Status: execution.Completed, Stdout: "out", Stderr: "", ExitCode: &code, ExecutionTimeMS: &ms}
}

func testSessions(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	ss := NewSession(t, s, "acme")
	got, err := s.GetSession(ctx, "acme", ss.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := *ss
	want.CreatedAt, want.UpdatedAt = ms(t0), ms(t0)
	if *got != want {
		t.Fatalf("GetSession = %+v, want %+v", *got, want)
	}
	if *ss != want {
		t.Fatalf("CreateSession did not normalize times: %+v", *ss)
	}
	if got.CreatedAt.Location() != time.UTC {
		t.Fatalf("time not UTC: %v", got.CreatedAt.Location())
	}
	for _, tc := range []struct {
		tenant string
		id     uuid.UUID
	}{{"other", ss.ID}, {"", ss.ID}, {"acme", uuid.New()}} {
		if _, err := s.GetSession(ctx, tc.tenant, tc.id); !errors.Is(err, store.ErrSessionNotFound) {
			t.Fatalf("GetSession(%q, %v): %v, want not found", tc.tenant, tc.id, err)
		}
	}
	// Duplicate id is an error, not a silent overwrite.
	if err := s.CreateSession(ctx, &session.Session{ID: ss.ID, Language: "c"}); err == nil {
		t.Fatal("duplicate session id accepted")
	}
}

func ptr[T any](v T) *T { return &v }

func testUpdateSession(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	ss := NewSession(t, s, "t1")
	now := t0.Add(time.Minute)
	got, err := s.UpdateSession(ctx, "t1", ss.ID, session.Patch{SourceCode: ptr("x = 2")}, now)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 2 || got.SourceCode != "x = 2" || got.Language != "python" || !got.UpdatedAt.Equal(ms(now)) || !got.CreatedAt.Equal(ms(t0)) {
		t.Fatalf("after save: %+v", got)
	}
	got, err = s.UpdateSession(ctx, "t1", ss.ID, session.Patch{Language: ptr("c"), IfMatch: []int64{2}}, now)
	if err != nil || got.Version != 3 || got.Language != "c" || got.SourceCode != "x = 2" {
		t.Fatalf("language save: %+v %v", got, err)
	}
	for _, tc := range []struct {
		name   string
		tenant string
		id     uuid.UUID
		patch  session.Patch
		want   error
	}{
		{"stale If-Match", "t1", ss.ID, session.Patch{SourceCode: ptr("y"), IfMatch: []int64{2}}, store.ErrVersionConflict},
		{"stale If-Match list", "t1", ss.ID, session.Patch{SourceCode: ptr("y"), IfMatch: []int64{1, 2, 9}}, store.ErrVersionConflict},
		{"empty If-Match list", "t1", ss.ID, session.Patch{SourceCode: ptr("y"), IfMatch: []int64{}}, store.ErrVersionConflict},
		{"future If-Match", "t1", ss.ID, session.Patch{SourceCode: ptr("y"), IfMatch: []int64{9}}, store.ErrVersionConflict},
		{"other tenant", "t2", ss.ID, session.Patch{SourceCode: ptr("y")}, store.ErrSessionNotFound},
		{"unknown id", "t1", uuid.New(), session.Patch{SourceCode: ptr("y")}, store.ErrSessionNotFound},
	} {
		_, err := s.UpdateSession(ctx, tc.tenant, tc.id, tc.patch, now)
		wantErr(t, tc.name, err, tc.want)
	}
	cur, _ := s.GetSession(ctx, "t1", ss.ID)
	if cur.Version != 3 || cur.SourceCode != "x = 2" {
		t.Fatalf("rejected saves changed the session: %+v", cur)
	}
	// A list matches when one of its versions is the current one.
	got, err = s.UpdateSession(ctx, "t1", ss.ID, session.Patch{SourceCode: ptr("x = 4"), IfMatch: []int64{9, 3}}, now)
	if err != nil || got.Version != 4 || got.SourceCode != "x = 4" {
		t.Fatalf("save with an If-Match list: %+v %v", got, err)
	}
}

func testConcurrentAutosave(t *testing.T, s store.Store) {
	ss := NewSession(t, s, "")
	const workers, tries = 8, 10
	var (
		mu   sync.Mutex
		won  = map[int64]int{}
		wins int64
		wg   sync.WaitGroup
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for i := range tries {
				cur, err := s.GetSession(ctx, "", ss.ID)
				if err != nil {
					t.Error(err)
					return
				}
				got, err := s.UpdateSession(ctx, "", ss.ID, session.Patch{SourceCode: ptr(fmt.Sprintf("w%d i%d", w, i)), IfMatch: []int64{cur.Version}}, time.Now())
				switch {
				case err == nil:
					if got.Version != cur.Version+1 {
						t.Errorf("version %d after If-Match %d", got.Version, cur.Version)
					}
					mu.Lock()
					won[got.Version]++
					wins++
					mu.Unlock()
				case errors.Is(err, store.ErrVersionConflict):
				default:
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	final, err := s.GetSession(context.Background(), "", ss.ID)
	if err != nil {
		t.Fatal(err)
	}
	if final.Version != 1+wins {
		t.Fatalf("final version %d after %d accepted saves: lost update", final.Version, wins)
	}
	for v, n := range won {
		if n != 1 {
			t.Fatalf("version %d won by %d saves", v, n)
		}
	}
	t.Logf("%d of %d saves accepted", wins, workers*tries)
}

func testCloseSession(t *testing.T, s store.Store) {
	jobTable(t, s)
	ctx := ctxT(t)
	ss := NewSession(t, s, "t")
	now := t0.Add(time.Hour)
	if err := s.CloseSession(ctx, "t", ss.ID, now); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseSession(ctx, "t", ss.ID, now); err != nil {
		t.Fatalf("second close: %v", err)
	}
	wantErr(t, "close other tenant", s.CloseSession(ctx, "u", ss.ID, now), store.ErrSessionNotFound)
	wantErr(t, "close unknown", s.CloseSession(ctx, "t", uuid.New(), now), store.ErrSessionNotFound)
	got, _ := s.GetSession(ctx, "t", ss.ID)
	if got.Status != session.Closed || !got.UpdatedAt.Equal(ms(now)) {
		t.Fatalf("closed session: %+v", got)
	}
	_, err := s.UpdateSession(ctx, "t", ss.ID, session.Patch{SourceCode: ptr("z")}, now)
	wantErr(t, "update closed", err, store.ErrSessionClosed)
	_, err = s.UpdateSession(ctx, "t", ss.ID, session.Patch{SourceCode: ptr("z"), IfMatch: []int64{1}}, now)
	wantErr(t, "update closed with If-Match", err, store.ErrSessionClosed)
	refused := newExec(ss, "", "h")
	_, _, err = s.CreateExecution(ctx, refused, store.InflightCaps{Session: 2}, jobOf(refused.ID))
	wantErr(t, "run closed", err, store.ErrSessionClosed)
	if n := jobs(t, s); n != 0 {
		t.Fatalf("%d jobs inserted for a closed session", n)
	}
}

func testSnapshot(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	ss := NewSession(t, s, "t")
	in := newExec(ss, "", "h")
	in.QueuedAt = t0
	e, created, err := s.CreateExecution(ctx, in, store.InflightCaps{Session: 2}, store.Statement{})
	if err != nil || !created {
		t.Fatal(created, err)
	}
	if e.ID != in.ID || e.Status != execution.Queued || e.Language != "python" || e.SourceCode != "print(1)" ||
		e.Stdin != "in" || e.Attempts != 0 || e.Result != nil || e.StartedAt != nil || e.FinishedAt != nil || !e.QueuedAt.Equal(ms(t0)) {
		t.Fatalf("created execution: %+v", e)
	}
	if _, err := s.UpdateSession(ctx, "t", ss.ID, session.Patch{SourceCode: ptr("changed"), Language: ptr("c")}, time.Now()); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetExecution(ctx, "t", e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.SourceCode != "print(1)" || got.Language != "python" {
		t.Fatalf("snapshot changed: %q %q", got.Language, got.SourceCode)
	}
	if *got != *e {
		t.Fatalf("GetExecution = %+v, want %+v", got, e)
	}
	_, err = s.GetExecution(ctx, "other", e.ID)
	wantErr(t, "other tenant", err, store.ErrExecutionNotFound)
	_, err = s.GetExecution(ctx, "t", uuid.New())
	wantErr(t, "unknown", err, store.ErrExecutionNotFound)
	_, _, err = s.CreateExecution(ctx, &execution.Execution{ID: uuid.New(), SessionID: ss.ID, Tenant: "other"}, store.InflightCaps{Session: 2}, store.Statement{})
	wantErr(t, "run other tenant's session", err, store.ErrSessionNotFound)
	_, _, err = s.CreateExecution(ctx, &execution.Execution{ID: uuid.New(), SessionID: uuid.New(), Tenant: "t"}, store.InflightCaps{Session: 2}, store.Statement{})
	wantErr(t, "run unknown session", err, store.ErrSessionNotFound)
}

func testEnqueueInTx(t *testing.T, s store.Store) {
	jobTable(t, s)
	ctx := ctxT(t)
	ss := NewSession(t, s, "t")
	in := newExec(ss, "", "h")
	// The job statement finds the row it is conditional on.
	if _, _, err := s.CreateExecution(ctx, in, store.InflightCaps{Session: 2}, jobOf(in.ID)); err != nil {
		t.Fatal(err)
	}
	if n := jobs(t, s); n != 1 {
		t.Fatalf("%d jobs inserted with the execution, want 1", n)
	}
	failed := newExec(ss, "k", "h")
	_, _, err := s.CreateExecution(ctx, failed, store.InflightCaps{Session: 2}, store.Statement{SQL: `INSERT INTO storetest_no_such_table VALUES (1)`})
	if err == nil {
		t.Fatal("a failing job statement did not fail the run")
	}
	_, err = s.GetExecution(ctx, "t", failed.ID)
	wantErr(t, "rolled back execution", err, store.ErrExecutionNotFound)
	if n, err := s.QueueDepth(ctx); err != nil || n != 1 {
		t.Fatalf("QueueDepth after rollback = %d, %v; want 1", n, err)
	}
	// The key of the rolled-back request is free again.
	if _, created, err := s.CreateExecution(ctx, newExec(ss, "k", "h"), store.InflightCaps{Session: 2}, store.Statement{}); err != nil || !created {
		t.Fatalf("retry after rollback: %v %v", created, err)
	}
}

func testInflightCap(t *testing.T, s store.Store) {
	ss := NewSession(t, s, "t")
	const n = 10
	var ok, refused atomic.Int32
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := s.CreateExecution(context.Background(), newExec(ss, "", "h"), store.InflightCaps{Session: 2}, store.Statement{})
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, store.ErrTooManyInflight):
				refused.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 2 || refused.Load() != n-2 {
		t.Fatalf("cap 2: %d accepted, %d refused", ok.Load(), refused.Load())
	}
	// Finishing one frees a slot; RUNNING still counts.
	items, _, err := s.ListExecutions(ctxT(t), "t", ss.ID, 10, "")
	if err != nil || len(items) != 2 {
		t.Fatal(len(items), err)
	}
	if _, err := s.StartAttempt(ctxT(t), items[0].ID, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.CreateExecution(ctxT(t), newExec(ss, "", "h"), store.InflightCaps{Session: 2}, store.Statement{})
	wantErr(t, "running counts as in flight", err, store.ErrTooManyInflight)
	if _, err := s.FinishAttempt(ctxT(t), items[0].ID, 1, okResult(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateExecution(ctxT(t), newExec(ss, "", "h"), store.InflightCaps{Session: 2}, store.Statement{}); err != nil {
		t.Fatalf("after a finish: %v", err)
	}
}

func testClientBacklog(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	caps := store.InflightCaps{Session: 2, Client: 3}
	// hold, inside each run's transaction after its insert, makes them
	// overlap on PostgreSQL (SQLite's transactions take the write lock
	// when they begin).
	var hold store.Statement
	runAs := func(ss *session.Session, client string) error {
		e := newExec(ss, "", "h")
		e.Client = client
		_, _, err := s.CreateExecution(ctx, e, caps, hold)
		return err
	}
	a, b, c := NewSession(t, s, "t"), NewSession(t, s, "t"), NewSession(t, s, "t")
	for _, ss := range []*session.Session{a, a, b} {
		if err := runAs(ss, "alice"); err != nil {
			t.Fatal(err)
		}
	}
	wantErr(t, "the session's cap comes first", runAs(a, "alice"), store.ErrTooManyInflight)
	wantErr(t, "client at its cap", runAs(b, "alice"), store.ErrClientBacklog)
	wantErr(t, "client at its cap, fresh session", runAs(c, "alice"), store.ErrClientBacklog)
	if err := runAs(c, "bob"); err != nil {
		t.Fatalf("another client: %v", err)
	}
	// A finished run frees its place.
	var done uuid.UUID
	page, _, err := s.ListExecutions(ctx, "t", a.ID, 1, "")
	if err != nil || len(page) != 1 {
		t.Fatalf("list: %v %v", page, err)
	}
	done = page[0].ID
	if _, err := s.StartAttempt(ctx, done, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishAttempt(ctx, done, 1, okResult(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := runAs(b, "alice"); err != nil {
		t.Fatalf("after one finished: %v", err)
	}
	// Concurrent runs of one client over many sessions: exactly its cap
	// (on PostgreSQL each transaction's snapshot alone would let them all
	// pass).
	caps.Client = 5
	if s.Driver() == "postgres" {
		hold = store.Statement{SQL: `SELECT pg_sleep(0.02)`}
	}
	var accepted, refused atomic.Int32
	var wg sync.WaitGroup
	for range 24 {
		ss := NewSession(t, s, "t")
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch err := runAs(ss, "carol"); {
			case err == nil:
				accepted.Add(1)
			case errors.Is(err, store.ErrClientBacklog):
				refused.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if accepted.Load() != 5 || refused.Load() != 19 {
		t.Errorf("concurrent runs at a cap of 5: %d accepted, %d refused", accepted.Load(), refused.Load())
	}
	// No bound.
	caps.Client, hold = 0, store.Statement{}
	if err := runAs(c, "alice"); err != nil {
		t.Fatalf("without a client bound: %v", err)
	}
}

func testIdempotency(t *testing.T, s store.Store) {
	jobTable(t, s)
	ctx := ctxT(t)
	ss := NewSession(t, s, "t")
	// run asks for e with its job.
	run := func(e *execution.Execution) (*execution.Execution, bool, error) {
		return s.CreateExecution(ctx, e, store.InflightCaps{Session: 2}, jobOf(e.ID))
	}
	first, created, err := run(newExec(ss, "key-1", "hash-a"))
	if err != nil || !created || jobs(t, s) != 1 || first.IdempotencyKey != "key-1" || first.RequestHash != "hash-a" {
		t.Fatalf("first: %+v %v %v jobs=%d", first, created, err, jobs(t, s))
	}
	again, created, err := run(newExec(ss, "key-1", "hash-a"))
	if err != nil || created || again.ID != first.ID || jobs(t, s) != 1 {
		t.Fatalf("replay: id=%v created=%v err=%v jobs=%d", again, created, err, jobs(t, s))
	}
	_, _, err = run(newExec(ss, "key-1", "hash-b"))
	wantErr(t, "same key, other body", err, store.ErrIdempotencyReused)
	byKey, err := s.ExecutionByKey(ctx, "t", ss.ID, "key-1")
	if err != nil || *byKey != *first {
		t.Fatalf("ExecutionByKey = %+v, %v; want %+v", byKey, err, first)
	}
	for _, c := range []struct {
		name, tenant string
		session      uuid.UUID
		key          string
	}{
		{"unknown key", "t", ss.ID, "key-9"},
		{"no key", "t", ss.ID, ""},
		{"other tenant", "other", ss.ID, "key-1"},
		{"other session", "t", uuid.New(), "key-1"},
	} {
		_, err := s.ExecutionByKey(ctx, c.tenant, c.session, c.key)
		wantErr(t, "ExecutionByKey, "+c.name, err, store.ErrExecutionNotFound)
	}
	// Same key on another session is another request.
	ss2 := NewSession(t, s, "t")
	other, created, err := run(newExec(ss2, "key-1", "hash-a"))
	if err != nil || !created || other.ID == first.ID {
		t.Fatalf("other session: %v %v", created, err)
	}
	// A replay is answered even when the session is now full, or closed.
	if _, _, err := run(newExec(ss, "", "x")); err != nil {
		t.Fatal(err)
	}
	again, created, err = run(newExec(ss, "key-1", "hash-a"))
	if err != nil || created || again.ID != first.ID {
		t.Fatalf("replay at cap: %v %v", created, err)
	}
	_, _, err = run(newExec(ss, "key-2", "hash-a"))
	wantErr(t, "new key at cap", err, store.ErrTooManyInflight)
	if err := s.CloseSession(ctx, "t", ss.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	again, created, err = run(newExec(ss, "key-1", "hash-a"))
	if err != nil || created || again.ID != first.ID {
		t.Fatalf("replay on closed session: %v %v", created, err)
	}
	_, _, err = run(newExec(ss, "key-1", "hash-b"))
	wantErr(t, "reused key on closed session", err, store.ErrIdempotencyReused)
	if n := jobs(t, s); n != 3 {
		t.Fatalf("%d jobs inserted, want 3", n)
	}
}

func testIdempotencyRace(t *testing.T, s store.Store) {
	jobTable(t, s)
	ss := NewSession(t, s, "t")
	const n = 10
	var (
		created atomic.Int32
		ids     sync.Map
		wg      sync.WaitGroup
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := newExec(ss, "race", "h")
			e, c, err := s.CreateExecution(context.Background(), in, store.InflightCaps{Session: 2}, jobOf(in.ID))
			if err != nil {
				t.Error(err)
				return
			}
			if c {
				created.Add(1)
			}
			ids.Store(e.ID, true)
		}()
	}
	wg.Wait()
	distinct := 0
	ids.Range(func(any, any) bool { distinct++; return true })
	if distinct != 1 || created.Load() != 1 || jobs(t, s) != 1 {
		t.Fatalf("racing duplicates: %d executions, %d created, %d enqueued", distinct, created.Load(), jobs(t, s))
	}
}

func testFencing(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	ss := NewSession(t, s, "t")
	e := NewExecution(t, s, ss)
	st1 := t0.Add(time.Second)
	got, err := s.StartAttempt(ctx, e.ID, 1, st1)
	if err != nil || got.Status != execution.Running || got.Attempts != 1 || got.StartedAt == nil || !got.StartedAt.Equal(ms(st1)) {
		t.Fatalf("start 1: %+v %v", got, err)
	}
	_, err = s.StartAttempt(ctx, e.ID, 1, st1)
	wantErr(t, "restart same attempt", err, store.ErrFenced)
	got, err = s.StartAttempt(ctx, e.ID, 2, st1.Add(time.Second))
	if err != nil || got.Attempts != 2 {
		t.Fatalf("rescue start 2: %+v %v", got, err)
	}
	_, err = s.StartAttempt(ctx, e.ID, 1, st1)
	wantErr(t, "late start of attempt 1", err, store.ErrFenced)
	late := &execution.Result{Status: execution.Failed, Stdout: "stale", Error: &execution.Error{Code: execution.RuntimeError, Message: "x"}}
	wantErr(t, "finish attempt 1", errOf(s.FinishAttempt(ctx, e.ID, 1, late, time.Now())), store.ErrFenced)
	fin := t0.Add(time.Minute)
	if _, err := s.FinishAttempt(ctx, e.ID, 2, okResult(), fin); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "finish twice", errOf(s.FinishAttempt(ctx, e.ID, 2, okResult(), time.Now())), store.ErrFenced)
	wantErr(t, "finish attempt 1 after", errOf(s.FinishAttempt(ctx, e.ID, 1, late, time.Now())), store.ErrFenced)
	_, err = s.StartAttempt(ctx, e.ID, 3, time.Now())
	wantErr(t, "start terminal", err, store.ErrFenced)
	got, err = s.GetExecution(ctx, "t", e.ID)
	if err != nil || got.Status != execution.Completed || got.Result == nil || got.Result.Stdout != "out" ||
		got.Attempts != 2 || got.FinishedAt == nil || !got.FinishedAt.Equal(ms(fin)) {
		t.Fatalf("recorded: %+v %v", got, err)
	}
	_, err = s.StartAttempt(ctx, uuid.New(), 1, time.Now())
	wantErr(t, "start unknown", err, store.ErrExecutionNotFound)
	wantErr(t, "finish unknown", errOf(s.FinishAttempt(ctx, uuid.New(), 1, okResult(), time.Now())), store.ErrExecutionNotFound)
	// A result whose start the database lost (a crash after the job's
	// fetch): not recorded, and not mistaken for a newer attempt's win.
	lost := NewExecution(t, s, ss)
	wantErr(t, "finish a lost first start", errOf(s.FinishAttempt(ctx, lost.ID, 1, okResult(), time.Now())), store.ErrStartLost)
	if _, err := s.StartAttempt(ctx, lost.ID, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "finish a lost rescue start", errOf(s.FinishAttempt(ctx, lost.ID, 2, okResult(), time.Now())), store.ErrStartLost)
	if got, err := s.GetExecution(ctx, "t", lost.ID); err != nil || got.Status != execution.Running || got.Result != nil {
		t.Fatalf("after lost starts: %+v %v", got, err)
	}
	wantErr(t, "fail unknown", errOf(s.FailUnstarted(ctx, uuid.New(), late, time.Now())), store.ErrExecutionNotFound)
	if _, err := s.FinishAttempt(ctx, e.ID, 2, &execution.Result{Status: execution.Running}, time.Now()); err == nil {
		t.Fatal("non-terminal result accepted")
	}
}

func testResultRoundTrip(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	ss := NewSession(t, s, "t")
	compile := "warning: x"
	sig := "SIGKILL"
	code, et, ct, mem := 137, int64(5001), int64(4990), int64(262144)
	for _, r := range []*execution.Result{
		{Status: execution.Completed, Stdout: "hello\n"},
		{Status: execution.Failed, Stdout: "a", Stderr: "Traceback…\x00é\xff", StdoutTruncated: true, StderrTruncated: true,
			CompileOutput: &compile, ExitCode: &code, Signal: &sig, ExecutionTimeMS: &et, CPUTimeMS: &ct, MemoryKB: &mem,
			Error: &execution.Error{Code: execution.RuntimeError, Message: "killed by SIGKILL"}},
		{Status: execution.Timeout, Stdout: "partial", Error: &execution.Error{Code: execution.TimeLimitExceeded, Message: "5 s"}},
	} {
		e := NewExecution(t, s, ss)
		if _, err := s.StartAttempt(ctx, e.ID, 1, time.Now()); err != nil {
			t.Fatal(err)
		}
		stored, err := s.FinishAttempt(ctx, e.ID, 1, r, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		wantStored(t, s, "t", stored)
		got, err := s.GetExecution(ctx, "t", e.ID)
		if err != nil {
			t.Fatal(err)
		}
		// NUL and invalid UTF-8 are stored as U+FFFD on every driver.
		want := *r
		want.Stderr = strings.NewReplacer("\x00", "\uFFFD", "\xff", "\uFFFD").Replace(r.Stderr)
		r := &want
		if got.Status != r.Status || got.Result == nil {
			t.Fatalf("status %s result %v", got.Status, got.Result)
		}
		if fmt.Sprintf("%s", dump(got.Result)) != fmt.Sprintf("%s", dump(r)) {
			t.Fatalf("result round trip:\n got %s\nwant %s", dump(got.Result), dump(r))
		}
	}
}

func dump(r *execution.Result) string {
	s := fmt.Sprintf("%s|%q|%q|%v|%v", r.Status, r.Stdout, r.Stderr, r.StdoutTruncated, r.StderrTruncated)
	p := func(v any) string {
		switch x := v.(type) {
		case *string:
			if x != nil {
				return fmt.Sprintf("%q", *x)
			}
		case *int:
			if x != nil {
				return fmt.Sprint(*x)
			}
		case *int64:
			if x != nil {
				return fmt.Sprint(*x)
			}
		case *execution.Error:
			if x != nil {
				return fmt.Sprintf("%+v", *x)
			}
		}
		return "nil"
	}
	return s + "|" + p(r.CompileOutput) + "|" + p(r.ExitCode) + "|" + p(r.Signal) + "|" + p(r.ExecutionTimeMS) + "|" +
		p(r.CPUTimeMS) + "|" + p(r.MemoryKB) + "|" + p(r.Error)
}

func testFailUnstarted(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	ss := NewSession(t, s, "t")
	r := &execution.Result{Status: execution.Failed, Error: &execution.Error{Code: execution.InternalError, Message: "incident 42"}}
	q := NewExecution(t, s, ss)
	stored, err := s.FailUnstarted(ctx, q.ID, r, time.Now())
	if err != nil {
		t.Fatalf("QUEUED → FAILED: %v", err)
	}
	wantStored(t, s, "t", stored)
	run := NewExecution(t, s, ss)
	if _, err := s.StartAttempt(ctx, run.ID, 3, time.Now()); err != nil {
		t.Fatal(err)
	}
	if stored, err = s.FailUnstarted(ctx, run.ID, r, time.Now()); err != nil {
		t.Fatalf("RUNNING → FAILED: %v", err)
	}
	wantStored(t, s, "t", stored)
	wantErr(t, "fail terminal", errOf(s.FailUnstarted(ctx, run.ID, r, time.Now())), store.ErrFenced)
	got, _ := s.GetExecution(ctx, "t", q.ID)
	if got.Status != execution.Failed || got.Result == nil || got.Result.Error == nil || got.Result.Error.Code != execution.InternalError {
		t.Fatalf("failed execution: %+v", got)
	}
	if _, err := s.FailUnstarted(ctx, NewExecution(t, s, ss).ID, okResult(), time.Now()); err == nil {
		t.Fatal("FailUnstarted accepted a COMPLETED result")
	}
}

// testIllegalTransitions forces every status, tries every write, and checks
// that exactly the transitions execution.CanTransition allows get through.
func testIllegalTransitions(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	ss := NewSession(t, s, "t")
	all := []execution.Status{execution.Queued, execution.Running, execution.Completed, execution.Failed, execution.Timeout}
	type op struct {
		name   string
		target execution.Status
		// needsRunning: the write also requires RUNNING under its attempt
		needsRunning bool
		do           func(id uuid.UUID) error
	}
	ops := []op{
		{"StartAttempt", execution.Running, false, func(id uuid.UUID) error { _, err := s.StartAttempt(ctx, id, 2, time.Now()); return err }},
		{"FinishAttempt COMPLETED", execution.Completed, true, func(id uuid.UUID) error {
			return errOf(s.FinishAttempt(ctx, id, 1, okResult(), time.Now()))
		}},
		{"FinishAttempt FAILED", execution.Failed, true, func(id uuid.UUID) error {
			return errOf(s.FinishAttempt(ctx, id, 1, &execution.Result{Status: execution.Failed}, time.Now()))
		}},
		{"FinishAttempt TIMEOUT", execution.Timeout, true, func(id uuid.UUID) error {
			return errOf(s.FinishAttempt(ctx, id, 1, &execution.Result{Status: execution.Timeout}, time.Now()))
		}},
		{"FailUnstarted", execution.Failed, false, func(id uuid.UUID) error {
			return errOf(s.FailUnstarted(ctx, id, &execution.Result{Status: execution.Failed}, time.Now()))
		}},
	}
	for _, from := range all {
		for _, o := range ops {
			e := NewExecution(t, s, ss)
			ForceStatus(t, s, e.ID, from, 1)
			err := o.do(e.ID)
			legal := execution.CanTransition(from, o.target) && (!o.needsRunning || from == execution.Running)
			got, gerr := s.GetExecution(ctx, "t", e.ID)
			if gerr != nil {
				t.Fatal(gerr)
			}
			if legal {
				if err != nil || got.Status != o.target {
					t.Errorf("%s from %s: %v, status %s; want %s", o.name, from, err, got.Status, o.target)
				}
			} else if !errors.Is(err, store.ErrFenced) || got.Status != from {
				t.Errorf("%s from %s: %v, status %s; want ErrFenced and unchanged", o.name, from, err, got.Status)
			}
		}
	}
}

func testListExecutions(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	ss := NewSession(t, s, "t")
	const n = 25
	var want []uuid.UUID // newest first
	base := time.Now()
	for i := range n {
		e := newExec(ss, "", "h")
		// Pairs share a queued_at, so the id must break ties.
		e.QueuedAt = base.Add(time.Duration(i/2) * time.Millisecond)
		got, _, err := s.CreateExecution(ctx, e, store.InflightCaps{Session: 1 << 30}, store.Statement{})
		if err != nil {
			t.Fatal(err)
		}
		want = append([]uuid.UUID{got.ID}, want...)
	}
	// Expected order: queued_at desc, then id desc within a pair.
	for i := 0; i+1 < n; i++ {
		a, b := want[i], want[i+1]
		ga, _ := s.GetExecution(ctx, "t", a)
		gb, _ := s.GetExecution(ctx, "t", b)
		if ga.QueuedAt.Equal(gb.QueuedAt) && a.String() < b.String() {
			want[i], want[i+1] = b, a
		}
	}
	var got []uuid.UUID
	cursor, pages := "", 0
	for {
		items, next, err := s.ListExecutions(ctx, "t", ss.ID, 10, cursor)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, it := range items {
			got = append(got, it.ID)
		}
		if next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		cursor = next
	}
	if pages != 3 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pages=%d\n got %v\nwant %v", pages, got, want)
	}
	// Exact multiple: the last full page has no cursor after it... or an empty page.
	items, next, err := s.ListExecutions(ctx, "t", ss.ID, 25, "")
	if err != nil || len(items) != 25 || next != "" {
		t.Fatalf("limit = total: %d items, next %q, %v", len(items), next, err)
	}
	for _, c := range []string{"!!!", "Zm9v", "djE6eDp5", "djE6MTIzOm5vdC1hLXV1aWQ"} {
		_, _, err := s.ListExecutions(ctx, "t", ss.ID, 10, c)
		wantErr(t, "cursor "+c, err, store.ErrInvalidCursor)
	}
	for _, l := range []int{0, -1, 101} {
		if _, _, err := s.ListExecutions(ctx, "t", ss.ID, l, ""); err == nil {
			t.Fatalf("limit %d accepted", l)
		}
	}
	_, _, err = s.ListExecutions(ctx, "other", ss.ID, 10, "")
	wantErr(t, "other tenant", err, store.ErrSessionNotFound)
	_, _, err = s.ListExecutions(ctx, "t", uuid.New(), 10, "")
	wantErr(t, "unknown session", err, store.ErrSessionNotFound)
	empty := NewSession(t, s, "t")
	items, next, err = s.ListExecutions(ctx, "t", empty.ID, 10, "")
	if err != nil || len(items) != 0 || items == nil || next != "" {
		t.Fatalf("empty session: %v %q %v", items, next, err)
	}
}

func testQueueDepth(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if n, err := s.QueueDepth(ctx); err != nil || n != 0 {
		t.Fatal(n, err)
	}
	ss := NewSession(t, s, "t")
	var ids []uuid.UUID
	for range 5 {
		ids = append(ids, NewExecution(t, s, ss).ID)
	}
	if _, err := s.StartAttempt(ctx, ids[0], 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FailUnstarted(ctx, ids[1], &execution.Result{Status: execution.Failed}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if n, err := s.QueueDepth(ctx); err != nil || n != 3 {
		t.Fatalf("QueueDepth = %d, %v; want 3", n, err)
	}
}

// testAutosavesOfManySessions: saves of many sessions at once (which
// PostgreSQL writes in batches) each get their own session's answer: its
// new version and source, or the error that save alone would get.
func testAutosavesOfManySessions(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const sessions, saves = 24, 15
	closed := NewSession(t, s, "t")
	if err := s.CloseSession(ctx, "t", closed.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range sessions {
		ss := NewSession(t, s, "t")
		wg.Add(1)
		go func() {
			defer wg.Done()
			version := ss.Version
			for i := range saves {
				src := fmt.Sprintf("session %d save %d", w, i)
				var err error
				switch i % 5 {
				case 1: // a stale If-Match
					_, err = s.UpdateSession(ctx, "t", ss.ID, session.Patch{SourceCode: ptr("stale"), IfMatch: []int64{1}}, time.Now())
					wantErr(t, "stale If-Match", err, store.ErrVersionConflict)
				case 2: // the closed session, another tenant, an unknown id
					_, err = s.UpdateSession(ctx, "t", closed.ID, session.Patch{SourceCode: ptr(src)}, time.Now())
					wantErr(t, "closed session", err, store.ErrSessionClosed)
					_, err = s.UpdateSession(ctx, "u", ss.ID, session.Patch{SourceCode: ptr(src)}, time.Now())
					wantErr(t, "other tenant", err, store.ErrSessionNotFound)
					_, err = s.UpdateSession(ctx, "t", uuid.New(), session.Patch{SourceCode: ptr(src)}, time.Now())
					wantErr(t, "unknown id", err, store.ErrSessionNotFound)
				default:
					want := version + 1
					ifMatch := []int64{version}
					if i%5 == 3 { // no condition, and a language change
						ifMatch = nil
					}
					lang := map[bool]string{true: "c", false: "python"}[i%2 == 0]
					got, err := s.UpdateSession(ctx, "t", ss.ID, session.Patch{SourceCode: ptr(src), Language: ptr(lang), IfMatch: ifMatch}, time.Now())
					if err != nil {
						t.Errorf("session %d save %d: %v", w, i, err)
						return
					}
					if got.ID != ss.ID || got.Version != want || got.SourceCode != src || got.Language != lang {
						t.Errorf("session %d save %d answered %+v, want version %d", w, i, got, want)
						return
					}
					version = want
				}
			}
		}()
	}
	wg.Wait()
	if got, err := s.GetSession(ctx, "t", closed.ID); err != nil || got.Version != closed.Version || got.SourceCode != closed.SourceCode {
		t.Fatalf("the closed session changed: %+v %v", got, err)
	}
}

func testPurge(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	cutoff := time.Now()
	old, recent := cutoff.Add(-time.Hour), cutoff.Add(time.Hour)
	live := NewSession(t, s, "t")
	finishedOld := NewExecution(t, s, live)
	finishedNew := NewExecution(t, s, live)
	queued := NewExecution(t, s, live)
	for _, x := range []struct {
		id  uuid.UUID
		end time.Time
	}{{finishedOld.ID, old}, {finishedNew.ID, recent}} {
		if _, err := s.StartAttempt(ctx, x.id, 1, old); err != nil {
			t.Fatal(err)
		}
		if _, err := s.FinishAttempt(ctx, x.id, 1, okResult(), x.end); err != nil {
			t.Fatal(err)
		}
	}
	closedOld := NewSession(t, s, "t")
	closedOldExec := NewExecution(t, s, closedOld)
	if err := s.CloseSession(ctx, "t", closedOld.ID, old); err != nil {
		t.Fatal(err)
	}
	closedNew := NewSession(t, s, "t")
	if err := s.CloseSession(ctx, "t", closedNew.ID, recent); err != nil {
		t.Fatal(err)
	}
	keepIdle := t0.Add(-time.Hour) // no ACTIVE session is idle yet
	n, err := s.PurgeBefore(ctx, cutoff, keepIdle)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 { // finishedOld, closedOldExec, closedOld
		t.Fatalf("purged %d rows, want 3", n)
	}
	for _, id := range []uuid.UUID{finishedOld.ID, closedOldExec.ID} {
		if _, err := s.GetExecution(ctx, "t", id); !errors.Is(err, store.ErrExecutionNotFound) {
			t.Fatalf("execution %v survived purge: %v", id, err)
		}
	}
	for _, id := range []uuid.UUID{finishedNew.ID, queued.ID} {
		if _, err := s.GetExecution(ctx, "t", id); err != nil {
			t.Fatalf("execution %v purged: %v", id, err)
		}
	}
	if _, err := s.GetSession(ctx, "t", closedOld.ID); !errors.Is(err, store.ErrSessionNotFound) {
		t.Fatal("old closed session survived")
	}
	for _, id := range []uuid.UUID{live.ID, closedNew.ID} {
		if _, err := s.GetSession(ctx, "t", id); err != nil {
			t.Fatalf("session purged: %v", err)
		}
	}
	if n, err := s.PurgeBefore(ctx, cutoff, keepIdle); err != nil || n != 0 {
		t.Fatalf("second purge: %d %v", n, err)
	}

	// Idle ACTIVE sessions: every session above was saved at t0, long
	// before cutoff. live is kept by its runs queued since cutoff (and by
	// the one in flight).
	// runOf queues a run of ss at queued and, unless finished is zero,
	// runs it to completion then.
	runOf := func(ss *session.Session, queued, finished time.Time) *execution.Execution {
		e := newExec(ss, "", "h")
		e.QueuedAt = queued
		if _, _, err := s.CreateExecution(ctx, e, store.InflightCaps{Session: 1 << 30}, store.Statement{}); err != nil {
			t.Fatal(err)
		}
		if finished.IsZero() {
			return e
		}
		if _, err := s.StartAttempt(ctx, e.ID, 1, queued); err != nil {
			t.Fatal(err)
		}
		if _, err := s.FinishAttempt(ctx, e.ID, 1, okResult(), finished); err != nil {
			t.Fatal(err)
		}
		return e
	}
	idleNever := NewSession(t, s, "t")
	idleRan := NewSession(t, s, "t")
	ranOld := runOf(idleRan, old, old)
	// A run queued before the cutoff that ended after it: run recently.
	ranLong := NewSession(t, s, "t")
	runOf(ranLong, old, recent)
	inflight := NewSession(t, s, "t")
	inflightExec := runOf(inflight, old, time.Time{})
	saved := &session.Session{ID: uuid.New(), Tenant: "t", Status: session.Active, Language: "python",
		SourceCode: "x", Version: 7, CreatedAt: t0, UpdatedAt: recent}
	if err := s.CreateSession(ctx, saved); err != nil {
		t.Fatal(err)
	}
	// Saved just after the cutoff, minutes after it was created: too soon
	// for the save to move what the purge's index holds (touched_at).
	savedSoon := &session.Session{ID: uuid.New(), Tenant: "t", Status: session.Active, Language: "python",
		SourceCode: "x", CreatedAt: cutoff.Add(-10 * time.Minute)}
	if err := s.CreateSession(ctx, savedSoon); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateSession(ctx, "t", savedSoon.ID, session.Patch{SourceCode: ptr("y")}, cutoff.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	n, err = s.PurgeBefore(ctx, cutoff, cutoff)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 { // idleNever, idleRan and its run
		t.Fatalf("idle purge: %d rows, want 3", n)
	}
	for _, id := range []uuid.UUID{idleNever.ID, idleRan.ID} {
		if _, err := s.GetSession(ctx, "t", id); !errors.Is(err, store.ErrSessionNotFound) {
			t.Fatalf("idle session %v survived: %v", id, err)
		}
	}
	if _, err := s.GetExecution(ctx, "t", ranOld.ID); !errors.Is(err, store.ErrExecutionNotFound) {
		t.Fatalf("the run of an idle session survived: %v", err)
	}
	for _, id := range []uuid.UUID{live.ID, inflight.ID, saved.ID, savedSoon.ID, closedNew.ID, ranLong.ID} {
		if _, err := s.GetSession(ctx, "t", id); err != nil {
			t.Fatalf("session %v purged: %v", id, err)
		}
	}
	if _, err := s.GetExecution(ctx, "t", inflightExec.ID); err != nil {
		t.Fatalf("a queued run was purged: %v", err)
	}
}

// testIdlePurgeRacingRun: a run accepted for an idle session while the
// purge runs is not lost with the session. PostgreSQL only: SQLite runs one
// writer at a time, so the two cannot interleave.
func testIdlePurgeRacingRun(t *testing.T, s store.Store) {
	if s.Driver() != "postgres" {
		t.Skip("SQLite serializes writers")
	}
	ctx := ctxT(t)
	ss := NewSession(t, s, "t") // saved at t0: idle
	e := newExec(ss, "", "h")
	done := make(chan error, 1)
	go func() {
		// The run holds its session's lock, inserted and not committed,
		// until well after the purge has started.
		_, _, err := s.CreateExecution(ctx, e, store.InflightCaps{Session: 2}, store.Statement{SQL: `SELECT pg_sleep(0.3)`})
		done <- err
	}()
	for inside := false; !inside; {
		err := s.DB().QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE query = 'SELECT pg_sleep(0.3)' AND state = 'active' AND datname = current_database())`).Scan(&inside)
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.PurgeBefore(ctx, t0.Add(-time.Hour), time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	if _, err := s.GetExecution(ctx, "t", e.ID); err != nil {
		t.Fatalf("the accepted run was lost: %v", err)
	}
	if _, err := s.GetSession(ctx, "t", ss.ID); err != nil {
		t.Fatalf("the session of a run was purged: %v", err)
	}
	// Idle again once its run is old: the next purge takes both.
	if _, err := s.StartAttempt(ctx, e.ID, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishAttempt(ctx, e.ID, 1, okResult(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PurgeBefore(ctx, t0.Add(-time.Hour), time.Now().Add(time.Hour)); err != nil || n != 2 {
		t.Fatalf("later purge: %d rows, %v; want 2", n, err)
	}
}

func testListen(t *testing.T, s store.Store, o Options) {
	if s.Driver() != "postgres" {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		if err := s.ListenFinished(ctx, func(uuid.UUID) { t.Error("callback on SQLite") }); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) > 500*time.Millisecond {
			t.Fatal("ListenFinished blocked on SQLite")
		}
		return
	}
	if o.Reopen == nil {
		t.Skip("no Reopen: cannot test across instances")
	}
	other := o.Reopen(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan uuid.UUID, 100)
	done := make(chan error, 1)
	go func() { done <- s.ListenFinished(ctx, func(id uuid.UUID) { got <- id }) }()
	ss := NewSession(t, other, "t")
	finished := map[uuid.UUID]bool{}
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	// Keep finishing executions in the other instance until one is heard:
	// the listener may not have LISTENed yet when the first is finished.
loop:
	for {
		select {
		case id := <-got:
			if !finished[id] {
				t.Fatalf("notified of unknown execution %v", id)
			}
			break loop
		case <-tick.C:
			e := NewExecution(t, other, ss)
			if _, err := other.StartAttempt(context.Background(), e.ID, 1, time.Now()); err != nil {
				t.Fatal(err)
			}
			finished[e.ID] = true
			if _, err := other.FinishAttempt(context.Background(), e.ID, 1, okResult(), time.Now()); err != nil {
				t.Fatal(err)
			}
		case <-deadline:
			t.Fatal("no notification within 10 s")
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ListenFinished after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ListenFinished did not return after cancel")
	}
}

// MeasureQueueDepth checks QueueDepth against want and logs its latency
// (best of a few runs, after a warm-up).
func MeasureQueueDepth(t *testing.T, s store.Store, want int64) {
	t.Helper()
	ctx := ctxT(t)
	var best time.Duration
	for i := range 6 {
		start := time.Now()
		n, err := s.QueueDepth(ctx)
		d := time.Since(start)
		if err != nil || n != want {
			t.Fatalf("QueueDepth = %d, %v; want %d", n, err, want)
		}
		if i > 0 && (best == 0 || d < best) {
			best = d
		}
	}
	t.Logf("%s: QueueDepth at %d queued rows: %v (best of 5)", s.Driver(), want, best)
}
