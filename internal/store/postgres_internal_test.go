package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/runbox/runbox/internal/execution"
	"github.com/runbox/runbox/internal/pgtest"
	"github.com/runbox/runbox/internal/session"
)

// TestOnlyPromisesWaitForTheFlush: on PostgreSQL, autosaves and the queue's
// own statements commit without waiting for the WAL flush; the writes a
// client is promised (sessions, accepted runs with their jobs, results)
// wait for it.
func TestOnlyPromisesWaitForTheFlush(t *testing.T) {
	st, err := Open(context.Background(), pgtest.Database(t), "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := st.(*sqlStore)
	for _, c := range []struct {
		name string
		db   *sql.DB
		want string
	}{
		{"durable writes", s.db, "on"},
		{"autosaves", s.saves, "off"},
		{"queue", s.queue, "off"},
		{"queue, as River gets it", st.QueueDB(), "off"},
	} {
		var got string
		if err := c.db.QueryRowContext(context.Background(), "SHOW synchronous_commit").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("%s: synchronous_commit %s, want %s", c.name, got, c.want)
		}
	}
}

// openMigratedPostgres opens a store on a fresh database with runbox's
// tables (not River's), closed when t ends.
func openMigratedPostgres(t *testing.T) *sqlStore {
	t.Helper()
	st, err := Open(context.Background(), pgtest.Database(t), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st.(*sqlStore)
}

// TestAutosavesAreHOTUpdates: on PostgreSQL an autosave changes no
// indexed column (migration 4), so it is a HOT update: no new entry in any
// index of sessions. Were updated_at indexed again, none would be.
func TestAutosavesAreHOTUpdates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openMigratedPostgres(t)
	ss := &session.Session{ID: uuid.New(), Language: "python", SourceCode: "print(0)"}
	if err := s.CreateSession(ctx, ss); err != nil {
		t.Fatal(err)
	}
	const saves = 200
	start := time.Now()
	for i := range saves {
		// Seconds apart, as an editor's saves are: touched_at stays put.
		now := start.Add(time.Duration(i) * time.Second)
		if _, err := s.UpdateSession(ctx, "", ss.ID, session.Patch{SourceCode: ptr(fmt.Sprintf("print(%d)", i))}, now); err != nil {
			t.Fatal(err)
		}
	}
	// A backend publishes its counts within a second or so of going idle.
	var updates, hot int64
	for deadline := time.Now().Add(20 * time.Second); updates < saves && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err := s.db.QueryRowContext(ctx, `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'sessions'::regclass`).Scan(&updates, &hot); err != nil {
			t.Fatal(err)
		}
	}
	if updates < saves {
		t.Fatalf("PostgreSQL counted %d updates of %d saves", updates, saves)
	}
	// A save that finds its heap page full is not HOT; a few may.
	if hot < updates*9/10 {
		t.Errorf("%d of %d autosaves were HOT updates", hot, updates)
	}
}

// TestBatchSavePlan: the batched autosave looks each session up by primary
// key even where PostgreSQL's statistics are wrong: here the table was
// never analyzed, and the planner would take its 1,500 sessions for a few.
func TestBatchSavePlan(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openMigratedPostgres(t)
	if _, err := s.db.ExecContext(ctx, `INSERT INTO sessions (id, tenant, status, language, source_code, version, created_at, updated_at, touched_at)
		SELECT gen_random_uuid(), '', 'ACTIVE', 'python', 'print(1)', 1, 0, 0, 0 FROM generate_series(1, 1500)`); err != nil {
		t.Fatal(err)
	}
	var plan string
	// The generic plan, which a prepared statement gets after five runs.
	conn, err := s.saves.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{`SET plan_cache_mode = force_generic_plan`, `PREPARE batch_save AS ` + batchSaveSQL} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	defer conn.ExecContext(ctx, `DEALLOCATE batch_save; RESET plan_cache_mode`)
	rows, err := conn.QueryContext(ctx, `EXPLAIN EXECUTE batch_save('{`+uuid.NewString()+`}', '{""}', '{1}', '{print(2)}', '{NULL}', '{NULL}')`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan += line + "\n"
	}
	if !strings.Contains(plan, "Index Scan using sessions_pkey") || strings.Contains(plan, "Seq Scan on sessions") ||
		strings.Contains(plan, "Bitmap") || strings.Contains(plan, "touched_idx") {
		t.Errorf("the batched autosave does not look sessions up by key:\n%s", plan)
	}
}

// TestPipelinedCreate: on PostgreSQL a run is accepted in one round trip
// when nothing stands in its way, and every case the pipeline cannot
// decide is left to CreateExecution's transaction (nil, nil), having
// written nothing.
func TestPipelinedCreate(t *testing.T) {
	s := openMigratedPostgres(t)
	ctx := context.Background()
	newSession := func() uuid.UUID {
		id := uuid.New()
		if err := s.CreateSession(ctx, &session.Session{ID: id, Tenant: "t", Status: session.Active, Language: "python",
			SourceCode: "print(1)", Version: 1, CreatedAt: time.Now(), UpdatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	run := func(sid uuid.UUID, tenant, key string, caps InflightCaps) (*execution.Execution, error) {
		e := &execution.Execution{ID: uuid.New(), SessionID: sid, Tenant: tenant, Client: "c", Stdin: "in",
			IdempotencyKey: key, RequestHash: "h"}
		return s.createPipelined(ctx, e, time.Now(), caps, Statement{})
	}
	roomy := InflightCaps{Session: 2, Client: 1000}
	open := newSession()
	got, err := run(open, "t", "k", roomy)
	if err != nil || got == nil || got.Status != execution.Queued || got.SourceCode != "print(1)" || got.Stdin != "in" {
		t.Fatalf("a run with room: %+v, %v", got, err)
	}
	read, err := s.GetExecution(ctx, "t", got.ID)
	if err != nil {
		t.Fatal(err)
	}
	read.Client = got.Client // not a column a read returns
	if *read != *got {
		t.Fatalf("stored %+v, read %+v, %v", got, read, err)
	}
	closed := newSession()
	if err := s.CloseSession(ctx, "t", closed, time.Now()); err != nil {
		t.Fatal(err)
	}
	full := newSession()
	for range 2 {
		if got, err := run(full, "t", "", roomy); err != nil || got == nil {
			t.Fatalf("filling a session: %v %v", got, err)
		}
	}
	for _, c := range []struct {
		name    string
		session uuid.UUID
		tenant  string
		key     string
		caps    InflightCaps
	}{
		{"unknown session", uuid.New(), "t", "", roomy},
		{"another tenant's session", open, "u", "", roomy},
		{"closed session", closed, "t", "", roomy},
		{"session at its cap", full, "t", "", roomy},
		{"replayed key", open, "t", "k", roomy},
		{"client cap within the lock margin", newSession(), "t", "", InflightCaps{Session: 2, Client: clientLockMargin}},
		{"client near its cap", newSession(), "t", "", InflightCaps{Session: 2, Client: clientLockMargin + 3}},
	} {
		before, err := s.QueueDepth(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := run(c.session, c.tenant, c.key, c.caps); got != nil || err != nil {
			t.Errorf("%s: %+v, %v; want it left to the transaction", c.name, got, err)
		}
		if after, _ := s.QueueDepth(ctx); after != before {
			t.Errorf("%s: queue depth %d → %d", c.name, before, after)
		}
	}
}
