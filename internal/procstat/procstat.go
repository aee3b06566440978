// Package procstat reads the host's CPU time counters, the aggregate "cpu"
// line of /proc/stat. The benchmark uses them to charge each run the
// machine's CPU time.
package procstat

import (
	"errors"
	"os"
	"strconv"
	"strings"
)

// Times are the host's CPU time since boot, summed over its CPUs, in clock
// ticks (USER_HZ, 100 a second on Linux). Guest time is already in User and
// Nice.
type Times struct {
	User, Nice, System, Idle, IOWait, IRQ, SoftIRQ, Steal uint64
}

// TickSeconds is the length of a tick: USER_HZ is 100 on every Linux
// architecture's ABI (the kernel converts to it whatever its own HZ).
const TickSeconds = 0.01

// Read reads /proc/stat.
func Read() (Times, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return Times{}, err
	}
	return Parse(b)
}

// Parse reads the "cpu" line of a /proc/stat text.
func Parse(b []byte) (Times, error) {
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return Times{}, errors.New("no cpu line in /proc/stat")
	}
	var n [8]uint64
	for i := range n {
		v, err := strconv.ParseUint(f[i+1], 10, 64)
		if err != nil {
			return Times{}, err
		}
		n[i] = v
	}
	return fromCounters(n), nil
}

// counters are the fields in /proc/stat's order.
func (t Times) counters() [8]uint64 {
	return [8]uint64{t.User, t.Nice, t.System, t.Idle, t.IOWait, t.IRQ, t.SoftIRQ, t.Steal}
}

func fromCounters(n [8]uint64) Times {
	return Times{User: n[0], Nice: n[1], System: n[2], Idle: n[3], IOWait: n[4], IRQ: n[5], SoftIRQ: n[6], Steal: n[7]}
}

// Waiting is the time no task ran: idle, and idle waiting for I/O.
func (t Times) Waiting() uint64 { return t.Idle + t.IOWait }

// Busy is the time the CPUs ran tasks or interrupts for this host.
func (t Times) Busy() uint64 { return t.User + t.Nice + t.System + t.IRQ + t.SoftIRQ }

// Total is all of it, steal (time the hypervisor gave to others) included.
func (t Times) Total() uint64 { return t.Busy() + t.Waiting() + t.Steal }

// Since returns the counters' growth from earlier to t; ok is false when
// they did not all grow (earlier is not earlier, or the host's counters went
// backwards, which a CPU taken offline can cause).
func (t Times) Since(earlier Times) (d Times, ok bool) {
	a, b := t.counters(), earlier.counters()
	for i := range a {
		if a[i] < b[i] {
			return Times{}, false
		}
		a[i] -= b[i]
	}
	return fromCounters(a), true
}
