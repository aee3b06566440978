package main

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/runbox/runbox/internal/procstat"
)

// cpuUse is the machine's CPU time over a throughput window, charged to
// the runs completed in it: comparing it with bare's says what runbox adds
// per run, and bare's CPU a run over runbox's is the throughput ratio a
// saturated host would reach. Steal is left out, but a host whose
// neighbours slow its CPUs without stealing them makes it drift as much
// as runs per second (bare python's moved by a third within one run on a
// 2-vCPU VM), so it is best compared with a bare run measured just before.
type cpuUse struct {
	// PerRunMS is busy CPU time (all CPUs, steal excluded) per completed
	// run, whoever spent it: the programs, the jails, the server, the
	// database, the load client, the kernel's threads.
	PerRunMS float64 `json:"per_run_ms"`
	// SelfPerRunMS is this process's share: the load client, and with an
	// embedded server (not -url) the API, the workers and the sandbox's
	// host side; in the sandbox phase the sandbox's host side; in the bare
	// phases fork and exec.
	SelfPerRunMS float64 `json:"self_per_run_ms"`
	// StealShare is the hypervisor's share of the window's CPU time.
	StealShare float64 `json:"steal_share"`
}

// cpuMeter measures one window.
type cpuMeter struct {
	host procstat.Times
	self time.Duration
	err  error
}

func startCPU() cpuMeter {
	m := cpuMeter{self: selfCPU()}
	m.host, m.err = procstat.Read()
	return m
}

// stop ends the window; nil when the counters could not be read or no run
// completed.
func (m cpuMeter) stop(runs int) *cpuUse {
	self := selfCPU() - m.self
	host, err := procstat.Read()
	if m.err != nil || err != nil || runs == 0 {
		return nil
	}
	d, ok := host.Since(m.host)
	if !ok || d.Total() == 0 {
		return nil
	}
	return &cpuUse{
		PerRunMS:     float64(d.Busy()) * procstat.TickSeconds * 1000 / float64(runs),
		SelfPerRunMS: float64(self) / float64(time.Millisecond) / float64(runs),
		StealShare:   float64(d.Steal) / float64(d.Total()),
	}
}

// selfCPU is the CPU time this process has used (every thread).
func selfCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// withCPU adds a window's CPU a run to a rate row, against bare's.
func withCPU(r Row, use, bare *cpuUse) Row {
	if use == nil {
		return r
	}
	r.CPU = use
	text := fmt.Sprintf("CPU a run %.1f ms", use.PerRunMS)
	if bare != nil && use.PerRunMS > 0 {
		x := bare.PerRunMS / use.PerRunMS
		r.CPURatio = &x
		text += fmt.Sprintf(" (%.2f× bare's %.1f)", x, bare.PerRunMS)
	}
	r.VsBare += "; " + text
	note := fmt.Sprintf("of the CPU a run, %.1f ms in this process", use.SelfPerRunMS)
	if use.StealShare >= 0.02 {
		note += fmt.Sprintf("; the hypervisor took %.0f %% of the CPUs' time", 100*use.StealShare)
	}
	r.Note = joinNotes(r.Note, note)
	return r
}

func joinNotes(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
