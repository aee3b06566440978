package sandbox

import (
	"os"
	"strconv"
	"strings"
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

func sysCPU() (busy, total int64) {
	b, _ := os.ReadFile("/proc/stat")
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1:]
	for i, x := range f {
		v, _ := strconv.ParseInt(x, 10, 64)
		total += v
		if i != 3 && i != 4 {
			busy += v
		}
	}
	return
}

// TestCostProfile (RUNBOX_COST_PROFILE=1) runs python3 hello through Execute
// from 2 goroutines and splits the CPU per run between the host process,
// the jail inits, the programs and the rest of the system.
func TestCostProfile(t *testing.T) {
	if os.Getenv("RUNBOX_COST_PROFILE") == "" {
		t.Skip("RUNBOX_COST_PROFILE not set")
	}
	{
		me := strconv.Itoa(os.Getpid())
		s0, c0, _ := procCPU(me)
		t0 := time.Now()
		rate := throughput(2, 2*time.Second, func() { bareHello(t) })
		runs := rate * time.Since(t0).Seconds()
		s1, c1, _ := procCPU(me)
		t.Logf("bare: %.0f runs, %.1f/s; per run ms: host %.2f, programs %.2f", runs, rate,
			float64(s1-s0)*10/runs, float64(c1-c0)*10/runs)
	}
	s := newTestSandbox(t)
	for i := 0; i < 10; i++ {
		jailHello(t, s)
	}
	time.Sleep(200 * time.Millisecond)
	d := 5 * time.Second
	if v, err := time.ParseDuration(os.Getenv("RUNBOX_COST_PROFILE")); err == nil {
		d = v
	}
	me := strconv.Itoa(os.Getpid())
	s0, c0, _ := procCPU(me)
	o0, p0 := jailCPU()
	b0, _ := sysCPU()
	j0 := jailsStarted.Load()
	t0 := time.Now()
	rate := throughput(2, d, func() { jailHello(t, s) })
	el := time.Since(t0)
	time.Sleep(100 * time.Millisecond) // background release
	s1, c1, _ := procCPU(me)
	o1, p1 := jailCPU()
	b1, _ := sysCPU()
	runs := rate * el.Seconds()
	ms := func(ticks int64) float64 { return float64(ticks) * 10 / runs } // USER_HZ 100
	t.Logf("jails started: %d", jailsStarted.Load()-j0)
	t.Logf("%.0f runs, %.1f/s; per run ms: host %.2f, inits %.2f, programs %.2f, reaped children %.2f, system-wide busy %.2f",
		runs, rate, ms(s1-s0), ms(o1-o0), ms(p1-p0), ms(c1-c0), ms(b1-b0))
}
