package main

import (
	"math"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(i + 1) // 1..100
	}
	cases := []struct {
		name   string
		sorted []float64
		p      float64
		want   float64
	}{
		{"median of odd", []float64{1, 2, 3}, 50, 2},
		{"median of even is the lower middle", []float64{1, 2, 3, 4}, 50, 2},
		{"p99 of 1..100", hundred, 99, 99},
		{"p90 of 1..100", hundred, 90, 90},
		{"p100 is the max", hundred, 100, 100},
		{"p0 is the min", hundred, 0, 1},
		{"tiny p is the min", hundred, 0.001, 1},
		{"single value", []float64{7}, 99, 7},
		{"p99 of 10 is the max", []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 99, 10},
		{"over 100 clamps", []float64{1, 2}, 150, 2},
	}
	for _, c := range cases {
		if got := Percentile(c.sorted, c.p); got != c.want {
			t.Errorf("%s: Percentile(p=%v) = %v, want %v", c.name, c.p, got, c.want)
		}
	}
	if got := Percentile(nil, 50); !math.IsNaN(got) {
		t.Errorf("empty sample: %v, want NaN", got)
	}
}

func TestSummarize(t *testing.T) {
	// Unsorted input, in durations; the summary is in milliseconds.
	ds := []time.Duration{5 * time.Millisecond, 1 * time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond}
	s := Summarize(ds)
	if s.N != 5 || s.Min != 1 || s.Max != 5 || s.Mean != 3 || s.P50 != 3 || s.P90 != 5 || s.P99 != 5 {
		t.Fatalf("summary %+v", s)
	}
	if ds[0] != 5*time.Millisecond {
		t.Fatal("Summarize reordered its input")
	}
	if e := Summarize(nil); e.N != 0 || !math.IsNaN(e.P50) {
		t.Fatalf("empty summary %+v", e)
	}
}
