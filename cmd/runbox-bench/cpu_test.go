package main

import (
	"strings"
	"testing"
	"time"
)

func TestWithCPU(t *testing.T) {
	r := withCPU(Row{VsBare: "0.50× bare parallel python", Note: "earlier"},
		&cpuUse{PerRunMS: 20, SelfPerRunMS: 4, StealShare: 0.05}, &cpuUse{PerRunMS: 10})
	if r.CPURatio == nil || *r.CPURatio != 0.5 {
		t.Errorf("CPU ratio %v, want 0.5", r.CPURatio)
	}
	if want := "0.50× bare parallel python; CPU a run 20.0 ms (0.50× bare's 10.0)"; r.VsBare != want {
		t.Errorf("vs bare %q, want %q", r.VsBare, want)
	}
	if want := "earlier; of the CPU a run, 4.0 ms in this process; the hypervisor took 5 % of the CPUs' time"; r.Note != want {
		t.Errorf("note %q, want %q", r.Note, want)
	}

	// The baseline itself: no ratio; a negligible steal goes unmentioned.
	r = withCPU(Row{VsBare: "baseline"}, &cpuUse{PerRunMS: 10, SelfPerRunMS: 1, StealShare: 0.01}, nil)
	if r.CPURatio != nil || r.VsBare != "baseline; CPU a run 10.0 ms" || strings.Contains(r.Note, "hypervisor") {
		t.Errorf("baseline row %+v", r)
	}

	// No measurement: the row is left as it was.
	if r := withCPU(Row{VsBare: "x"}, nil, &cpuUse{PerRunMS: 10}); r.VsBare != "x" || r.CPU != nil {
		t.Errorf("row without a measurement changed: %+v", r)
	}
}

func TestCPUMeterNeedsRuns(t *testing.T) {
	if use := startCPU().stop(0); use != nil {
		t.Errorf("a window without runs was charged: %+v", use)
	}
	m := startCPU()
	time.Sleep(50 * time.Millisecond) // a few of /proc/stat's 10 ms ticks
	if use := m.stop(1); use == nil || use.PerRunMS < 0 || use.SelfPerRunMS < 0 {
		t.Errorf("one run: %+v", use)
	}
}
