package sandbox

import (
	"sync"
	"time"

	"github.com/runbox/runbox/internal/procstat"
)

// A prestarted interpreter (see prestart_linux.go) uses more CPU than one
// started at its step: on a 2-vCPU host, 8.6-9.3 against 7.1-7.6 ms per
// python hello world, ~1 ms of it before prestart.py's first line runs
// and the rest after its wait. We did not find why: outside a jail,
// starting on prestart.py up to its wait costs only 0.3-0.5 ms more than
// `python3 -c pass`. With CPU to
// spare that costs nothing and saves the run the whole start; on
// saturated CPUs it comes out of the other runs (throughput fell by 10-15 %).
// So a jail prestarts only when the host's CPUs had idle time lately.
const (
	// prestartMinIdle is the idle share of the host's CPU time, over the
	// last idleWindow or more, below which jails do not prestart.
	prestartMinIdle = 0.2
	idleWindow      = 100 * time.Millisecond
)

// idleMeter measures the idle share of the host's CPU time from
// /proc/stat, re-read at most once per idleWindow.
type idleMeter struct {
	read func() (procstat.Times, error) // procstat.Read, but in tests

	mu    sync.Mutex
	at    time.Time
	last  procstat.Times // read at `at`
	share float64        // idle share between the last two reads
}

func newIdleMeter() *idleMeter {
	return &idleMeter{read: procstat.Read, share: 1}
}

// idleShare returns the idle share of the host's CPU time between the last
// two reads of /proc/stat (1 until there are two, or if it cannot be read:
// then prestarting, which only costs CPU, is the safe side for latency).
func (m *idleMeter) idleShare() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	if now.Sub(m.at) < idleWindow {
		return m.share
	}
	t, err := m.read()
	if err != nil {
		return m.share
	}
	if d, ok := t.Since(m.last); ok && m.last.Total() != 0 && d.Total() > 0 {
		m.share = float64(d.Waiting()) / float64(d.Total())
	}
	m.at, m.last = now, t
	return m.share
}
