package sandbox

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// pyScript is a python script run of main.py (and any other files).
func pyScript(main string, l Limits, files ...File) Request {
	return Request{
		Files: append([]File{{Name: "main.py", Content: []byte(main), Mode: 0o644}}, files...),
		Run:   Step{Argv: []string{"/usr/bin/python3", "main.py"}, Limits: l, PythonScript: true},
		Env:   testEnv,
	}
}

// newTemplateSandbox is a pool of one jail, which has run a python script
// and so has a template interpreter for the next one. At the end of the
// test it waits for the jail to be back (its template is started in the
// background, and newSandbox then checks that no other process is left).
func newTemplateSandbox(t *testing.T) *Sandbox {
	s := newPoolSandbox(t)
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

// runForked runs req in s (a pool of one) and checks that a template was
// waiting for it, and returns the template's host pid.
func runForked(t *testing.T, s *Sandbox, req Request) (*StepReport, string) {
	t.Helper()
	waitIdle(t, s)
	p := templateProcs(s)
	if len(p) != 1 {
		t.Fatalf("templates before the run: %v, want one", p)
	}
	rep, err := s.Execute(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Run.Forked {
		t.Errorf("not forked from the template: %s", describe(rep.Run))
	}
	return rep.Run, p[0]
}

// templateProbe prints what a script can see of how it was started.
const templateProbe = `import os, sys
print('forked', '_socket' in sys.modules)
print('resource' in sys.modules, 'ctypes' in sys.modules, 'atexit' in sys.modules)
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
print('processes', len([p for p in os.listdir('/proc') if p.isdigit()]), str(os.getppid()) in os.listdir('/proc'))
print('own /proc files', os.stat('/proc/self/fd').st_uid == os.getuid(), os.stat('/proc/self/environ').st_uid == os.getuid())
print('modules', sorted(m for m in ('ctypes', '_ctypes', 'struct', 'types', 'resource') if m in sys.modules))
import ctypes, struct; print(struct.pack('<I', 1), ctypes.sizeof(ctypes.c_int))
print(sys.stdout.line_buffering, sys.stdout.encoding, sys.stdin.isatty(), sys.flags)
print('seekable', sys.stdin.seekable(), sys.stdout.seekable(), sys.stderr.seekable())
`

// TestForkedPythonRunsLikeFresh: a script run by a fork of the template
// sees, prints and exits as one run by a fresh `python3 main.py`: the same
// ids, no capability, the same filter, fds, limits, processes, streams
// and modules; the only visible trace is _socket in sys.modules (which
// the probe prints, to prove which path ran). All the cases are forks of
// one template.
func TestForkedPythonRunsLikeFresh(t *testing.T) {
	fresh, warm := newTestSandbox(t), newTemplateSandbox(t)
	// Lower than the warm-up's: the template, started with those, must
	// give the run its own.
	probeLimits := defLimits()
	probeLimits.OpenFiles, probeLimits.FileBytes = 100, 1<<20
	helper := File{Name: "helper.py", Content: []byte("where = __file__\n"), Mode: 0o644}
	var template string // the host pid of the template that serves them all
	cases := []struct {
		name  string
		req   Request
		stdin string
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
		{name: "keyboard interrupt", req: pyScript("print('before')\nraise KeyboardInterrupt\n", defLimits())},
		// What the interpreter's exit does after atexit: each makes the
		// fork exit as the interpreter does (see template.py's finish).
		{name: "finalizer at exit", req: pyScript("class A:\n    def __del__(self):\n        print('del', flush=True)\na = A()\nprint('main')\n", defLimits())},
		{name: "finalizer in a cycle", req: pyScript("class A:\n    def __del__(self):\n        print('del', flush=True)\na = A()\na.me = a\ndel a\n", defLimits())},
		{name: "unclosed file", req: pyScript("f = open(1, 'w', closefd=False)\nf.write('never flushed by the script\\n')\n", defLimits())},
		{name: "closed file", req: pyScript("with open('main.py') as f:\n    print(len(f.read()) > 0)\n", defLimits())},
		{name: "suspended generator", req: pyScript("def g():\n    try:\n        yield 1\n    finally:\n        print('finally')\nx = g()\nnext(x)\n", defLimits())},
		{name: "finished generator", req: pyScript("def g():\n    yield 1\nx = g()\nprint(list(x))\n", defLimits())},
		{name: "weakref callback", req: pyScript("import weakref\nclass A: pass\na = A()\nr = weakref.ref(a, lambda r: print('callback'))\n", defLimits())},
		{name: "stdout replaced", req: pyScript("import io, sys\nsys.stdout = io.TextIOWrapper(open(1, 'wb', closefd=False))\nprint('wrapped')\n", defLimits())},
		{name: "stdout closed", req: pyScript("import os\nprint('lost')\nos.close(1)\n", defLimits())},
		{name: "exit in atexit", req: pyScript("import atexit, sys\natexit.register(sys.exit, 3)\natexit.register(print, 'first')\nprint('main')\n", defLimits())},
		{name: "exit with a message", req: pyScript("import sys\nsys.exit(['not', 'a', 'status'])\n", defLimits())},
		{name: "exit with a message and a generator", req: pyScript("import sys\ndef g():\n    try:\n        yield 1\n    finally:\n        print('finally')\nx = g()\nnext(x)\nsys.exit('bye')\n", defLimits())},
		{name: "interrupted with atexit", req: pyScript("import atexit\natexit.register(print, 'atexit')\nraise KeyboardInterrupt\n", defLimits())},
		{name: "exit status 0 with a finalizer", req: pyScript("import sys\nclass A:\n    def __del__(self):\n        print('del')\na = A()\nsys.exit(0)\n", defLimits())},
		{name: "daemon thread", req: pyScript("import threading, time\nthreading.Thread(target=time.sleep, args=(5,), daemon=True).start()\nprint('main')\n", defLimits())},

		// Hostile programs: a fork answers as a fresh interpreter would.
		{name: "fork bomb", req: pyScript("import os\ntry:\n    while True:\n        if os.fork() == 0:\n            import time\n            time.sleep(30)\nexcept OSError as e:\n    print('stopped', e.errno)\n", defLimits())},
		{name: "denied syscalls", req: pyScript("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"+
			"for name, args in (('unshare', (0x20000,)), ('mount', (b'none', b'/tmp', b'tmpfs', 0, None)), ('chroot', (b'/tmp',)), ('setns', (0, 0)), ('ptrace', (16, 1, 0, 0))):\n"+
			"    print(name, getattr(libc, name)(*args), ctypes.get_errno())\n", defLimits())},
		{name: "read-only root", req: pyScript("for p in ('/x', '/etc/x', '/usr/x', '/proc/sys/kernel/hostname'):\n    try:\n        open(p, 'w').write('x')\n        print(p, 'written')\n    except OSError as e:\n        print(p, e.errno)\n", defLimits())},
		{name: "what the jail shows", req: pyScript("import os, socket\nprint(sorted(os.listdir('/')), sorted(os.listdir('/dev')), socket.gethostname(), os.listdir('/tmp'), os.listdir('/dev/shm'))\n", defLimits())},
		// Last: its lower rlimits make the jail unfit for the runs above.
		{name: "probe", req: pyScript(templateProbe, probeLimits, helper), stdin: "line one\nrest\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.req.Run.Stdin = []byte(c.stdin)
			want := c.req
			want.Run.PythonScript = false
			f := run(t, fresh, want)
			w, tmpl := runForked(t, warm, c.req)
			if template == "" {
				template = tmpl
			} else if tmpl != template {
				t.Errorf("template %s, before %s: it was replaced", tmpl, template)
			}
			fOut, wOut := f.Stdout, w.Stdout
			if f.Forked {
				t.Errorf("fresh run reported forked")
			}
			if c.name == "probe" {
				var ok bool
				if fOut, ok = bytes.CutPrefix(fOut, []byte("forked False\n")); !ok {
					t.Fatalf("fresh run:\n%s", describe(f))
				}
				if wOut, ok = bytes.CutPrefix(wOut, []byte("forked True\n")); !ok {
					t.Fatalf("not run by a fork of the template:\n%s", describe(w))
				}
			}
			if f.Outcome != w.Outcome || f.ExitCode != w.ExitCode || f.Signal != w.Signal ||
				!bytes.Equal(fOut, wOut) || !bytes.Equal(f.Stderr, w.Stderr) {
				t.Errorf("fresh:\n%s\nforked:\n%s", describe(f), describe(w))
			}
			// Its CPU time and memory are its own, from its fork on.
			if w.CPUTime <= 0 || w.MemoryBytes <= 0 {
				t.Errorf("cpu %v, memory %d", w.CPUTime, w.MemoryBytes)
			}
		})
	}
}

// TestTemplateServesOnlyItsKind: a template started for one environment
// does not serve another, and is dead before the step of any other
// program: that step sees no process but its own.
func TestTemplateServesOnlyItsKind(t *testing.T) {
	s := newTemplateSandbox(t)
	other := pyScript("import os, sys\nprint('_socket' in sys.modules, os.environ['EXTRA'])", defLimits())
	other.Env = append(append([]string{}, testEnv...), "EXTRA=yes")
	waitIdle(t, s)
	r := run(t, s, other)
	if string(r.Stdout) != "False yes\n" || r.Forked {
		t.Errorf("another environment: %s", describe(r))
	}

	// A template for EXTRA=yes now waits; a program of another kind runs
	// (the init's own /proc entry is hidden from the jail's user).
	waitIdle(t, s)
	if p := templateProcs(s); len(p) != 1 {
		t.Fatalf("templates: %v", p)
	}
	ps := `import os
print(sorted(open('/proc/%s/cmdline' % p).read().split('\0')[0] for p in os.listdir('/proc') if p.isdigit()))`
	r = run(t, s, Request{Run: Step{Argv: []string{"/usr/bin/python3", "-c", ps}, Limits: defLimits()}, Env: testEnv})
	if got := strings.TrimSpace(string(r.Stdout)); got != "['/usr/bin/python3']" {
		t.Errorf("processes seen by the next program: %s\n%s", got, describe(r))
	}
	waitIdle(t, s)
	if p := templateProcs(s); len(p) != 0 {
		t.Errorf("a template after a run that was not a python script: %v", p)
	}
}

// TestForkedPythonLimits: the step's limits hold for a fork of the
// template: CPU time and memory.
func TestForkedPythonLimits(t *testing.T) {
	s := newTemplateSandbox(t)
	l := defLimits()
	l.CPUTime = 300 * time.Millisecond
	if r, _ := runForked(t, s, pyScript("while True: pass", l)); r.Outcome != OutcomeTimeLimit {
		t.Errorf("spin: %s", describe(r))
	}
	warmUp(t, s) // the killed jail was replaced
	l = defLimits()
	l.MemoryBytes = 64 << 20
	if r, _ := runForked(t, s, pyScript("s = 'x' * (1 << 30)", l)); r.Outcome != OutcomeMemoryLimit {
		t.Errorf("memory bomb: %s", describe(r))
	}
}

// TestForkedPythonLeavesNothing: what a fork of the template leaves (a
// daemon, files in /tmp and /dev/shm) is gone for the next run, a fork
// of the same template: it sees only itself.
func TestForkedPythonLeavesNothing(t *testing.T) {
	s := newTemplateSandbox(t)
	leave := `import os, subprocess
for d in ('/tmp', '/dev/shm'):
    open(d + '/leak', 'w').write('x')
subprocess.Popen(['setsid', 'sleep', '60'], start_new_session=True)
if os.fork() == 0:
    os.setsid(); import time; time.sleep(60)
print('left')`
	r, before := runForked(t, s, pyScript(leave, defLimits()))
	if string(r.Stdout) != "left\n" {
		t.Fatalf("%s", describe(r))
	}
	check := `import os, sys
print('_socket' in sys.modules, os.listdir('/tmp'), os.listdir('/dev/shm'), [p for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()])`
	r, after := runForked(t, s, pyScript(check, defLimits()))
	if string(r.Stdout) != "True [] [] []\n" {
		t.Errorf("leftovers seen by the next forked run: %s", describe(r))
	}
	if after != before {
		t.Errorf("template %s replaced by %s", before, after)
	}
}

// TestTemplateOutOfReach: a run cannot signal, stop, slow down, limit or
// trace the template it was forked from (it runs as another uid, and is
// hidden from /proc), so the next run is forked from it as before.
func TestTemplateOutOfReach(t *testing.T) {
	s := newTemplateSandbox(t)
	attack := `import os, signal, resource, ctypes
me = os.getpid()
done = []
for p in range(1, 4096):
    if p == me:
        continue
    for name, act in (('kill', lambda: os.kill(p, signal.SIGKILL)), ('stop', lambda: os.kill(p, signal.SIGSTOP)),
                      ('nice', lambda: os.setpriority(os.PRIO_PROCESS, p, 19)),
                      ('prlimit', lambda: resource.prlimit(p, resource.RLIMIT_NOFILE, (3, 3))),
                      ('affinity', lambda: os.sched_setaffinity(p, {0})),
                      ('mem', lambda: open('/proc/%d/mem' % p, 'rb').read(1))):
        try:
            act()
            done.append((name, p))
        except OSError:
            pass
libc = ctypes.CDLL(None, use_errno=True)
for p in range(1, 64):
    if libc.ptrace(16, p, 0, 0) == 0:  # PTRACE_ATTACH
        done.append(('ptrace', p))
print(done, os.listdir('/proc').count(str(os.getppid())))`
	r, before := runForked(t, s, pyScript(attack, defLimits()))
	if string(r.Stdout) != "[] 0\n" {
		t.Errorf("the run reached another process: %s", describe(r))
	}
	r, after := runForked(t, s, pyScript("print('next')", defLimits()))
	if string(r.Stdout) != "next\n" || after != before {
		t.Errorf("next run (template %s, before %s): %s", after, before, describe(r))
	}
	// Asleep, not stopped; CAP_SETGID, CAP_SETUID and CAP_SETPCAP only. Just
	// after a run the template may still be running (reaping its fork) on a
	// slow host: it must fall asleep, waiting for the next.
	var status []byte
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var err error
		if status, err = os.ReadFile("/proc/" + after + "/status"); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(status), "State:\tR") || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range []string{"State:\tS", "CapEff:\t00000000000001c0", "CapBnd:\t00000000000001c0", "NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(string(status), want) {
			t.Errorf("template status lacks %q:\n%s", want, status)
		}
	}
}

