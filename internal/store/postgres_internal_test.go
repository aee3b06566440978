package store

import (
	"context"
	"database/sql"
	"testing"

	"github.com/runbox/runbox/internal/pgtest"
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
