package sandbox

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/runbox/runbox/internal/procstat"
)

// pyScript is a python script run of main.py (and any other files).
func pyScript(main string, l Limits, files ...File) Request {
	return Request{
		Files: append([]File{{Name: "main.py", Content: []byte(main), Mode: 0o644}}, files...),
		Run:   Step{Argv: []string{"/usr/bin/python3", "main.py"}, Limits: l, PythonScript: true},
		Env:   testEnv,
	}
}

// newPrestartSandbox is a pool of one jail, which has run a python script
// and so has an interpreter prestarted for the next one. At the end of the
// test it waits for the jail to be back (its interpreter is started in the
// background, and newSandbox then checks that no other process is left).
func newPrestartSandbox(t *testing.T) *Sandbox {
	s := newPoolSandbox(t)
	s.cpuIdle = fixedIdleMeter(1) // whatever else runs on the host meanwhile
	t.Cleanup(func() { waitIdle(t, s) })
	warmUp(t, s)
	return s
}

// warmUp runs a python script in s's pooled jail.
func warmUp(t *testing.T, s *Sandbox) {
	t.Helper()
	waitIdle(t, s)
	if r := run(t, s, pyScript("print('warm-up')", defLimits())); string(r.Stdout) != "warm-up\n" {
		t.Fatalf("warm-up: %s", describe(r))
	}
}

// runPrestarted runs req in s (a pool of one) and checks that an
// interpreter was waiting for it.
func runPrestarted(t *testing.T, s *Sandbox, req Request) *StepReport {
	t.Helper()
	waitIdle(t, s)
	if p := prestartedProcs(s); len(p) != 1 {
		t.Fatalf("prestarted interpreters before the run: %v, want one", p)
	}
	rep, err := s.Execute(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return rep.Run
}

// prestartProbe prints what a script can see of how it was started.
const prestartProbe = `import os, sys
print('prestarted', '_socket' in sys.modules)
print(sys.argv, sys.orig_argv, __name__, __file__, sys.path[0], os.getcwd())
print(sorted(globals()), type(__loader__).__name__, __spec__, __package__, __doc__, __cached__)
import helper; print(helper.where)
print(input(), repr(sys.stdin.read()))
print(sorted(os.environ.items()))
print(os.getuid() == os.geteuid() == os.getgid() > 1500000, os.getgroups(), os.getsid(0) == os.getpid())  # each jail's id is its own
status = dict(l.split(':', 1) for l in open('/proc/self/status'))
print([(k, status[k].strip()) for k in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs', 'Seccomp')])
print('fds', sorted(os.listdir('/proc/self/fd')))
print('interfaces', sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]))
import resource
print('rlimits', [resource.getrlimit(r) for r in (resource.RLIMIT_NOFILE, resource.RLIMIT_FSIZE, resource.RLIMIT_CORE)])
print('processes', len([p for p in os.listdir('/proc') if p.isdigit()]))
print(sys.stdout.line_buffering, sys.stdout.encoding, sys.stdin.isatty(), sys.flags)
print('seekable', sys.stdin.seekable(), sys.stdout.seekable(), sys.stderr.seekable())
`

// TestPrestartedPythonRunsLikeFresh: a script run by a prestarted
// interpreter sees, prints, exits and is accounted for as one run by a
// fresh `python3 main.py`; the only visible trace is _socket in
// sys.modules (which the probe prints, to prove which path ran).
func TestPrestartedPythonRunsLikeFresh(t *testing.T) {
	fresh, warm := newTestSandbox(t), newPrestartSandbox(t)
	// Lower than the warm-up's: the prestarted interpreter, forked with
	// those, must get the run's own.
	probeLimits := defLimits()
	probeLimits.OpenFiles, probeLimits.FileBytes = 100, 1<<20
	helper := File{Name: "helper.py", Content: []byte("where = __file__\n"), Mode: 0o644}
	cases := []struct {
		name      string
		req       Request
		stdin     string
		accounted bool
	}{
		{name: "traceback", req: pyScript("def f():\n    return 1 / 0\n\nprint('before')\nf()\n", defLimits())},
		{name: "syntax error", req: pyScript("print('never'\n", defLimits())},
		{name: "syntax error in an import", req: pyScript("import helper\n", defLimits(), File{Name: "helper.py", Content: []byte("x = = 1\n"), Mode: 0o644})},
		{name: "exit message", req: pyScript("import sys\nprint('x')\nsys.exit('bye')\n", defLimits())},
		{name: "exit status", req: pyScript("raise SystemExit(7)\n", defLimits())},
		{name: "atexit and threads", req: pyScript("import atexit, threading, time\natexit.register(print, 'atexit')\n"+
			"threading.Thread(target=lambda: (time.sleep(0.05), print('thread'))).start()\nprint('main')\n", defLimits())},
		{name: "chained exception", req: pyScript("try:\n    {}['k']\nexcept KeyError as e:\n    raise ValueError('v') from e\n", defLimits())},
		{name: "signal", req: pyScript("import os, signal\nprint('bye', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n", defLimits())},
		// Last: its lower rlimits make the jail unfit for the runs above.
		{name: "probe", req: pyScript(prestartProbe, probeLimits, helper), stdin: "line one\nrest\n", accounted: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.req.Run.Stdin = []byte(c.stdin)
			want := c.req
			want.Run.PythonScript = false
			f := run(t, fresh, want)
			w := runPrestarted(t, warm, c.req)
			fOut, wOut := f.Stdout, w.Stdout
			if f.Prestarted || !w.Prestarted {
				t.Errorf("reported prestarted: fresh %v, prestarted %v", f.Prestarted, w.Prestarted)
			}
			if c.name == "probe" {
				var ok bool
				if fOut, ok = bytes.CutPrefix(fOut, []byte("prestarted False\n")); !ok {
					t.Fatalf("fresh run:\n%s", describe(f))
				}
				if wOut, ok = bytes.CutPrefix(wOut, []byte("prestarted True\n")); !ok {
					t.Fatalf("not run by the prestarted interpreter:\n%s", describe(w))
				}
			}
			if f.Outcome != w.Outcome || f.ExitCode != w.ExitCode || f.Signal != w.Signal ||
				!bytes.Equal(fOut, wOut) || !bytes.Equal(f.Stderr, w.Stderr) {
				t.Errorf("fresh:\n%s\nprestarted:\n%s", describe(f), describe(w))
			}
			// The interpreter's start counts as the run's: without the
			// baselines taken before it, both would be a small fraction.
			if c.accounted && (w.CPUTime < f.CPUTime/3 || w.MemoryBytes < f.MemoryBytes/3) {
				t.Errorf("cpu %v, memory %d; fresh: cpu %v, memory %d", w.CPUTime, w.MemoryBytes, f.CPUTime, f.MemoryBytes)
			}
		})
	}
}

