package api

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runbox/runbox/internal/config"
	"github.com/runbox/runbox/internal/store"
	"github.com/runbox/runbox/internal/telemetry"
)

func TestDepthFreshness(t *testing.T) {
	cases := []struct {
		cost time.Duration
		far  bool
		want time.Duration
	}{
		{0, false, depthFresh},
		{time.Millisecond, false, depthFresh},                  // SQLite, 100,000 queued
		{5 * time.Millisecond, false, depthFresh},              // PostgreSQL after a VACUUM
		{40 * time.Millisecond, false, 800 * time.Millisecond}, // PostgreSQL, fresh rows
		{200 * time.Millisecond, false, depthFreshMax},
		{0, true, depthFresh},
		{time.Millisecond, true, depthFresh},
		{5 * time.Millisecond, true, time.Second},
		{40 * time.Millisecond, true, 8 * time.Second},
		{200 * time.Millisecond, true, depthFarFreshMax},
	}
	for _, c := range cases {
		if got := depthFreshness(c.cost, c.far); got != c.want {
			t.Errorf("depthFreshness(%v, far=%v) = %v, want %v", c.cost, c.far, got, c.want)
		}
	}
	if depthFarFreshMax >= depthStale {
		t.Errorf("a refresh every %v would let the sample go stale (%v) and requests count themselves", depthFarFreshMax, depthStale)
	}
}

// countingStore answers QueueDepth with a fixed count and counts the calls.
type countingStore struct {
	store.Store
	queued int64
	calls  atomic.Int32
}

func (c *countingStore) QueueDepth(context.Context) (int64, error) {
	c.calls.Add(1)
	return c.queued, nil
}

// TestDepthAddsAcceptedRuns: between counts, the overload check sees the
// runs this process accepted, so one API process cannot overshoot the bound
// while the last count is served.
func TestDepthAddsAcceptedRuns(t *testing.T) {
	st := &countingStore{queued: 6}
	s := newServer(Deps{Store: st, Config: &config.Config{MaxQueueDepth: 10}, Metrics: telemetry.NewMetrics()})
	ctx := context.Background()
	if count, accepted, err := s.queueDepth(ctx); err != nil || count != 6 || accepted != 0 {
		t.Fatalf("first check = %d+%d, %v; want 6+0 (counted at once: no sample yet)", count, accepted, err)
	}
	for range 3 {
		s.acceptedRun()
	}
	if count, accepted, _ := s.queueDepth(ctx); count != 6 || accepted != 3 {
		t.Fatalf("after 3 accepted runs = %d+%d; want 6+3", count, accepted)
	}
	if n := st.calls.Load(); n != 1 {
		t.Fatalf("%d counts; want 1 (the sample is fresh for %v)", n, depthFresh)
	}
	// The next count includes those runs: they are no longer added.
	st.queued = 9
	if _, err := s.countQueue(ctx); err != nil {
		t.Fatal(err)
	}
	if count, accepted, _ := s.queueDepth(ctx); count != 9 || accepted != 0 {
		t.Fatalf("after a new count = %d+%d; want 9+0", count, accepted)
	}
}
