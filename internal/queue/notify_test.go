package queue

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// TestNotifyLimiter: one notification a window is handed out, and a job
// committed without one gets one at the end of the window, once however
// many such jobs commit meanwhile.
func TestNotifyLimiter(t *testing.T) {
	var (
		mu    sync.Mutex
		clock = time.Now()
		sent  = make(chan time.Time, 10)
	)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	l := &notifyLimiter{now: now, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		send: func(context.Context) error { sent <- now(); return nil }}

	// claims says whether a job statement built now carries the
	// notification, as want says it should.
	claims := func(want bool, what string) {
		t.Helper()
		if l.claim() != want {
			t.Fatal(what)
		}
	}
	followedUp := func(what string) {
		t.Helper()
		select {
		case <-sent:
		case <-time.After(5 * time.Second):
			t.Fatal(what)
		}
	}

	claims(true, "the first job did not carry a notification")
	advance(notifyWindow / 2)
	claims(false, "a second job within the window carried a notification")
	l.committedSilently()
	l.committedSilently() // one follow-up covers both
	followedUp("no notification followed a job committed without one")
	select {
	case <-sent:
		t.Fatal("two notifications followed two silent jobs of one window")
	case <-time.After(50 * time.Millisecond):
	}
	claims(false, "a job right after the follow-up carried a notification")
	advance(notifyWindow)
	claims(true, "a job a window after the last notification carried none")
	// A silent job after a follow-up was sent gets a follow-up of its own.
	advance(notifyWindow / 2)
	claims(false, "claimed within the window")
	l.committedSilently()
	followedUp("no notification followed the second silent job")
}