// TestPrestartedPythonServesOnlyItsKind: an interpreter prestarted for one
// environment is not used for another, and is dead before the step of any
// other program: that step sees no process but its own and the init.
func TestPrestartedPythonServesOnlyItsKind(t *testing.T) {
	s := newPrestartSandbox(t)
	other := pyScript("import os, sys\nprint('_socket' in sys.modules, os.environ['EXTRA'])", defLimits())
	other.Env = append(append([]string{}, testEnv...), "EXTRA=yes")
	r := runPrestarted(t, s, other)
	if string(r.Stdout) != "False yes\n" {
		t.Errorf("another environment: %s", describe(r))
	}

	// A prestart for EXTRA=yes now waits; a program of another kind runs
	// (the init's own /proc entry is hidden from the jail's user).
	waitIdle(t, s)
	ps := `import os
print(sorted(open('/proc/%s/cmdline' % p).read().split('\0')[0] for p in os.listdir('/proc') if p.isdigit()))`
	r = run(t, s, Request{Run: Step{Argv: []string{"/usr/bin/python3", "-c", ps}, Limits: defLimits()}, Env: testEnv})
	if got := strings.TrimSpace(string(r.Stdout)); got != "['/usr/bin/python3']" {
		t.Errorf("processes seen by the next program: %s\n%s", got, describe(r))
	}
	waitIdle(t, s)
	if p := prestartedProcs(s); len(p) != 0 {
		t.Errorf("prestarted after a run that was not a python script: %v", p)
	}
}

