package sandbox

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// procCPU returns utime+stime and cutime+cstime of pid (clock ticks).
func procCPU(pid string) (self, children int64, ppid string) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, 0, ""
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// f[0] is state (field 3); utime is field 14 -> f[11].
	n := func(i int) int64 { v, _ := strconv.ParseInt(f[i], 10, 64); return v }
	return n(11) + n(12), n(13) + n(14), f[1]
}

// jailCPU sums the CPU of our live children (the jail inits): their own
// and that of the children they reaped (the programs).
func jailCPU() (own, progs int64) {
	me := strconv.Itoa(os.Getpid())
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		s, c, pp := procCPU(e.Name())
		if pp == me {
			own += s
			progs += c
		}
	}
	return
}

// TestCostProfile (RUNBOX_COST_PROFILE=<runs>) runs python3 hello from 2
// goroutines, bare (RUNBOX_COST_MODE=bare) or through Execute (jail, the
// default), and splits the CPU per run between the host process, the jail
// inits and the programs. For the whole process tree including the kernel
// work done on its behalf in its own context, run the test binary under
// perf stat -e task-clock; kernel threads (kworkers, RCU) need perf -a.
func TestCostProfile(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("RUNBOX_COST_PROFILE"))
	if n <= 0 {
		t.Skip("RUNBOX_COST_PROFILE not set")
	}
	me := strconv.Itoa(os.Getpid())
	if os.Getenv("RUNBOX_COST_MODE") == "bare" {
		s0, c0, _ := procCPU(me)
		t0 := time.Now()
		runN(n, func() { bareHello(t) })
		el := time.Since(t0)
		s1, c1, _ := procCPU(me)
		t.Logf("bare: %d runs, %.1f/s; per run ms: host %.2f, programs %.2f", n, float64(n)/el.Seconds(),
			float64(s1-s0)*10/float64(n), float64(c1-c0)*10/float64(n))
		return
	}
	s := newTestSandbox(t)
	for i := 0; i < 10; i++ {
		jailHello(t, s)
	}
	time.Sleep(200 * time.Millisecond)
	s0, c0, _ := procCPU(me)
	o0, p0 := jailCPU()
	j0 := jailsStarted.Load()
	t0 := time.Now()
	runN(n, func() { jailHello(t, s) })
	el := time.Since(t0)
	time.Sleep(100 * time.Millisecond) // background release
	s1, c1, _ := procCPU(me)
	o1, p1 := jailCPU()
	ms := func(ticks int64) float64 { return float64(ticks) * 10 / float64(n) } // USER_HZ 100
	t.Logf("jail: %d runs, %.1f/s, %d jails started; per run ms: host %.2f, live inits %.2f, their programs %.2f, reaped inits %.2f",
		n, float64(n)/el.Seconds(), jailsStarted.Load()-j0, ms(s1-s0), ms(o1-o0), ms(p1-p0), ms(c1-c0))
}

// runN runs f n times from 2 goroutines.
func runN(n int, f func()) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				f()
			}
		}()
	}
	wg.Wait()
}
