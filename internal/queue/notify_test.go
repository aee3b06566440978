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

	if !l.claim() {
		t.Fatal("the first job did not carry a notification")
	}
	advance(notifyWindow / 2)
	if l.claim() {
		t.Fatal("a second job within the window carried a notification")
	}
	l.committedSilently()
	l.committedSilently() // one follow-up covers both
	select {
	case <-sent:
	case <-time.After(5 * time.Second):
		t.Fatal("no notification followed a job committed without one")
	}
	select {
	case <-sent:
		t.Fatal("two notifications followed two silent jobs of one window")
	case <-time.After(50 * time.Millisecond):
	}
	if l.claim() {
		t.Fatal("a job right after the follow-up carried a notification")
	}
	advance(notifyWindow)
	if !l.claim() {
		t.Fatal("a job a window after the last notification carried none")
	}
	// A silent job after a follow-up was sent gets a follow-up of its own.
	advance(notifyWindow / 2)
	if l.claim() {
		t.Fatal("claimed within the window")
	}
	l.committedSilently()
	select {
	case <-sent:
	case <-time.After(5 * time.Second):
		t.Fatal("no notification followed the second silent job")
	}
}
