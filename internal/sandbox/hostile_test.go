package sandbox

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestSelfCheck(t *testing.T) {
	s := newTestSandbox(t)
	if err := s.SelfCheck(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestVerdicts: each program is run once and must end with the expected
// outcome within the expected time.
func TestVerdicts(t *testing.T) {
	s := newTestSandbox(t)
	short := defLimits()
	short.WallTime, short.CPUTime = 1*time.Second, 500*time.Millisecond
	// CPU-bound cases get a long wall limit: the CPU limit must fire first,
	// even on a loaded machine.
	spin := short
	spin.WallTime = 10 * time.Second
	// Where the kernel serves the 32-bit syscall ABI, our filter must kill
	// the call (SIGSYS); where it does not (e.g. paravirtualised guests),
	// int 0x80 faults before any filter runs, in the jail as on the host.
	i386Signal := "SIGSYS"
	if !hostServesI386Syscalls(t) {
		t.Log("this kernel does not serve int 0x80: only the fault is checked; TestSeccompProgram checks the filter's arch test")
		i386Signal = "SIGSEGV"
	}
	cpuBound := func(t *testing.T, r *StepReport) {
		if r.CPUTime < spin.CPUTime || r.CPUTime > spin.CPUTime+500*time.Millisecond || r.WallTime > 9*time.Second {
			t.Errorf("cpu %v wall %v for a %v CPU limit", r.CPUTime, r.WallTime, spin.CPUTime)
		}
	}
	cases := []struct {
		name    string
		req     Request
		want    Outcome
		maxWall time.Duration // Execute must return within this
		check   func(t *testing.T, r *StepReport)
	}{
		// No memory check here: cgroup v1 charges memory to a cgroup in
		// per-CPU batches of 256 KiB, so what a program as small as this
		// one adds may not show at all (see "memory measured" below).
		{name: "ok", req: sh("echo hello", defLimits()), want: OutcomeOK, check: func(t *testing.T, r *StepReport) {
			if string(r.Stdout) != "hello\n" || r.CPUTime <= 0 {
				t.Errorf("stdout %q cpu %v", r.Stdout, r.CPUTime)
			}
		}},
		{name: "memory measured", req: Request{Run: Step{Argv: []string{"/usr/bin/python3", "-c", "b = bytearray(32 << 20); print(len(b))"}, Limits: defLimits()}, Env: testEnv},
			want: OutcomeOK, check: func(t *testing.T, r *StepReport) {
				if r.MemoryBytes < 32<<20 || r.MemoryBytes > 96<<20 {
					t.Errorf("peak memory %d for a 32 MiB buffer", r.MemoryBytes)
				}
			}},
		{name: "exit code", req: sh("echo oops >&2; exit 3", defLimits()), want: OutcomeNonZeroExit, check: func(t *testing.T, r *StepReport) {
			if r.ExitCode != 3 || string(r.Stderr) != "oops\n" {
				t.Errorf("exit %d stderr %q", r.ExitCode, r.Stderr)
			}
		}},
		{name: "stdin", req: func() Request {
			r := Request{Run: Step{Argv: []string{"/bin/cat"}, Stdin: []byte("line1\nline2\n"), Limits: defLimits()}, Env: testEnv}
			return r
		}(), want: OutcomeOK, check: func(t *testing.T, r *StepReport) {
			if string(r.Stdout) != "line1\nline2\n" {
				t.Errorf("stdout %q", r.Stdout)
			}
		}},
		{name: "big stdin not read", req: func() Request {
			return Request{Run: Step{Argv: []string{"/bin/true"}, Stdin: bytes.Repeat([]byte("x"), 1<<20), Limits: defLimits()}, Env: testEnv}
		}(), want: OutcomeOK},
		{name: "missing binary", req: Request{Run: Step{Argv: []string{"/nonexistent"}, Limits: defLimits()}, Env: testEnv},
			want: OutcomeNonZeroExit, check: func(t *testing.T, r *StepReport) {
				if r.ExitCode != 127 {
					t.Errorf("exit %d", r.ExitCode)
				}
			}},
		{name: "self kill signal", req: sh("kill -TERM $$", defLimits()), want: OutcomeSignaled, check: func(t *testing.T, r *StepReport) {
			if r.Signal != "SIGTERM" {
				t.Errorf("signal %q", r.Signal)
			}
		}},
		{name: "cpu spin", req: sh("while :; do :; done", spin), want: OutcomeTimeLimit, check: cpuBound},
		{name: "cpu spin two procs", req: sh("(while :; do :; done) & while :; do :; done", spin), want: OutcomeTimeLimit, check: cpuBound},
		{name: "sleep", req: sh("sleep 10", short), want: OutcomeTimeLimit, maxWall: short.WallTime + 500*time.Millisecond,
			check: func(t *testing.T, r *StepReport) {
				if r.CPUTime > 100*time.Millisecond {
					t.Errorf("cpu %v for a sleep", r.CPUTime)
				}
			}},
		{name: "output before timeout kept", req: sh("echo partial; sleep 10", short), want: OutcomeTimeLimit,
			check: func(t *testing.T, r *StepReport) {
				if string(r.Stdout) != "partial\n" {
					t.Errorf("stdout %q", r.Stdout)
				}
			}},
		{name: "output flood", req: Request{Run: Step{Argv: []string{"/usr/bin/yes"}, Limits: defLimits()}, Env: testEnv},
			want: OutcomeOutputLimit, maxWall: 3 * time.Second, check: func(t *testing.T, r *StepReport) {
				want := bytes.Repeat([]byte("y\n"), int(defLimits().OutputBytes/2))
				if !bytes.Equal(r.Stdout, want) || !r.StdoutTruncated || r.StderrTruncated {
					t.Errorf("stdout len %d truncated %v", len(r.Stdout), r.StdoutTruncated)
				}
			}},
		{name: "stderr flood", req: sh("yes >&2", defLimits()), want: OutcomeOutputLimit, maxWall: 3 * time.Second,
			check: func(t *testing.T, r *StepReport) {
				if int64(len(r.Stderr)) != defLimits().OutputBytes || !r.StderrTruncated {
					t.Errorf("stderr len %d", len(r.Stderr))
				}
			}},
		{name: "output under kill limit", req: sh("head -c 100000 /dev/zero", defLimits()), want: OutcomeOK,
			check: func(t *testing.T, r *StepReport) {
				if int64(len(r.Stdout)) != defLimits().OutputBytes || !r.StdoutTruncated {
					t.Errorf("stdout len %d truncated %v", len(r.Stdout), r.StdoutTruncated)
				}
			}},
		{name: "memory bomb python", req: Request{Run: Step{Argv: []string{"/usr/bin/python3", "-c", "s = 'x' * (1 << 30); print(len(s))"}, Limits: defLimits()}, Env: testEnv},
			want: OutcomeMemoryLimit, maxWall: 5 * time.Second},
		{name: "memory bomb c", req: cProg(defLimits(), "membomb"), want: OutcomeMemoryLimit},
		{name: "segv", req: cProg(defLimits(), "segv"), want: OutcomeSignaled, check: func(t *testing.T, r *StepReport) {
			if r.Signal != "SIGSEGV" {
				t.Errorf("signal %q", r.Signal)
			}
		}},
		{name: "abort", req: cProg(defLimits(), "abort"), want: OutcomeSignaled, check: func(t *testing.T, r *StepReport) {
			if r.Signal != "SIGABRT" {
				t.Errorf("signal %q", r.Signal)
			}
		}},
		{name: "i386 syscall killed", req: cProg(defLimits(), "i386"), want: OutcomeSignaled, check: func(t *testing.T, r *StepReport) {
			if r.Signal != i386Signal {
				t.Errorf("signal %q, want %s", r.Signal, i386Signal)
			}
		}},
		{name: "fork bomb c", req: cProg(short, "forkbomb"), want: OutcomeTimeLimit, maxWall: 4 * time.Second},
		{name: "fork bomb sh", req: sh("f() { f | f & }; f; sleep 3", short), want: "", maxWall: 4 * time.Second},
		{name: "thread bomb", req: Request{Run: Step{Argv: []string{"/usr/bin/python3", "-c",
			"import threading, time\nwhile True: threading.Thread(target=time.sleep, args=(100,)).start()"}, Limits: short}, Env: testEnv},
			want: "", maxWall: 4 * time.Second, check: func(t *testing.T, r *StepReport) {
				if r.Outcome == OutcomeOK {
					t.Errorf("thread bomb succeeded")
				}
			}},
		{name: "daemonized grandchild", req: sh(`setsid sh -c 'sh -c "sleep 60" & sleep 60 &' & sleep 0.2; echo parent-done`, defLimits()),
			want: OutcomeOK, maxWall: 2 * time.Second},
		{name: "kill all inside", req: sh("sleep 30 & sleep 30 & sleep 0.1; kill -9 -1; echo survived", defLimits()), want: OutcomeOK,
			check: func(t *testing.T, r *StepReport) {
				if string(r.Stdout) != "survived\n" {
					t.Errorf("stdout %q", r.Stdout)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Now()
			r := run(t, s, tc.req)
			took := time.Since(t0)
			if tc.want != "" && r.Outcome != tc.want {
				t.Errorf("outcome: want %s, got %s", tc.want, describe(r))
			}
			// Compile time is not bounded by maxWall.
			if tc.maxWall > 0 && tc.req.Compile == nil && took > tc.maxWall {
				t.Errorf("took %v, want <= %v", took, tc.maxWall)
			}
			if tc.req.Compile != nil && tc.maxWall > 0 && r.WallTime > tc.maxWall {
				t.Errorf("run wall %v, want <= %v", r.WallTime, tc.maxWall)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
			assertClean(t, s)
		})
	}
}

func TestForbiddenSyscalls(t *testing.T) {
	s := newTestSandbox(t)
	r := run(t, s, cProg(defLimits(), "syscalls"))
	if r.Outcome != OutcomeOK {
		t.Fatalf("%s", describe(r))
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(r.Stdout)), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			got[f[0]] = f[1]
		}
	}
	want := map[string]string{
		"unshare_user": "EPERM", "unshare_net": "EPERM", "mount": "EPERM", "umount": "EPERM", "chroot": "EPERM",
		"ptrace": "EPERM", "keyctl": "EPERM", "add_key": "EPERM", "bpf": "EPERM", "perf_event_open": "EPERM",
		"userfaultfd": "EPERM", "io_uring_setup": "EPERM", "socket_vsock": "EPERM", "socket_netlink": "EPERM",
		"socket_packet": "EPERM", "socket_unix": "OK", "socket_inet": "OK", "socketpair_unix": "OK",
		"socketpair_inet": "EPERM", "socketpair_netlink": "EPERM", "clone_newuser": "EPERM",
		"clone3": "ENOSYS", "personality_set": "EPERM", "personality_query": "OK", "setuid0": "EPERM",
		"open_shadow": "ENOENT", "fork": "OK",
		"setxattr": "EOPNOTSUPP", "lsetxattr": "EOPNOTSUPP", "fsetxattr": "EOPNOTSUPP", "getxattr": "OK",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: want %s, got %q", k, v, got[k])
		}
	}
}

func TestPrivileges(t *testing.T) {
	s := newTestSandbox(t)
	r := run(t, s, sh(`grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status
su -c id root </dev/null >/dev/null 2>&1 && echo SU-WORKED
cp /usr/bin/passwd /box/passwd 2>/dev/null; /usr/bin/passwd -S root >/dev/null 2>&1 && echo PASSWD-WORKED
id -u`, defLimits()))
	out := string(r.Stdout)
	// The jail's id: jailUIDBase + its init's host pid, the same for every
	// uid and gid of the program.
	m := regexp.MustCompile(`(?m)^Uid:\t(\d+)\t`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no Uid line in\n%s", out)
	}
	id := m[1]
	if !isJailID(id) {
		t.Errorf("uid %s is not a jail id", id)
	}
	for _, want := range []string{
		"Uid:\t" + id + "\t" + id + "\t" + id + "\t" + id, "Gid:\t" + id + "\t" + id + "\t" + id + "\t" + id,
		"CapInh:\t0000000000000000", "CapPrm:\t0000000000000000", "CapEff:\t0000000000000000",
		"CapBnd:\t0000000000000000", "CapAmb:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2", "\n" + id + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`(?m)^Groups:\s*$`).MatchString(out) {
		t.Errorf("supplementary groups present:\n%s", out)
	}
	if strings.Contains(out, "WORKED") {
		t.Errorf("setuid binary gained privilege:\n%s", out)
	}
}

func TestNetwork(t *testing.T) {
	s := newTestSandbox(t)
	r := run(t, s, Request{Run: Step{Argv: []string{"/usr/bin/python3", "-c", `
import socket
print(open('/proc/net/dev').read())
print('ROUTES', open('/proc/net/route').read().strip().count('\n'))
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(1)
c = socket.create_connection(srv.getsockname(), timeout=1); print('LOOPBACK OK')
s = socket.socket()
s.settimeout(1)
try:
    s.connect(('127.0.0.1', 5432)); print('CONNECTED')
except OSError as e:
    print('refused', e.errno)
`}, Limits: defLimits()}, Env: testEnv})
	out := string(r.Stdout)
	var ifaces []string
	for _, line := range strings.Split(out, "\n") {
		if i := strings.Index(line, ":"); i > 0 && !strings.Contains(line, "|") {
			ifaces = append(ifaces, strings.TrimSpace(line[:i]))
		}
	}
	if len(ifaces) != 1 || ifaces[0] != "lo" {
		t.Errorf("interfaces %v in\n%s", ifaces, out)
	}
	if !strings.Contains(out, "LOOPBACK OK") {
		t.Errorf("loopback unusable: %s", describe(r))
	}
	if !strings.Contains(out, "ROUTES 0") || strings.Contains(out, "CONNECTED") || !strings.Contains(out, "refused") {
		t.Errorf("network reachable:\n%s", describe(r))
	}
}

func TestHostInvisible(t *testing.T) {
	s := newTestSandbox(t)
	t.Setenv("RUNBOX_CANARY", "leaked")
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "secret"), []byte("s"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, s, sh(`
test -e /etc/shadow && echo SHADOW
test -e /root && echo ROOT
test -e `+other+`/secret && echo OTHER
test -e `+s.dir+` && echo DIR
test -e /sys/fs/cgroup && echo CGROUP
test -e /run/postgresql && echo RUN
ls -A /usr/local/etc 2>/dev/null | grep -q . && echo LOCALETC
for f in interrupts softirqs kallsyms timer_list iomem ioports vmallocinfo keys key-users config.gz; do
	head -c1 /proc/$f 2>/dev/null | grep -q . && echo PROC $f
done
for d in acpi bus driver fs irq scsi tty; do ls -A /proc/$d 2>/dev/null | grep -q . && echo PROCDIR $d; done
echo > /proc/sysrq-trigger 2>/dev/null && echo SYSRQ
for f in cpuinfo meminfo stat self/status; do head -c1 /proc/$f | grep -q . || echo PROC_MISSING $f; done
ls /proc | grep -c '^[0-9]'
`, defLimits()))
	out := strings.TrimSpace(string(r.Stdout))
	if out != "3" && out != "2" && out != "4" { // sh, ls, grep (init hidden)
		t.Errorf("host visible or too many pids:\n%s", describe(r))
	}
	r = run(t, s, Request{Run: Step{Argv: []string{"/usr/bin/env"}, Limits: defLimits()}, Env: testEnv})
	if got := strings.Split(strings.TrimSpace(string(r.Stdout)), "\n"); strings.Join(got, ",") != strings.Join(testEnv, ",") {
		t.Errorf("environment %q, want %q", got, testEnv)
	}
}

