package sandbox

import (
	"context"
	"os/exec"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var helloArgv = []string{"/usr/bin/python3", "-c", `print("hello")`}

func bareHello(t testing.TB) {
	if out, err := exec.Command(helloArgv[0], helloArgv[1:]...).Output(); err != nil || string(out) != "hello\n" {
		t.Fatalf("bare: %q %v", out, err)
	}
}

func jailHello(t testing.TB, s *Sandbox) {
	rep, err := s.Execute(context.Background(), Request{Run: Step{Argv: helloArgv, Limits: defLimits()}, Env: testEnv})
	if err != nil {
		t.Fatal(err)
	}
	if r := rep.Run; r.Outcome != OutcomeOK || string(r.Stdout) != "hello\n" {
		t.Fatalf("jail: %s", describe(r))
	}
}

// throughput runs f from g goroutines for dur and returns runs per second.
func throughput(g int, dur time.Duration, f func()) float64 {
	var n atomic.Int64
	deadline := time.Now().Add(dur)
	t0 := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < g; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				f()
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(t0).Seconds()
}

// TestCost prints the jail's overhead: median of 25 python3 hello worlds,
// bare fork/exec against Execute, and the parallel throughput of both.
// Run with -v to see it.
func TestCost(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	s := newTestSandbox(t)
	const n = 25
	jailHello(t, s) // warm the page cache
	// Interleaved, so that load from elsewhere hits both alike.
	var bares, jails []time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		bareHello(t)
		t1 := time.Now()
		jailHello(t, s)
		bares, jails = append(bares, t1.Sub(t0)), append(jails, time.Since(t1))
	}
	med := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	bare, jail := med(bares), med(jails)
	t.Logf("python3 hello, median of %d: bare fork/exec %v, Execute %v, overhead %v", n, bare, jail, jail-bare)
	for _, g := range []int{2, 8} {
		b := throughput(g, 2*time.Second, func() { bareHello(t) })
		j := throughput(g, 2*time.Second, func() { jailHello(t, s) })
		t.Logf("throughput, %d goroutines: bare %.1f/s, Execute %.1f/s, ratio %.2f", g, b, j, j/b)
	}
}
