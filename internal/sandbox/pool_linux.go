package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// maxJailUses retires a jail after this many runs (bounds, among other
// things, how far its pid numbers grow).
const maxJailUses = 1000

// jail is one prepared init (see init_linux.go) and the host's ends.
type jail struct {
	id    string
	roKey string // the ReadOnlyPaths it was built with
	pid   int
	cmd   *exec.Cmd
	conn  *net.UnixConn
	msgs  chan initMsg // closed when the init's socket reaches EOF
	cg    stepCgroup   // the cgroup the init is in now
	// cgFresh (only without Sandbox.jailCgroup): cg was created for the
	// next step and no step has used it, so that step only has to write its
	// limits into it. Moving the init into a new cgroup costs 10-20 ms (the
	// kernel waits for an RCU grace period), so it is done ahead, in the
	// background, when the jail goes back to the pool; only a second step
	// of one request pays it inline.
	cgFresh bool
	cgN     int // numbers the cgroups the init was put in (initReq.Cgroup)
	uses    int
	// rlim is what the init's rlimits were last set to (nil: inherited).
	// They are process-wide, so the program of a later step inherits them,
	// and raising a hard limit needs CAP_SYS_RESOURCE, which hosts (and
	// containers) often withhold: a jail's rlimits can only go down.
	rlim []rlimit
	// python is the interpreter and environment of the jail's last run,
	// when it was a python script: what its template interpreter is (see
	// template_linux.go).
	python *pythonSpec

	killed   atomic.Bool
	waitOnce sync.Once
	exited   chan struct{}
}

func (j *jail) dead() bool { return j.killed.Load() }

// fits reports whether j's rlimits allow a step that needs need.
func (j *jail) fits(need []rlimit) bool {
	for i := range j.rlim {
		if need[i].Value > j.rlim[i].Value {
			return false
		}
	}
	return true
}

// applyRlimits records and returns the rlimits a step will run with:
// want, lowered where the jail's are already lower (take only hands out
// jails that fit the whole request, so this only matters if a later step
// of one request asks for more than an earlier one).
func (j *jail) applyRlimits(want []rlimit) []rlimit {
	if j.rlim != nil {
		want = slices.Clone(want)
		for i := range want {
			want[i].Value = min(want[i].Value, j.rlim[i].Value)
		}
	}
	j.rlim = want
	return want
}

// kill kills the init, and with it (pid 1) its whole pid namespace. It
// signals through the process handle (a pidfd), never the bare pid: kill
// is also called after the init died and was reaped (a dead jail taken
// from the pool, discard after a killed step), and by then its pid may
// belong to any process of the host (pid_max is 32768 on some hosts).
func (j *jail) kill() {
	j.killed.Store(true)
	_ = j.cmd.Process.Kill()
}

// wait returns once the init is reaped: the kernel reaps pid 1 only after
// every other process of its namespace is gone.
func (j *jail) wait() { <-j.exited }

// signaled reports whether the init, reaped (see wait), was killed by a
// signal rather than exiting.
func (j *jail) signaled() bool {
	if j.cmd.ProcessState == nil {
		return false
	}
	ws, ok := j.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled()
}

// send sends one message, with fds.
func (j *jail) send(req *initReq, fds ...int) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	if len(b) > maxMsg {
		return errors.New("request too large")
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	_, _, err = j.conn.WriteMsgUnix(b, oob, nil)
	return err
}

// call sends a message and waits for "ok".
func (j *jail) call(req *initReq, fds ...int) error {
	err := j.send(req, fds...)
	if err != nil {
		j.kill()
		return err
	}
	t := time.NewTimer(setupTimeout)
	defer t.Stop()
	select {
	case m, ok := <-j.msgs:
		switch {
		case !ok:
			err = errors.New("jail init died")
		case m.Error != "":
			err = errors.New(m.Error)
		case !m.Ok:
			err = fmt.Errorf("unexpected message %+v", m)
		}
	case <-t.C:
		err = errors.New("jail init timed out")
	}
	if err != nil {
		j.kill()
	}
	return err
}