// TestTemplateDroppedAfterTraces: a run that leaves something in the
// namespaces it shares with its template (a System V object, a POSIX
// message queue, an inet socket) makes the jail drop the template; the
// next run, forked from a new one in fresh namespaces, sees none of it.
func TestTemplateDroppedAfterTraces(t *testing.T) {
	s := newTemplateSandbox(t)
	cases := []struct{ name, leave string }{
		{"shm", "libc.shmget(0, 4096, 0o1600)"}, // IPC_PRIVATE, IPC_CREAT|0600
		{"semaphore", "libc.semget(0, 1, 0o1600)"},
		{"message queue", "libc.mq_open(b'/left', os.O_CREAT | os.O_RDWR, 0o600, None)"},
		{"socket", "socket.socket().bind(('127.0.0.1', 0))"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			leave := "import ctypes, os, socket\nlibc = ctypes.CDLL(None, use_errno=True)\nr = " + c.leave +
				"\nprint(r is None or r >= 0)"
			r, before := runForked(t, s, pyScript(leave, defLimits()))
			if string(r.Stdout) != "True\n" {
				t.Fatalf("%s", describe(r))
			}
			check := `import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
print([len(open('/proc/sysvipc/' + f).readlines()) for f in ('shm', 'sem', 'msg')], libc.mq_open(b'/left', os.O_RDWR, 0, None))`
			r, after := runForked(t, s, pyScript(check, defLimits()))
			if string(r.Stdout) != "[1, 1, 1] -1\n" {
				t.Errorf("the next run saw: %s", describe(r))
			}
			if after == before {
				t.Errorf("template %s kept", after)
			}
		})
	}
}