// TestPrestartedPythonLimits: the step's limits hold for a prestarted
// interpreter (set on it when the step comes): CPU time and memory.
func TestPrestartedPythonLimits(t *testing.T) {
	s := newPrestartSandbox(t)
	l := defLimits()
	l.CPUTime = 300 * time.Millisecond
	if r := runPrestarted(t, s, pyScript("while True: pass", l)); r.Outcome != OutcomeTimeLimit {
		t.Errorf("spin: %s", describe(r))
	}
	warmUp(t, s) // the killed jail was replaced
	l = defLimits()
	l.MemoryBytes = 64 << 20
	if r := runPrestarted(t, s, pyScript("s = 'x' * (1 << 30)", l)); r.Outcome != OutcomeMemoryLimit {
		t.Errorf("memory bomb: %s", describe(r))
	}
}

// fixedIdleMeter always reports share.
func fixedIdleMeter(share float64) *idleMeter {
	return &idleMeter{read: func() (procstat.Times, error) { return procstat.Times{}, errors.New("not read") }, share: share}
}

// TestPrestartOnlyWithIdleCPU: on saturated CPUs a jail does not prestart.
func TestPrestartOnlyWithIdleCPU(t *testing.T) {
	s := newPoolSandbox(t)
	s.cpuIdle = fixedIdleMeter(prestartMinIdle / 2)
	waitIdle(t, s)
	run(t, s, pyScript("pass", defLimits()))
	waitIdle(t, s)
	if p := prestartedProcs(s); len(p) != 0 {
		t.Errorf("prestarted with the CPUs busy: %v", p)
	}
}

func TestIdleMeter(t *testing.T) {
	stats := []string{
		"cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 50 0 50 400 0 0 0 0 0 0\n",
		"cpu  150 0 150 900 0 0 0 0 0 0\n",    // 200 ticks, 100 idle
		"cpu  250 10 200 900 10 0 0 30 5 0\n", // 200 ticks, 10 idle (iowait)
		"garbage\n",                           // unreadable: the last share stays
		"cpu  250 10 200 900 10 0 0 30 5 0\n", // no time passed: the last share stays
		"cpu  250 10 200 1100 10 0 0 30 5 0\n",
	}
	want := []float64{1, 0.5, 0.05, 0.05, 0.05, 1}
	i := 0
	m := &idleMeter{read: func() (procstat.Times, error) { return procstat.Parse([]byte(stats[i])) }, share: 1}
	for i = range stats {
		m.at = time.Time{} // the window has passed
		if got := m.idleShare(); got != want[i] {
			t.Errorf("read %d: idle share %v, want %v", i, got, want[i])
		}
	}
	// Within the window, /proc/stat is not read again.
	m.read = func() (procstat.Times, error) { t.Fatal("read within the window"); return procstat.Times{}, nil }
	m.idleShare()
}

// TestPrestartedPythonLeavesNothing: what a run by a prestarted
// interpreter leaves (a daemon, files in /tmp and /dev/shm) is gone for the
// next one, which is prestarted after it: it sees only itself.
func TestPrestartedPythonLeavesNothing(t *testing.T) {
	s := newPrestartSandbox(t)
	leave := `import os, subprocess
for d in ('/tmp', '/dev/shm'):
    open(d + '/leak', 'w').write('x')
subprocess.Popen(['setsid', 'sleep', '60'], start_new_session=True)
if os.fork() == 0:
    os.setsid(); import time; time.sleep(60)
print('left')`
	if r := runPrestarted(t, s, pyScript(leave, defLimits())); string(r.Stdout) != "left\n" {
		t.Fatalf("%s", describe(r))
	}
	check := `import os, sys
print('_socket' in sys.modules, os.listdir('/tmp'), os.listdir('/dev/shm'), [p for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()])`
	if r := runPrestarted(t, s, pyScript(check, defLimits())); string(r.Stdout) != "True [] [] []\n" {
		t.Errorf("leftovers seen by the next prestarted run: %s", describe(r))
	}
}