// fillBox mounts a fresh /box in the jail and has the init write the files
// (the host never touches a path inside the jail). first is what a
// template interpreter must be to serve the first step (nil: none may).
func (j *jail) fillBox(size int64, files []File, first *pythonSpec) error {
	req := &initReq{Op: "box", BoxBytes: size, Python: first}
	if len(files) == 0 {
		return j.call(req)
	}
	fd, err := unix.MemfdCreate("runbox-files", unix.MFD_CLOEXEC)
	if err != nil {
		return err
	}
	mf := os.NewFile(uintptr(fd), "files")
	defer mf.Close()
	for _, f := range files {
		if _, err := mf.Write(f.Content); err != nil {
			return err
		}
		req.Files = append(req.Files, fileMeta{Name: f.Name, Mode: f.Mode, Size: int64(len(f.Content))})
	}
	return j.call(req, fd)
}

// stepCgroup returns the cgroup of the next step, with the step's limits
// and the init already in it.
//
// Where the peak memory can be reset, that is the jail's own cgroup, kept
// for its whole life: moving the init into a new cgroup waits for an RCU
// grace period (10-20 ms), and creating, moving into and removing three v1
// cgroups per step cost about 2 ms of host and kernel-thread CPU. Nothing of
// a step survives in it: every process is dead and checked gone, the peak
// is reset, and the step's CPU and OOM kills are counted from their values
// at its start. Elsewhere (cgroup v2 before Linux 6.12) each step gets a
// cgroup no step has used: the one prepared in the background when the
// jail went back to the pool, else a new one.
func (j *jail) stepCgroup(s *Sandbox, l Limits) (stepCgroup, error) {
	switch {
	case s.jailCgroup:
		if err := j.cg.setLimits(l); err != nil {
			return nil, err
		}
		return j.cg, j.cg.resetPeak()
	case j.cgFresh:
		j.cgFresh = false
		return j.cg, j.cg.setLimits(l)
	}
	return j.enterCgroup(s, l)
}

// enterCgroup creates a fresh cgroup with the limits l and moves the
// init into it; the previous one (empty: every process of the previous
// step is dead) is removed in the background.
func (j *jail) enterCgroup(s *Sandbox, l Limits) (stepCgroup, error) {
	j.cgN++
	cg, err := s.cg.create(j.id+"-"+strconv.Itoa(j.cgN), l)
	if err != nil {
		return nil, err
	}
	if err := cg.place(j.pid); err != nil {
		_ = cg.destroy()
		return nil, err
	}
	old := j.cg
	j.cg = cg
	if old != nil {
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			if err := old.destroy(); err != nil {
				s.log.Error("sandbox: destroy cgroup", "err", err)
			}
		}()
	}
	return cg, nil
}

// idleLimits bound a jail between runs (only the init is in it).
func idleLimits() Limits {
	return Limits{MemoryBytes: 64 << 20, Pids: initThreads + 8}
}

func roKey(paths []string) string {
	p := slices.Clone(paths)
	slices.Sort(p)
	return fmt.Sprintf("%q", p)
}

