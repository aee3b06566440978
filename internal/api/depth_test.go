package api

import (
	"testing"
	"time"
)

func TestDepthFreshness(t *testing.T) {
	cases := []struct {
		cost, want time.Duration
	}{
		{0, depthFresh},
		{time.Millisecond, depthFresh},                  // SQLite, 100,000 queued
		{5 * time.Millisecond, depthFresh},              // PostgreSQL after a VACUUM
		{40 * time.Millisecond, 800 * time.Millisecond}, // PostgreSQL, fresh rows
		{200 * time.Millisecond, depthFreshMax},
	}
	for _, c := range cases {
		if got := depthFreshness(c.cost); got != c.want {
			t.Errorf("depthFreshness(%v) = %v, want %v", c.cost, got, c.want)
		}
	}
	if depthFreshMax >= depthStale {
		t.Errorf("a refresh every %v would let the sample go stale (%v) and requests count themselves", depthFreshMax, depthStale)
	}
}
