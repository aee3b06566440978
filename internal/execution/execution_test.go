package execution

import (
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestTransitions(t *testing.T) {
	all := []Status{Queued, Running, Completed, Failed, Timeout}
	legal := map[[2]Status]bool{
		{Queued, Running}:    true,
		{Running, Running}:   true, // a rescued attempt
		{Running, Completed}: true,
		{Running, Failed}:    true,
		{Queued, Failed}:     true, // retry budget spent before a start
		{Running, Timeout}:   true,
	}
	for _, from := range all {
		for _, to := range all {
			if got := CanTransition(from, to); got != legal[[2]Status{from, to}] {
				t.Errorf("%s → %s: %v", from, to, got)
			}
		}
	}
	for _, s := range all {
		terminal := s == Completed || s == Failed || s == Timeout
		if s.Terminal() != terminal {
			t.Errorf("%s.Terminal() = %v", s, s.Terminal())
		}
		for _, p := range Predecessors(s) {
			if p.Terminal() {
				t.Errorf("%s can be entered from terminal %s", s, p)
			}
		}
	}
}

func TestHubWakesEveryWaiter(t *testing.T) {
	h := NewHub()
	id := uuid.New()
	stored := &Execution{ID: id, Status: Completed}
	var wg sync.WaitGroup
	for range 5 {
		ch, release := h.Subscribe(id)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer release()
			select {
			case got := <-ch:
				if got != stored {
					t.Errorf("waiter got %p, want the notified row %p", got, stored)
				}
			case <-time.After(5 * time.Second):
				t.Error("waiter not woken")
			}
		}()
	}
	other, releaseOther := h.Subscribe(uuid.New())
	h.Notify(id, stored)
	wg.Wait()
	select {
	case <-other:
		t.Fatal("another execution's waiter was woken")
	default:
	}
	releaseOther()
	if len(h.waiters) != 0 {
		t.Fatalf("waiters leak: %d ids", len(h.waiters))
	}
}

// TestHubHoldsBackRowlessNotificationsForItsWorkers: a notification
// without a row (PostgreSQL's, from ListenFinished) of an execution a
// worker of this process runs waits for that worker's row, or for its
// Done when it has none; any other goes straight to the waiters.
func TestHubHoldsBackRowlessNotificationsForItsWorkers(t *testing.T) {
	stored := &Execution{Status: Completed}
	type step struct {
		do   string // expect, done, row, nil
		want string // what the waiter holds after the step: "", "row" or "nil"
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"no worker here", []step{{"nil", "nil"}}},
		{"notification before the worker's row", []step{{"expect", ""}, {"nil", ""}, {"row", "row"}, {"done", "row"}}},
		{"worker's row before the notification", []step{{"expect", ""}, {"row", "row"}, {"nil", "row"}, {"done", "row"}}},
		{"worker without a row", []step{{"expect", ""}, {"nil", ""}, {"done", "nil"}}},
		{"two attempts here", []step{{"expect", ""}, {"expect", ""}, {"nil", ""}, {"done", ""}, {"done", "nil"}}},
		{"notification after the worker", []step{{"expect", ""}, {"done", ""}, {"nil", "nil"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHub()
			id := uuid.New()
			ch, release := h.Subscribe(id)
			got := ""
			for i, s := range tc.steps {
				switch s.do {
				case "expect":
					h.Expect(id)
				case "done":
					h.Done(id)
				case "row":
					h.Notify(id, stored)
				case "nil":
					h.Notify(id, nil)
				}
				select {
				case e := <-ch:
					if got != "" {
						t.Fatalf("step %d: the waiter was woken twice", i)
					}
					got = "nil"
					if e == stored {
						got = "row"
					}
				default:
				}
				if got != s.want {
					t.Fatalf("step %d (%s): the waiter holds %q, want %q", i, s.do, got, s.want)
				}
			}
			release()
			if len(h.waiters)+len(h.running) != 0 {
				t.Fatalf("the hub keeps state: %d waiters, %d running", len(h.waiters), len(h.running))
			}
		})
	}
}