// startJail starts and sets up a jail init, ready for a run.
func (s *Sandbox) startJail(readOnly []string) (*jail, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	hostF, childF := os.NewFile(uintptr(fds[0]), "jail-host"), os.NewFile(uintptr(fds[1]), "jail-init")
	defer childF.Close()
	c, err := net.FileConn(hostF)
	hostF.Close()
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	stderr := &headBuffer{max: 4 << 10}
	j := &jail{id: s.prefix + "-" + randomID()[:12], roKey: roKey(readOnly), conn: c.(*net.UnixConn),
		msgs: make(chan initMsg, 4), exited: make(chan struct{})}
	j.cmd = &exec.Cmd{
		Path: "/proc/self/exe",
		Args: []string{initArgv0},
		Env:  []string{"GOMAXPROCS=1", "GOTRACEBACK=none"},
		// What the init's Go runtime says if it dies on its own.
		Stderr:     stderr,
		ExtraFiles: []*os.File{childF}, // fd 3
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWNET |
				syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS,
			// Belt and braces: the init also exits when its socket reaches
			// EOF, i.e. when the worker process is gone.
			Pdeathsig: syscall.SIGKILL,
		},
	}
	// Pdeathsig fires when the forking *thread* exits: fork from a locked
	// thread, and since this goroutine unlocks it again, the runtime keeps
	// that thread for the life of the process.
	runtime.LockOSThread()
	err = j.cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		j.conn.Close()
		return nil, fmt.Errorf("sandbox: start init: %w", err)
	}
	j.pid = j.cmd.Process.Pid
	go func() {
		_ = j.cmd.Wait()
		if !j.killed.Swap(true) {
			s.log.Error("sandbox: jail init died on its own", "jail", j.id, "state", j.cmd.ProcessState.String(), "stderr", stderr.String())
		}
		close(j.exited)
	}()
	go func() {
		defer close(j.msgs)
		b := make([]byte, 64<<10)
		for {
			n, err := j.conn.Read(b)
			if err != nil || n == 0 {
				return
			}
			var m initMsg
			if json.Unmarshal(b[:n], &m) != nil {
				j.kill()
				return
			}
			j.msgs <- m
		}
	}()
	fail := func(err error) (*jail, error) {
		s.discard(j)
		return nil, fmt.Errorf("sandbox: jail set-up: %w", err)
	}
	// The init does nothing before "setup", so it is in its cgroup before
	// it allocates anything.
	j.cgFresh = !s.jailCgroup
	if _, err := j.enterCgroup(s, idleLimits()); err != nil {
		return fail(err)
	}
	if err := j.call(&initReq{Op: "setup", Root: filepath.Join(s.instDir, "root"), ReadOnly: readOnly,
		UID: jailUIDBase + j.pid, GID: jailUIDBase + j.pid, TemplateUID: templateUIDBase + j.pid,
		Cgroup: j.cgN}); err != nil {
		return fail(err)
	}
	return j, nil
}

// discard kills j, waits for it and removes its cgroup.
func (s *Sandbox) discard(j *jail) {
	j.kill()
	j.wait()
	j.conn.Close()
	if j.cg != nil {
		if err := j.cg.destroy(); err != nil {
			s.log.Error("sandbox: destroy cgroup", "err", err)
		}
	}
}

// take returns a prepared jail: from the pool when one fits, else a new one
// (never waits for the pool).
func (s *Sandbox) take(readOnly []string, need []rlimit) (*jail, error) {
	if roKey(readOnly) == roKey(nil) {
		select {
		case j := <-s.idle:
			s.kick()
			if j.fits(need) {
				return j, nil
			}
			// Its rlimits are lower than this request's and cannot be raised.
			s.release(j, false)
		default:
		}
	}
	s.mu.Lock()
	s.total++
	s.mu.Unlock()
	j, err := s.startJail(readOnly)
	if err != nil {
		s.mu.Lock()
		s.total--
		s.mu.Unlock()
		return nil, err
	}
	return j, nil
}

// maxPinnedShmem is how much shared memory a cleared jail's cgroup may
// still be charged with and be reused (see release).
const maxPinnedShmem = 1 << 20

