package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runbox/runbox/internal/config"
	"github.com/runbox/runbox/internal/language"
	"github.com/runbox/runbox/internal/sandbox"
)

const (
	pythonHello = `print("hello")` + "\n"
	cHello      = "#include <stdio.h>\n\nint main(void) {\n    printf(\"hello\\n\");\n    return 0;\n}\n"
	pythonBin   = "/usr/bin/python3"
	gccBin      = "/usr/bin/gcc"
)

// Baseline holds the bare figures every other one is compared with.
type Baseline struct {
	Python, CPrebuilt, CCompile Summary
	PythonRate, CPrebuiltRate   float64
	CCompileRate                float64
	PythonCPU                   *cpuUse // bare parallel python's
}

// sequential runs fn once to warm up, then n times, and summarizes.
func sequential(ctx context.Context, n int, fn func() error) (Summary, error) {
	if err := fn(); err != nil {
		return Summary{}, err
	}
	ds := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return Summary{}, err
		}
		t0 := time.Now()
		if err := fn(); err != nil {
			return Summary{}, err
		}
		ds = append(ds, time.Since(t0))
	}
	return Summarize(ds), nil
}

// interleaved times n calls of fn, each right after a timed call of bare
// (after one warm-up of each), and returns both summaries. Alternating
// cancels the host's drift over the minutes between the baseline phase and
// a later phase: both samples see the same machine. Every timed call starts
// after settleGap of quiet, so that work a jail or the server defers past a
// run (cgroups, clean-up, completion writes) lands in neither sample; a
// learner's runs are seconds apart, so each starts on a quiet machine too.
func interleaved(ctx context.Context, n int, bare, fn func() error) (sys, paired Summary, err error) {
	if err := bare(); err != nil {
		return sys, paired, err
	}
	if err := fn(); err != nil {
		return sys, paired, err
	}
	timed := func(f func() error) (time.Duration, error) {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(settleGap):
		}
		t0 := time.Now()
		err := f()
		return time.Since(t0), err
	}
	ds := make([]time.Duration, 0, n)
	bs := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		b, err := timed(bare)
		if err != nil {
			return sys, paired, err
		}
		d, err := timed(fn)
		if err != nil {
			return sys, paired, err
		}
		bs, ds = append(bs, b), append(ds, d)
	}
	return Summarize(ds), Summarize(bs), nil
}

// settleGap is the quiet before each timed call of interleaved.
const settleGap = 50 * time.Millisecond

// interleavedNote describes a p50 against the bare runs interleaved with it.
func interleavedNote(sys, paired Summary) string {
	return fmt.Sprintf("%+.1f ms over bare python runs interleaved with it (their p50 %.2f ms)", sys.P50-paired.P50, paired.P50)
}

// parallelResult is what parallel measured.
type parallelResult struct {
	Rate float64 // calls completed per second within the window
	CPU  *cpuUse // nil when the host's counters could not be read
}

// parallel runs fn from workers goroutines for d and returns completed
// calls per second (calls that finish after d are not counted) and the
// machine's CPU a call (every call counts there, the window lasting until
// the last one ends).
func parallel(ctx context.Context, workers int, d time.Duration, fn func(worker int) error) (parallelResult, error) {
	var (
		done, all atomic.Int64
		wg        sync.WaitGroup
		errOnce   sync.Once
		first     error
	)
	meter := startCPU()
	start := time.Now()
	deadline := start.Add(d)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				if err := fn(w); err != nil {
					errOnce.Do(func() { first = err })
					return
				}
				all.Add(1)
				if time.Now().Before(deadline) {
					done.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	cpu := meter.stop(int(all.Load()))
	if first != nil {
		return parallelResult{}, first
	}
	if err := ctx.Err(); err != nil {
		return parallelResult{}, err
	}
	return parallelResult{Rate: float64(done.Load()) / d.Seconds(), CPU: cpu}, nil
}

// barePython runs python hello world with a plain fork/exec.
func barePython(ctx context.Context) error {
	return runCmd(ctx, "", "hello\n", pythonBin, "-c", `print("hello")`)
}

// bareParallelPython is the throughput baseline: bare python hello world
// from one goroutine per CPU for d, in runs per second.
func bareParallelPython(ctx context.Context, d time.Duration) (parallelResult, error) {
	return parallel(ctx, runtime.NumCPU(), d, func(int) error { return barePython(ctx) })
}

func runCmd(ctx context.Context, dir string, want string, argv ...string) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", argv[0], err, out)
	}
	if want != "" && string(out) != want {
		return fmt.Errorf("%s printed %q", argv[0], out)
	}
	return nil
}

