package store

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

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

// TestAutosavesAreHOTUpdates: on PostgreSQL an autosave changes no
// indexed column (migration 4), so it is a HOT update: no new entry in any
// index of sessions. Were updated_at indexed again, none would be.
func TestAutosavesAreHOTUpdates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := Open(ctx, pgtest.Database(t), "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	s := st.(*sqlStore)
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
