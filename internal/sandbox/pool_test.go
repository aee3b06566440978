package sandbox

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// newPoolSandbox is a Sandbox with a pool of one jail, so that consecutive
// runs reuse the same jail.
func newPoolSandbox(t *testing.T) *Sandbox { return newSandbox(t, Config{PoolSize: 1}) }

// waitIdle waits until the pool holds its jail and returns its init's pid.
func waitIdle(t *testing.T, s *Sandbox) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case j := <-s.idle:
			s.idle <- j
			return j.pid
		default:
			time.Sleep(time.Millisecond)
		}
	}
	t.Fatal("the pool never filled")
	return 0
}

// TestPooledJailReset: whatever a run leaves in a pooled jail (files in
// /box, /tmp, /dev/shm, a background process, a SysV shared memory segment,
// a POSIX message queue, an abstract unix socket) is gone in the next run
// of the same jail.
func TestPooledJailReset(t *testing.T) {
	s := newPoolSandbox(t)
	pid := waitIdle(t, s)
	leave := `
import os, socket, subprocess, sys
for d in ('/box', '/tmp', '/dev/shm'):
    open(d + '/leak', 'w').write('x')
subprocess.run(['ipcmk', '-M', '4096'], check=True, stdout=subprocess.DEVNULL)
subprocess.run(['ipcmk', '-Q'], check=True, stdout=subprocess.DEVNULL)
subprocess.Popen(['setsid', 'sh', '-c', 'exec -a leakyproc sleep 60'], start_new_session=True)
s = socket.socket(socket.AF_UNIX); s.bind('\0runbox-leak'); s.listen()
pid = os.fork()
if pid == 0:
    os.setsid(); import time; time.sleep(60)
print('left')
`
	r := run(t, s, Request{Run: Step{Argv: []string{"/usr/bin/python3", "-c", leave}, Limits: defLimits()}, Env: testEnv})
	if string(r.Stdout) != "left\n" {
		t.Fatalf("%s", describe(r))
	}
	if p := waitIdle(t, s); p != pid {
		t.Fatalf("the jail was not reused (%d, then %d)", pid, p)
	}
	check := `
import os, socket, subprocess
for d in ('/box', '/tmp', '/dev/shm'):
    print(d, sorted(os.listdir(d)))
print('ipc', subprocess.run(['ipcs', '-m', '-q', '-s'], capture_output=True, text=True).stdout.count('0x'))
print('procs', sorted(p for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()))
s = socket.socket(socket.AF_UNIX)
try:
    s.connect('\0runbox-leak'); print('socket alive')
except OSError:
    print('socket gone')
`
	r = run(t, s, Request{Run: Step{Argv: []string{"/usr/bin/python3", "-c", check}, Limits: defLimits()}, Env: testEnv})
	want := "/box []\n/tmp []\n/dev/shm []\nipc 0\n"
	out := string(r.Stdout)
	if !strings.HasPrefix(out, want) || !strings.Contains(out, "socket gone") {
		t.Errorf("leftovers in the reused jail:\n%s", describe(r))
	}
	// Only ipcs itself (already reaped) and us may have existed.
	if !strings.Contains(out, "procs []") {
		t.Errorf("processes of the previous run:\n%s", out)
	}
	if p := waitIdle(t, s); p != pid {
		t.Fatalf("the jail was not reused (%d, then %d)", pid, p)
	}
}