func TestSymlinkGames(t *testing.T) {
	s := newTestSandbox(t)
	hostDir := t.TempDir()
	hostFile := filepath.Join(hostDir, "precious")
	if err := os.WriteFile(hostFile, []byte("original"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Compile plants symlinks and swaps the source for one; run then tries
	// to use them. Neither may reach the host.
	script := `cd /box
ln -sf /etc/shadow shadow; ln -sf ` + hostFile + ` precious; ln -sf /proc/1/root p1root
rm -f main.txt; ln -s ` + hostFile + ` main.txt
echo pwned > precious 2>/dev/null; echo pwned > main.txt 2>/dev/null; true`
	req := Request{
		Files:   []File{{Name: "main.txt", Content: []byte("src"), Mode: 0o644}},
		Compile: &Step{Argv: []string{"/bin/sh", "-c", script}, Limits: defLimits()},
		Run: Step{Argv: []string{"/bin/sh", "-c", `cd /box; cat shadow precious main.txt 2>/dev/null; ls p1root/ 2>/dev/null;
echo pwned > precious 2>/dev/null; echo pwned > main.txt 2>/dev/null; echo end`}, Limits: defLimits()},
		Env: testEnv,
	}
	r := run(t, s, req)
	if string(r.Stdout) != "end\n" {
		t.Errorf("run step saw something: %s", describe(r))
	}
	if b, _ := os.ReadFile(hostFile); string(b) != "original" {
		t.Errorf("host file changed: %q", b)
	}
	if st, err := os.Stat(hostFile); err != nil || st.Sys() == nil {
		t.Error(err)
	}
}

func TestDiskLimits(t *testing.T) {
	s := newTestSandbox(t)
	l := defLimits()
	l.ScratchBytes = 4 << 20
	r := run(t, s, sh(`dd if=/dev/zero of=/box/big bs=1M count=64 2>&1 | grep -o 'No space left'
dd if=/dev/zero of=/tmp/big bs=1M count=64 2>&1 | grep -o 'No space left'
dd if=/dev/zero of=/dev/shm/big bs=1M count=64 2>&1 | grep -o 'No space left'
touch /x 2>&1 | grep -o 'Read-only'
touch /usr/x 2>&1 | grep -o 'Read-only'`, l))
	if got := string(r.Stdout); got != "No space left\nNo space left\nNo space left\nRead-only\nRead-only\n" {
		t.Errorf("%s", describe(r))
	}
	// The limit is for /box, /tmp and /dev/shm together.
	r = run(t, s, sh(`for d in /box /tmp /dev/shm; do dd if=/dev/zero of=$d/f bs=1M count=3 2>/dev/null; done
cat /box/f /tmp/f /dev/shm/f | wc -c`, l))
	if n, err := strconv.Atoi(strings.TrimSpace(string(r.Stdout))); err != nil || n > 4<<20 || n < 3<<20 {
		t.Errorf("scratch of 4 MiB held %q bytes: %s", r.Stdout, describe(r))
	}
	l = defLimits()
	l.FileBytes = 1 << 20
	r = run(t, s, sh(`dd if=/dev/zero of=/box/f bs=1M count=2 2>&1; ls -l /box/f`, l))
	if !strings.Contains(string(r.Stdout), " 1048576 ") {
		t.Errorf("RLIMIT_FSIZE not applied: %s", describe(r))
	}
}

func TestNoLeakBetweenRuns(t *testing.T) {
	s := newTestSandbox(t)
	run(t, s, sh("echo x > /box/leak; echo x > /tmp/leak; echo x > /dev/shm/leak", defLimits()))
	r := run(t, s, sh("ls /box /tmp /dev/shm", defLimits()))
	if strings.Contains(string(r.Stdout), "leak") {
		t.Errorf("file persisted: %s", r.Stdout)
	}
	// Nor from the compile step into the run, but for /box (its output);
	// a symlink left in /tmp is removed, not followed, and a tree deeper
	// than the init can remove (one fd a level, 256 allowed) does not stop
	// the run.
	r = run(t, s, Request{
		Compile: &Step{Argv: []string{"/bin/sh", "-c", `echo x > /box/built; echo x > /tmp/leak; echo x > /dev/shm/leak; ln -s /box /tmp/link
p=/tmp/deep; for i in $(seq 300); do p=$p/d; done; mkdir -p $p`}, Limits: compileLimits()},
		Run: Step{Argv: []string{"/bin/sh", "-c", "ls -A /box /tmp /dev/shm"}, Limits: defLimits()},
		Env: testEnv,
	})
	if out := string(r.Stdout); strings.Contains(out, "leak") || strings.Contains(out, "link") || !strings.Contains(out, "built") {
		t.Errorf("after the compile step: %s", describe(r))
	}
	r = run(t, s, cProg(defLimits(), "fds"))
	if string(r.Stdout) != "0\n1\n2\n" {
		t.Errorf("open fds at start: %q", r.Stdout)
	}
}

func TestCompileError(t *testing.T) {
	s := newTestSandbox(t)
	rep, err := s.Execute(context.Background(), Request{
		Files:   []File{{Name: "main.c", Content: []byte("int main( { return 0; }"), Mode: 0o644}},
		Compile: &Step{Argv: []string{"/usr/bin/gcc", "-o", "/box/main", "/box/main.c"}, Limits: compileLimits()},
		Run:     Step{Argv: []string{"/box/main"}, Limits: defLimits()},
		Env:     testEnv,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Compile == nil || rep.Compile.Outcome != OutcomeNonZeroExit || rep.Run != nil ||
		!bytes.Contains(rep.Compile.Stderr, []byte("error")) {
		t.Errorf("compile %s, run %v", describe(rep.Compile), rep.Run)
	}
}

// TestKillAllIsolated: kill -9 -1 in one run must not touch a parallel run.
func TestKillAllIsolated(t *testing.T) {
	s := newTestSandbox(t)
	var wg sync.WaitGroup
	var victim, killer *StepReport
	wg.Add(2)
	go func() {
		defer wg.Done()
		rep, err := s.Execute(context.Background(), sh("sleep 1; echo victim-ok", defLimits()))
		if err == nil {
			victim = rep.Run
		}
	}()
	go func() {
		defer wg.Done()
		time.Sleep(200 * time.Millisecond)
		rep, err := s.Execute(context.Background(), sh("kill -9 -1; echo killer-done", defLimits()))
		if err == nil {
			killer = rep.Run
		}
	}()
	wg.Wait()
	if victim == nil || victim.Outcome != OutcomeOK || string(victim.Stdout) != "victim-ok\n" {
		t.Errorf("victim: %s", describe(victim))
	}
	if killer == nil || killer.Outcome != OutcomeOK {
		t.Errorf("killer: %s", describe(killer))
	}
}

// TestPerUserLimitsNotShared: the kernel counts inotify instances (and
// message queue bytes, fds in flight, pending signals...) per user; a run
// that takes every instance it may have must leave a parallel run its own.
func TestPerUserLimitsNotShared(t *testing.T) {
	s := newTestSandbox(t)
	py := func(script string) Request {
		return Request{Run: Step{Argv: []string{"/usr/bin/python3", "-c", script}, Limits: defLimits()}, Env: testEnv}
	}
	const grab = `import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
n = 0
while libc.inotify_init() >= 0:
    n += 1
print(os.getuid(), n, ctypes.get_errno(), flush=True)
time.sleep(2)`
	const one = `import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
print(os.getuid(), "ok" if libc.inotify_init() >= 0 else "errno %d" % ctypes.get_errno())`
	var wg sync.WaitGroup
	var holder, other *StepReport
	wg.Add(2)
	go func() {
		defer wg.Done()
		if rep, err := s.Execute(context.Background(), py(grab)); err == nil {
			holder = rep.Run
		}
	}()
	go func() {
		defer wg.Done()
		time.Sleep(700 * time.Millisecond)
		if rep, err := s.Execute(context.Background(), py(one)); err == nil {
			other = rep.Run
		}
	}()
	wg.Wait()
	if holder == nil || other == nil || holder.Outcome != OutcomeOK || other.Outcome != OutcomeOK {
		t.Fatalf("holder: %s\nother: %s", describe(holder), describe(other))
	}
	h, o := strings.Fields(string(holder.Stdout)), strings.Fields(string(other.Stdout))
	// The holder stopped at the per-user limit (EMFILE), below its 256 fds.
	if len(h) != 3 || h[2] != "24" || len(o) != 2 {
		t.Fatalf("holder %q, other %q", holder.Stdout, other.Stdout)
	}
	if h[0] == o[0] {
		t.Errorf("two jails run as the same uid %s", h[0])
	}
	if o[1] != "ok" {
		t.Errorf("a parallel run could not create an inotify instance (%s) while another held %s", o[1], h[1])
	}
}

func TestCancel(t *testing.T) {
	s := newTestSandbox(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := s.Execute(ctx, sh("sleep 10", defLimits())); err == nil {
		t.Error("cancelled Execute returned no error")
	}
}

func TestReadOnlyPaths(t *testing.T) {
	s := newTestSandbox(t)
	// Not under /tmp: the jail's /tmp is its own.
	extra, err := os.MkdirTemp("/var/tmp", "runbox-ro-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(extra) })
	// World-writable, so that only the read-only mount can refuse the write.
	if err := os.Chmod(extra, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(extra, "tool"), []byte("data"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(extra, "tool"), 0o666); err != nil {
		t.Fatal(err)
	}
	req := sh("cat "+extra+"/tool; (echo x > "+extra+"/tool) 2>&1 | grep -o Read-only; test -e /opt/none || echo skipped", defLimits())
	req.ReadOnlyPaths = []string{extra, "/opt/none"}
	r := run(t, s, req)
	if string(r.Stdout) != "dataRead-only\nskipped\n" {
		t.Errorf("%s", describe(r))
	}
	if b, _ := os.ReadFile(filepath.Join(extra, "tool")); string(b) != "data" {
		t.Errorf("read-only path written: %q", b)
	}
}

// TestReadOnlyPathsRecursive: a mount below a read-only path is read-only
// too.
func TestReadOnlyPathsRecursive(t *testing.T) {
	s := newTestSandbox(t)
	extra, err := os.MkdirTemp("/var/tmp", "runbox-ro-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(extra, 0o755); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(extra, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m,mode=1777"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = unix.Unmount(sub, unix.MNT_DETACH)
		os.RemoveAll(extra)
	})
	req := sh("(echo x > "+sub+"/f) 2>&1 | grep -o Read-only", defLimits())
	req.ReadOnlyPaths = []string{extra}
	if r := run(t, s, req); string(r.Stdout) != "Read-only\n" {
		t.Errorf("submount writable: %s", describe(r))
	}
	if _, err := os.Stat(filepath.Join(sub, "f")); err == nil {
		t.Error("file written through a read-only path")
	}
}