// measureBare is phase 1: plain fork/exec on this host, no isolation.
func measureBare(ctx context.Context, o *Options, logf func(string, ...any)) (Baseline, []Row, error) {
	var b Baseline
	tmp, err := os.MkdirTemp("", "runbox-bench-bare-")
	if err != nil {
		return b, nil, err
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, "main.c"), []byte(cHello), 0o644); err != nil {
		return b, nil, err
	}
	// Same compiler flags as the language registry's C entry.
	compile := func(dir string) error {
		return runCmd(ctx, dir, "", gccBin, "-O2", "-std=gnu17", "-o", "main", "main.c", "-lm")
	}
	if err := compile(tmp); err != nil {
		return b, nil, err
	}
	prebuilt := filepath.Join(tmp, "main")
	py := func() error { return barePython(ctx) }
	cpre := func() error { return runCmd(ctx, tmp, "hello\n", prebuilt) }
	ccomp := func(dir string) error {
		if err := compile(dir); err != nil {
			return err
		}
		return runCmd(ctx, dir, "hello\n", filepath.Join(dir, "main"))
	}
	var rows []Row

	logf("bare: python sequential (n=%d)", o.N)
	if b.Python, err = sequential(ctx, o.N, py); err != nil {
		return b, nil, err
	}
	logf("bare: C prebuilt sequential")
	if b.CPrebuilt, err = sequential(ctx, o.N, cpre); err != nil {
		return b, nil, err
	}
	logf("bare: C compile+exec sequential")
	if b.CCompile, err = sequential(ctx, o.N, func() error { return ccomp(tmp) }); err != nil {
		return b, nil, err
	}
	cpus := runtime.NumCPU()
	logf("bare: python parallel (%d goroutines, %s)", cpus, o.Duration)
	pyPar, err := bareParallelPython(ctx, o.Duration)
	if err != nil {
		return b, nil, err
	}
	b.PythonRate, b.PythonCPU = pyPar.Rate, pyPar.CPU
	logf("bare: C prebuilt parallel")
	pre, err := parallel(ctx, cpus, o.Duration, func(int) error { return cpre() })
	if err != nil {
		return b, nil, err
	}
	b.CPrebuiltRate = pre.Rate
	logf("bare: C compile+exec parallel")
	dirs := make([]string, cpus)
	for i := range dirs {
		dirs[i] = filepath.Join(tmp, fmt.Sprint("w", i))
		if err := os.Mkdir(dirs[i], 0o755); err != nil {
			return b, nil, err
		}
		if err := os.WriteFile(filepath.Join(dirs[i], "main.c"), []byte(cHello), 0o644); err != nil {
			return b, nil, err
		}
	}
	comp, err := parallel(ctx, cpus, o.Duration, func(w int) error { return ccomp(dirs[w]) })
	if err != nil {
		return b, nil, err
	}
	b.CCompileRate = comp.Rate
	s1, s2, s3 := b.Python, b.CPrebuilt, b.CCompile
	rows = append(rows,
		Row{Section: "bare", Name: "python3 -c hello, sequential", Latency: &s1, VsBare: "baseline"},
		Row{Section: "bare", Name: "C prebuilt hello, sequential", Latency: &s2, VsBare: "baseline"},
		Row{Section: "bare", Name: "C gcc compile + exec, sequential", Latency: &s3, VsBare: "baseline"},
		withCPU(Row{Section: "bare", Name: fmt.Sprintf("python3 hello, parallel x%d", cpus), Rate: b.PythonRate, VsBare: "baseline"}, b.PythonCPU, nil),
		Row{Section: "bare", Name: fmt.Sprintf("C prebuilt, parallel x%d", cpus), Rate: b.CPrebuiltRate, VsBare: "baseline"},
		Row{Section: "bare", Name: fmt.Sprintf("C compile + exec, parallel x%d", cpus), Rate: b.CCompileRate, VsBare: "baseline"},
	)
	return b, rows, nil
}