// TestPoolKilledJailReplaced: a jail killed by a limit is never reused,
// and the pool refills.
func TestPoolKilledJailReplaced(t *testing.T) {
	s := newPoolSandbox(t)
	pid := waitIdle(t, s)
	l := defLimits()
	l.WallTime = 200 * time.Millisecond
	if r := run(t, s, sh("sleep 5", l)); r.Outcome != OutcomeTimeLimit {
		t.Fatalf("%s", describe(r))
	}
	if p := waitIdle(t, s); p == pid {
		t.Fatal("a killed jail went back to the pool")
	}
	if err := s.SelfCheck(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestPooledJailRaisesLimits: a reused jail applies each run's own rlimits,
// also when they are higher than the previous run's (rlimits belong to the
// whole init process, and only a privileged thread may raise them).
func TestPooledJailRaisesLimits(t *testing.T) {
	s := newPoolSandbox(t)
	small, large := defLimits(), defLimits()
	small.OpenFiles, small.FileBytes = 32, 1<<20
	large.OpenFiles, large.FileBytes = 512, 8<<20
	for i, l := range []Limits{small, large, small, large} {
		pid := waitIdle(t, s)
		r := run(t, s, sh("ulimit -n; ulimit -f", l))
		if r.Outcome != OutcomeOK {
			t.Fatalf("run %d: %s", i, describe(r))
		}
		want := strconv.Itoa(l.OpenFiles) + "\n" + strconv.FormatInt(l.FileBytes/512, 10) + "\n"
		if string(r.Stdout) != want {
			t.Fatalf("run %d: limits %q, want %q", i, r.Stdout, want)
		}
		if i > 0 && waitIdle(t, s) != pid {
			t.Logf("run %d used another jail", i)
		}
	}
}

// TestPooledJailAccountingReset: a jail's steps share one cgroup (where the
// kernel can reset its peak memory), so what one run used must not show in
// the next: its OOM kill, its memory peak, its CPU time.
func TestPooledJailAccountingReset(t *testing.T) {
	s := newPoolSandbox(t)
	pid := waitIdle(t, s)
	// A child is OOM-killed and the program still exits 0: an OK run,
	// after which the jail goes back to the pool.
	hog := `python3 -c "s = 'x' * (1 << 30)" 2>/dev/null; i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; exit 0`
	first := run(t, s, sh(hog, defLimits()))
	if first.Outcome != OutcomeOK || first.MemoryBytes < 128<<20 || first.CPUTime < 20*time.Millisecond {
		t.Fatalf("first run: %s mem %d cpu %v", describe(first), first.MemoryBytes, first.CPUTime)
	}
	if p := waitIdle(t, s); p != pid {
		t.Fatalf("the jail was not reused (%d, then %d)", pid, p)
	}
	// A non-zero exit after an OOM kill in the same cgroup would read as
	// MEMORY_LIMIT_EXCEEDED if the count were not the run's own.
	// Its CPU is a shell's start, a fraction of the first run's (a fixed
	// bound was too tight for a slow host under the race detector).
	r := run(t, s, sh("exit 3", defLimits()))
	if r.Outcome != OutcomeNonZeroExit || r.MemoryBytes > 16<<20 || r.CPUTime > first.CPUTime/3 {
		t.Errorf("second run of the same jail: %s mem %d cpu %v", describe(r), r.MemoryBytes, r.CPUTime)
	}
	if p := waitIdle(t, s); p != pid {
		t.Fatalf("the jail was not reused (%d, then %d)", pid, p)
	}
}

// TestInitKilledFromOutside: a jail's init killed by the host (an operator,
// the host's OOM killer) mid-run is the sandbox's failure, not the
// program's: Execute returns an error, so that the run is retried, instead
// of a verdict blaming the program.
func TestInitKilledFromOutside(t *testing.T) {
	s := newTestSandbox(t)
	type result struct {
		rep *Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		// Long enough to be found however slowly the jail starts on a
		// loaded host; killing its init ends it.
		long := defLimits()
		long.WallTime = 30 * time.Second
		rep, err := s.Execute(context.Background(), sh("sleep 30; echo survived", long))
		done <- result{rep, err}
	}()
	var initPid int
	for deadline := time.Now().Add(20 * time.Second); initPid == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the program never appeared")
		}
		procs := jailProcs(s)
		for _, p := range procs {
			// The parent of the program's first process is the jail's init
			// (sleep's is the shell).
			stat, err := os.ReadFile(filepath.Join("/proc", p, "stat"))
			if err != nil {
				continue
			}
			ppid := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))[1]
			if !slices.Contains(procs, ppid) {
				initPid, _ = strconv.Atoi(ppid)
			}
		}
	}
	if err := syscall.Kill(initPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err == nil {
		t.Fatalf("a run whose jail was killed from outside got a verdict: %s", describe(r.rep.Run))
	}
	if err := s.SelfCheck(context.Background()); err != nil {
		t.Fatalf("the sandbox did not recover: %v", err)
	}
}

