package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestWrapErrUnavailable(t *testing.T) {
	live := context.Background()
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"bad conn", driver.ErrBadConn, true},
		{"conn done", fmt.Errorf("x: %w", sql.ErrConnDone), true},
		{"refused", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{"pg class 08", &pgconn.PgError{Code: "08006"}, true},
		{"pg shutdown", &pgconn.PgError{Code: "57P01"}, true},
		{"dial deadline", fmt.Errorf("dial: %w", context.DeadlineExceeded), true},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"no rows", sql.ErrNoRows, false},
		{"sentinel", ErrFenced, false},
	} {
		err := wrapErr(live, tc.err)
		if got := errors.Is(err, ErrUnavailable); got != tc.want {
			t.Errorf("%s: unavailable=%v, want %v (%v)", tc.name, got, tc.want, err)
		}
		if !tc.want && err != tc.err {
			t.Errorf("%s: error rewritten: %v", tc.name, err)
		}
	}
	// The caller's own deadline is not an outage.
	ctx, cancel := context.WithCancel(live)
	cancel()
	if errors.Is(wrapErr(ctx, context.Canceled), ErrUnavailable) {
		t.Error("caller cancellation mapped to ErrUnavailable")
	}
}

func TestCursorRoundTrip(t *testing.T) {
	id := [16]byte{1, 2, 3}
	us, got, err := decodeCursor(encodeCursor(1234567, id))
	if err != nil || us != 1234567 || got != id {
		t.Fatalf("%d %v %v", us, got, err)
	}
}