// measureSandbox is phase 2: sandbox.New + Execute, no API, no queue.
func measureSandbox(ctx context.Context, o *Options, b Baseline, logf func(string, ...any)) ([]Row, error) {
	tmp, err := os.MkdirTemp("", "runbox-bench-sandbox-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	// Warnings and errors (a jail init that died, a cgroup that could not
	// be removed) go to stderr, beside the progress lines: a failed
	// Execute alone would not say why.
	sb, err := sandbox.New(sandbox.Config{Dir: filepath.Join(tmp, "jails"),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return nil, err
	}
	if c, ok := any(sb).(interface{ Close() error }); ok { // when the sandbox has background work
		defer c.Close()
	}
	cfg, err := config.Load(func(string) string { return "" }) // the defaults
	if err != nil {
		return nil, err
	}
	langs, err := language.Load("")
	if err != nil {
		return nil, err
	}
	langs.Probe(ctx)
	limits := language.StepLimits{Run: cfg.Run, Compile: cfg.Compile,
		OutputBytes: cfg.OutputBytes, OutputKill: cfg.OutputKillBytes, Scratch: cfg.ScratchBytes}
	exec := func(id, src string) func() error {
		l, ok := langs.Lookup(id)
		if !ok {
			return func() error { return fmt.Errorf("language %s not available", id) }
		}
		return func() error {
			rep, err := sb.Execute(ctx, l.Request(src, "", limits))
			if err != nil {
				return err
			}
			if rep.Run == nil || rep.Run.Outcome != sandbox.OutcomeOK || string(rep.Run.Stdout) != "hello\n" {
				return fmt.Errorf("sandbox %s: unexpected report %+v", id, rep)
			}
			return nil
		}
	}
	logf("sandbox: python sequential, interleaved with bare runs (cgroup v%d)", sb.CgroupVersion())
	py, pyBare, err := interleaved(ctx, o.N, func() error { return barePython(ctx) }, exec("python", pythonHello))
	if err != nil {
		return nil, err
	}
	logf("sandbox: C compile + run sequential")
	c, err := sequential(ctx, o.N, exec("c", cHello))
	if err != nil {
		return nil, err
	}
	cpus := runtime.NumCPU()
	logf("sandbox: python parallel x%d", cpus)
	pyExec := exec("python", pythonHello)
	par, err := parallel(ctx, cpus, o.Duration, func(int) error { return pyExec() })
	if err != nil {
		return nil, err
	}
	return []Row{
		over(Row{Section: "sandbox", Name: "python hello, sequential", Latency: &py, Target: "≤ +4 ms p50",
			Note: interleavedNote(py, pyBare)}, b.Python, "bare python"),
		over(Row{Section: "sandbox", Name: "C compile + run, sequential", Latency: &c}, b.CCompile, "bare C compile+exec"),
		withCPU(ratio(Row{Section: "sandbox", Name: fmt.Sprintf("python hello, parallel x%d", cpus), Rate: par.Rate}, b.PythonRate, "bare parallel python"), par.CPU, b.PythonCPU),
	}, nil
}
