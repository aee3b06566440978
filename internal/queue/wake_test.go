package queue

import (
	"context"
	"errors"
	"testing"

	"github.com/riverqueue/river/riverdriver"
)

// blockingListener stands in for River's SQLite listener: each
// WaitForNotification call is announced on calls, then returns the next
// scripted result, or blocks until its context ends (a wait for the next
// poll) when the script says nil.
type blockingListener struct {
	riverdriver.Listener
	calls  chan int
	script []*riverdriver.Notification
	errs   []error
	n      int
}

func (l *blockingListener) WaitForNotification(ctx context.Context) (*riverdriver.Notification, error) {
	i := l.n
	l.n++
	l.calls <- i
	if i < len(l.errs) && l.errs[i] != nil {
		return nil, l.errs[i]
	}
	if i < len(l.script) && l.script[i] != nil {
		return l.script[i], nil
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestWakingListener(t *testing.T) {
	note := &riverdriver.Notification{Topic: "river_insert", Payload: `{"queue": "default"}`}
	boom := errors.New("boom")
	cases := []struct {
		name      string
		script    []*riverdriver.Notification
		errs      []error
		wakeAfter int // wake once call number wakeAfter has begun; -1: never
		cancel    bool
		wantCalls int
		wantNote  bool
		wantErr   error
	}{
		{name: "a notification is passed on", script: []*riverdriver.Notification{note}, wakeAfter: -1, wantCalls: 1, wantNote: true},
		{name: "an error is passed on", errs: []error{boom}, wakeAfter: -1, wantCalls: 1, wantErr: boom},
		{name: "a wake-up during the wait is an insert notification at once", wakeAfter: 0, wantCalls: 1, wantNote: true},
		{name: "the caller's cancellation ends the wait", wakeAfter: -1, cancel: true, wantCalls: 1, wantErr: context.Canceled},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inner := &blockingListener{calls: make(chan int, 8), script: c.script, errs: c.errs}
			wake := make(chan struct{}, 1)
			l := &wakingListener{Listener: inner, wake: wake}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			type result struct {
				n   *riverdriver.Notification
				err error
			}
			done := make(chan result, 1)
			go func() {
				n, err := l.WaitForNotification(ctx)
				done <- result{n, err}
			}()
			var r result
		wait:
			for {
				select {
				case call := <-inner.calls:
					if call == c.wakeAfter {
						wakeSignal(wake)
					}
					if c.cancel {
						cancel()
					}
				case r = <-done:
					break wait
				}
			}
			if inner.n != c.wantCalls {
				t.Errorf("listener called %d times, want %d", inner.n, c.wantCalls)
			}
			if (r.n != nil) != c.wantNote || r.n != nil && *r.n != *note {
				t.Errorf("notification %v, want %v: %v", r.n, note, c.wantNote)
			}
			if !errors.Is(r.err, c.wantErr) {
				t.Errorf("err %v, want %v", r.err, c.wantErr)
			}
		})
	}
}

// wakingAsItEnds sends a wake-up and returns a notification at once, so
// that the wake-up comes as the wait ends.
type wakingAsItEnds struct {
	riverdriver.Listener
	wake chan struct{}
}

func (l wakingAsItEnds) WaitForNotification(ctx context.Context) (*riverdriver.Notification, error) {
	wakeSignal(l.wake)
	return &riverdriver.Notification{Topic: "river_leadership", Payload: "{}"}, nil
}

// TestWakeAsTheWaitEndsIsKept: however the wake-up and the end of a wait
// interleave, the wake-up is either delivered or left for the next wait.
func TestWakeAsTheWaitEndsIsKept(t *testing.T) {
	for range 200 {
		wake := make(chan struct{}, 1)
		l := &wakingListener{Listener: wakingAsItEnds{wake: wake}, wake: wake}
		n, err := l.WaitForNotification(context.Background())
		if err != nil || n == nil {
			t.Fatalf("%v %v", n, err)
		}
		if n.Topic != insertNotification.Topic && len(wake) != 1 {
			t.Fatalf("the wake-up was lost: got %+v and none pending", n)
		}
	}
}

func TestWakeSignalNeverBlocks(t *testing.T) {
	c := make(chan struct{}, 1)
	for range 3 {
		wakeSignal(c)
	}
	if len(c) != 1 {
		t.Fatalf("%d pending wake-ups, want 1", len(c))
	}
}