// release gives j back after a run: a jail whose last step ended cleanly is
// cleared (its /box, /tmp and /dev/shm unmounted) and returned to the pool,
// in the background; any other is torn down, in the background too (its
// processes are already dead).
func (s *Sandbox) release(j *jail, reusable bool) {
	j.uses++
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		keep := reusable && !j.dead() && j.uses < maxJailUses && j.roKey == roKey(nil)
		if keep && !s.jailCgroup {
			// The cgroup of the next step first: on "clear" the init
			// prepares that step's namespaces, the cgroup one rooted there.
			_, err := j.enterCgroup(s, idleLimits())
			keep, j.cgFresh = err == nil, err == nil
		}
		if keep {
			keep = j.call(&initReq{Op: "clear", Cgroup: j.cgN, Python: j.python}) == nil
		}
		if keep {
			// Every process is dead and the scratch unmounted, so no tmpfs
			// or memfd page should be left; one that is was pinned past the
			// run (passed over a unix socket in a cycle only the kernel's
			// unix GC frees, tens of seconds later) and would count against
			// the next run's memory limit in this cgroup.
			if pinned := j.cg.shmem(); pinned > maxPinnedShmem {
				s.log.Warn("sandbox: jail retired: memory pinned past its run", "jail", j.id, "shmem_bytes", pinned)
				keep = false
			}
		}
		if keep {
			// Under load more jails than PoolSize may be in use (each
			// Execute that found the pool empty prepared its own); keep
			// them while the pool has room.
			s.mu.Lock()
			keep = len(s.idle) < cap(s.idle) && !s.closed
			if keep {
				s.idle <- j // cannot block: only sent to under s.mu
			}
			s.mu.Unlock()
		}
		if !keep {
			s.mu.Lock()
			s.total--
			s.mu.Unlock()
			s.discard(j)
			s.kick()
		}
	}()
}

// kick wakes the refiller.
func (s *Sandbox) kick() {
	select {
	case s.refill <- struct{}{}:
	default:
	}
}

// refiller keeps size jails (idle or in use) in existence.
func (s *Sandbox) refiller() {
	defer s.bg.Done()
	for {
		for {
			s.mu.Lock()
			need := !s.closed && s.total < s.size
			if need {
				s.total++
			}
			s.mu.Unlock()
			if !need {
				break
			}
			j, err := s.startJail(nil)
			s.mu.Lock()
			switch {
			case err != nil:
				s.total--
			case s.closed:
				s.total--
			case len(s.idle) < cap(s.idle):
				s.idle <- j
				j = nil
			default:
				s.total--
			}
			s.mu.Unlock()
			if err != nil {
				s.log.Error("sandbox: prepare jail", "err", err)
				break // retry at the next kick or tick
			}
			if j != nil {
				s.discard(j)
			}
		}
		select {
		case <-s.stop:
			return
		case <-s.refill:
		case <-time.After(time.Second):
		}
	}
}

// drain discards every idle jail (Close).
func (s *Sandbox) drain() {
	for {
		select {
		case j := <-s.idle:
			s.discard(j)
		default:
			return
		}
	}
}

// headBuffer keeps the first max bytes written to it.
type headBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (h *headBuffer) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.b = append(h.b, p[:min(len(p), h.max-len(h.b))]...)
	return len(p), nil
}

func (h *headBuffer) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return string(h.b)
}

// onlyInitLeft reports whether procs, the host pids in the jail's cgroup,
// are its init and at most one other process, which runs as the jail's
// template uid (no program of a run can: see templateUIDBase).
func (j *jail) onlyInitLeft(procs []int) bool {
	others := 0
	for _, pid := range procs {
		if pid == j.pid {
			continue
		}
		others++
		want := strconv.Itoa(templateUIDBase + j.pid)
		ids := procUIDs(strconv.Itoa(pid))
		if others > 1 || len(ids) != 4 || ids[0] != want || ids[1] != want || ids[2] != want {
			return false
		}
	}
	return slices.Contains(procs, j.pid)
}

// procUIDs returns the real, effective, saved and filesystem uids of host
// process pid, from its /proc status (nil if it cannot be read).
func procUIDs(pid string) []string {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return nil
	}
	_, rest, _ := strings.Cut(string(b), "\nUid:")
	line, _, _ := strings.Cut(rest, "\n")
	return strings.Fields(line)
}
