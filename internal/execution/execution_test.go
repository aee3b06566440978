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
