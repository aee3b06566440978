package main

import (
	"context"
	"slices"
	"testing"
	"time"
)

// slowOp answers 200 after d.
func slowOp(d time.Duration) func(context.Context, int) (func() (int, string, error), error) {
	return func(context.Context, int) (func() (int, string, error), error) {
		return func() (int, string, error) {
			time.Sleep(d)
			return 200, "", nil
		}, nil
	}
}

// A server slower than the offered rate must show in an open loop's
// latencies: each counts from when its request was due, not from when a
// free client got round to sending it.
func TestOpenLoopCountsFromTheDueTime(t *testing.T) {
	const op = 30 * time.Millisecond
	// One client, a request due every 10 ms, each taking 30 ms: the n-th
	// answered request waited about 20n ms before it was sent.
	res, err := load(context.Background(), 1, 300*time.Millisecond, 100, slowOp(op))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.lat) < 5 {
		t.Fatalf("%d requests answered", len(res.lat))
	}
	if worst := slices.Max(res.lat); worst < 3*float64(op/time.Millisecond) {
		t.Errorf("worst latency %.1f ms: the backlog of due requests is not counted", worst)
	}
	// A closed loop measures only the request itself.
	res, err = load(context.Background(), 1, 150*time.Millisecond, 0, slowOp(op))
	if err != nil {
		t.Fatal(err)
	}
	if worst := slices.Max(res.lat); worst >= 3*float64(op/time.Millisecond) {
		t.Errorf("closed loop: worst latency %.1f ms for a %v request", worst, op)
	}
}

// An open loop sends about rate × duration requests when the server keeps up.
func TestOpenLoopKeepsTheRate(t *testing.T) {
	res, err := load(context.Background(), 8, 500*time.Millisecond, 100, slowOp(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(res.lat); n < 40 || n > 51 {
		t.Errorf("%d requests in 0.5 s at 100/s, want about 50", n)
	}
}

// interleaved alternates the two, after one warm-up call of each, and
// summarises each side's timed calls.
func TestInterleavedAlternates(t *testing.T) {
	var calls []string
	bare := func() error { calls = append(calls, "bare"); return nil }
	sys := func() error { calls = append(calls, "sys"); time.Sleep(2 * time.Millisecond); return nil }
	s, b, err := interleaved(context.Background(), 3, bare, sys)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"bare", "sys", "bare", "sys", "bare", "sys", "bare", "sys"}
	if !slices.Equal(calls, want) {
		t.Errorf("calls %v, want %v", calls, want)
	}
	if s.N != 3 || b.N != 3 {
		t.Errorf("%d and %d samples, want 3 each", s.N, b.N)
	}
	if s.P50 < 2 || b.P50 >= s.P50 {
		t.Errorf("p50 %v ms (sys) and %v ms (bare): the sides are mixed up", s.P50, b.P50)
	}
}
