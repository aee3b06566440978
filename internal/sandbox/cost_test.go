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

func median(n int, f func()) time.Duration {
	var d []time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		f()
		d = append(d, time.Since(t0))
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[n/2]
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
	bare := median(n, func() { bareHello(t) })
	jail := median(n, func() { jailHello(t, s) })
	t.Logf("python3 hello, median of %d: bare fork/exec %v, Execute %v, overhead %v", n, bare, jail, jail-bare)
	for _, g := range []int{2, 8} {
		b := throughput(g, 2*time.Second, func() { bareHello(t) })
		j := throughput(g, 2*time.Second, func() { jailHello(t, s) })
		t.Logf("throughput, %d goroutines: bare %.1f/s, Execute %.1f/s, ratio %.2f", g, b, j, j/b)
	}
}