// TestCgroupPerStep runs the path of kernels that cannot reset a cgroup's
// peak memory (cgroup v2 before Linux 6.12) on any host: every step gets a
// fresh cgroup, so the second step of a request and every reuse of a
// pooled jail need a launcher prepared in their own cgroup. A program sees
// its cgroup namespace rooted at its step's cgroup (every line of
// /proc/self/cgroup ends in ":/"; a launcher left from the previous
// cgroup would show "/../…"), and the step's own limits hold.
func TestCgroupPerStep(t *testing.T) {
	s := newSandbox(t, Config{PoolSize: 1, cgroupPerStep: true})
	pid := waitIdle(t, s)
	rooted := func(step string, out []byte) {
		t.Helper()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		for _, l := range lines {
			if !strings.HasSuffix(l, ":/") {
				t.Errorf("%s: cgroup namespace not rooted at the step's cgroup:\n%s", step, out)
				return
			}
		}
	}
	small := defLimits()
	small.MemoryBytes = 64 << 20
	for i := range 3 {
		rep, err := s.Execute(context.Background(), Request{
			Compile: &Step{Argv: []string{"/bin/sh", "-c", "cat /proc/self/cgroup"}, Limits: compileLimits()},
			Run: Step{Argv: []string{"/bin/sh", "-c", `cat /proc/self/cgroup; python3 -c "s = 'x' * (200 << 20)"`},
				Limits: small},
			Env: testEnv,
		})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Compile.Outcome != OutcomeOK || rep.Run.Outcome != OutcomeMemoryLimit {
			t.Fatalf("request %d: compile %s, run %s", i, describe(rep.Compile), describe(rep.Run))
		}
		rooted("compile "+strconv.Itoa(i), rep.Compile.Stdout)
		rooted("run "+strconv.Itoa(i), rep.Run.Stdout)
		// A run killed by its memory limit retires its jail; the next
		// request takes a fresh one, prepared in a cgroup of its own.
		pid = waitIdle(t, s)
		r := run(t, s, sh("cat /proc/self/cgroup", defLimits()))
		if r.Outcome != OutcomeOK {
			t.Fatalf("plain run %d: %s", i, describe(r))
		}
		rooted("plain run "+strconv.Itoa(i), r.Stdout)
		if p := waitIdle(t, s); p != pid {
			t.Fatalf("the jail was not reused (%d, then %d)", pid, p)
		}
	}
}

// TestPinnedMemoryRetiresTheJail: a run that passes its files (tmpfs, a
// memfd) over a unix socket in a cycle and exits leaves their pages
// charged to the jail's cgroup until the kernel's unix GC runs, tens of
// seconds later. The jail is not reused, so the next run (another
// learner's, perhaps) has its whole memory limit.
func TestPinnedMemoryRetiresTheJail(t *testing.T) {
	s := newPoolSandbox(t)
	pid := waitIdle(t, s)
	pin := `
import os, socket
fds = []
with open('/box/big', 'wb') as f:  # files are limited to 16 MiB
    f.write(b'x' * (12 << 20))
fds.append(os.open('/box/big', os.O_RDONLY))
for _ in range(6):
    m = os.memfd_create('pin')
    os.write(m, b'y' * (12 << 20))
    fds.append(m)
a, b = socket.socketpair()
socket.send_fds(a, [b'x'], [a.fileno(), b.fileno(), *fds])
os._exit(0)
`
	r := run(t, s, Request{Run: Step{Argv: []string{"/usr/bin/python3", "-c", pin}, Limits: defLimits()}, Env: testEnv})
	if r.Outcome != OutcomeOK {
		t.Fatalf("pinning run: %s", describe(r))
	}
	if p := waitIdle(t, s); p == pid {
		t.Errorf("a jail with 84 MiB pinned past its run was reused")
	}
	r = run(t, s, Request{Run: Step{Argv: []string{"/usr/bin/python3", "-c", "b = bytearray(200 << 20); print(len(b))"}, Limits: defLimits()}, Env: testEnv})
	if r.Outcome != OutcomeOK {
		t.Errorf("the next run lost memory to the pinned pages: %s", describe(r))
	}
}
