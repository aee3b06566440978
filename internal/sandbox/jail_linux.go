package sandbox

// Host side of a run.
//
// Usage: call sandbox.Init() first thing in main() (and in TestMain of every
// package whose tests call Execute): the jail init is /proc/self/exe
// re-executed, and Init is where that copy diverts into the jail.
//
// Accounting note: a step's cgroup (the jail's own, reused by its steps,
// see jail.stepCgroup) also holds the jail init (a small Go process,
// GOMAXPROCS=1). Every figure of a step is counted from its value when the
// step is handed to the init: CPUTime (so it excludes the set-up), OOM
// kills, and MemoryBytes, the peak (reset then) less the usage then, which
// is the init's and the page cache earlier steps left charged; so it is
// nearly the program's alone. pids.max is Limits.Pids plus initThreads
// headroom for the init's runtime threads.
//
// # Where the time went (profile of the previous one-fresh-jail-per-step design)
//
// python3 -c 'print("hello")' on this 2-vCPU host, bare fork/exec 10-14 ms:
// Execute took 26-42 ms. Per step: cgroup creation 0.2 ms; clone with new
// pid/mnt/net/ipc/uts namespaces + exec of the worker binary 1.6-4.6 ms;
// the init's Go runtime start, config, ~40 mounts, pivot_root, seccomp
// until "started" 3.3-21 ms wall (1.8-5.2 ms of CPU, measured in the step
// cgroup); the program itself; then reaping, unmount and cgroup removal
// <0.5 ms. The cost was all set-up: re-exec of the Go binary, namespace
// creation (the mount namespace copies the host's table, network namespace
// creation and its asynchronous teardown are the dearest) and building the
// root. Throughput suffered more than latency (0.53 of bare exec with 2
// goroutines) because that set-up is CPU, not waiting.
//
// # Design: a pool of prepared, reusable jails
//
// A jail (pool_linux.go, init_linux.go) is an init process, pid 1 of its own
// pid, mount, network, IPC and UTS namespaces, with the read-only root
// built and pivoted into. Config.PoolSize jails are prepared in the
// background; Execute takes one (or prepares one inline, same code, if the
// pool is empty: it never waits for the pool), and per run only does:
//
//	/box   a fresh tmpfs mounted by the init inside the jail, filled with
//	       Request.Files by the init itself (read from a memfd); shared by
//	       the compile and run steps, which run in the same jail. The host
//	       mounts nothing and never opens a path inside a jail.
//	step   the jail's cgroup with the step's limits and its peak memory
//	       reset (or, where the kernel cannot reset it, a fresh cgroup the
//	       init moves into; see jail.stepCgroup), fresh /tmp and
//	       /dev/shm tmpfs, and a fresh IPC, network and cgroup namespace,
//	       unshared by the dedicated thread that forks the program (made
//	       ahead, between steps: see launcher in init_linux.go).
//
// Why reuse (design b) rather than single-use prepared jails (design a):
// (a) moves the set-up off the critical path but not off the CPU: every run
// still pays a Go re-exec, a mount namespace copy, ~40 mounts and a network
// namespace teardown, 2-5 ms of CPU per run, which caps parallel throughput
// well below 0.85 of bare exec on 2 cores. (b) pays a few mounts, one
// unshare and a few cgroup file writes per step. Isolation of a reused jail is
// shown to equal a fresh one's state by state:
//   - processes: after the program exits, the launcher thread (pid 1's)
//     kill(-1, SIGKILL)s the namespace and reaps until ECHILD before it
//     reports the exit; the host then checks the step cgroup holds only the
//     init. A jail whose step was killed (limits, cancel) or whose init
//     reported an error is never reused: it is killed whole.
//   - files: /box, /tmp, /dev/shm are new tmpfs instances per run/step; the
//     rest of the root is read-only; the old instances are detached (and
//     freed, no process holding them) when the jail goes back to the pool.
//   - SysV IPC, POSIX message queues, abstract unix sockets, loopback
//     sockets: a new IPC and network namespace per step, held only by the
//     step's processes, so the old ones die with them.
//   - cgroup counters (memory peak, OOM count, CPU): the peak is reset and
//     the others counted from their values at the step's start (a new
//     cgroup per step where the peak cannot be reset); the program sees no
//     cgroupfs, and its cgroup namespace is rooted at that cgroup.
//   - credentials, capabilities, seccomp, no_new_privs: per-thread
//     attributes of the launcher thread, created anew per step; the
//     thread ends locked so the Go runtime destroys it.
//   - what remains shared between runs of one jail: the UTS namespace (the
//     program cannot change it) and the pid namespace, whose pid numbers
//     keep growing (a program can infer how many processes earlier runs of
//     its jail started; a jail retires after maxJailUses runs).
//
// Teardown off the critical path: the verdict and output are final and
// every process of the run is dead before Execute returns; clearing the
// jail's tmpfs, removing retired cgroups and killing surplus jails happen in
// the background.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Config configures a Sandbox.
type Config struct {
	// Dir is the host directory under which per-run directories are created
	// (created 0700 if missing), e.g. /var/lib/runbox/jails.
	Dir string
	// Logger receives debug-level logs of sandbox steps; never program
	// output or source. Nil discards.
	Logger *slog.Logger
	// PoolSize is the number of prepared jails kept ready (idle or in
	// use); 0 means 2 per CPU. Execute never waits for the pool: when it
	// is empty, a jail is prepared inline.
	PoolSize int
	// MemoryCap bounds the memory of all jails on the host together (the
	// limit of the parent cgroup they share; the last Sandbox to start
	// sets it); 0 means half the host's RAM. See capJails.
	MemoryCap int64
	// cgroupPerStep (tests only) gives every step a fresh cgroup even
	// where the kernel can reset one, so that the path of kernels that
	// cannot is tested on this one.
	cgroupPerStep bool
}

// Sandbox executes Requests. It is safe for concurrent use.
type Sandbox struct {
	// prefix starts the cgroup names of this Sandbox's steps (several
	// processes, e.g. test binaries, may share the parent cgroup).
	prefix  string
	dir     string // Config.Dir
	instDir string // dir/prefix: this instance's run directories
	lock    *os.File
	log     *slog.Logger
	cg      cgroupFS
	// jailCgroup: each jail keeps one cgroup for all its steps (see
	// jail.stepCgroup); false where the peak memory cannot be reset.
	jailCgroup bool

	stop      chan struct{}
	closeOnce sync.Once
	bg        sync.WaitGroup

	// The pool. total counts jails idle, in use or being prepared.
	mu     sync.Mutex
	size   int
	total  int
	closed bool
	idle   chan *jail
	refill chan struct{}
}

// sweepInterval is how often a live instance looks for dead siblings that
// share its Dir (several workers on one host).
const sweepInterval = 10 * time.Second

// setupTimeout bounds the jail set-up before the program starts.
const setupTimeout = 10 * time.Second

// New checks that this host can sandbox (root, namespaces, cgroups) and
// prepares the parent cgroups.
func New(cfg Config) (*Sandbox, error) {
	if cfg.Dir == "" || !filepath.IsAbs(cfg.Dir) {
		return nil, errors.New("sandbox: Config.Dir must be an absolute path")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("sandbox: must run as root (namespaces, cgroups, mounts)")
	}
	for _, ns := range []string{"pid", "mnt", "net", "ipc", "uts", "cgroup"} {
		if _, err := os.Stat("/proc/self/ns/" + ns); err != nil {
			return nil, fmt.Errorf("sandbox: kernel lacks %s namespaces: %w", ns, err)
		}
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	cg, err := newCgroupFS(cgroupRoot)
	if err != nil {
		return nil, err
	}
	if err := capJails(cg.memoryLimitFile(), cfg.MemoryCap); err != nil {
		// Defence in depth: every step's cgroup is limited regardless.
		log.Warn("sandbox: jails' memory not capped", "err", err)
	}
	s := &Sandbox{prefix: randomID()[:8], dir: cfg.Dir, log: log, cg: cg, stop: make(chan struct{}),
		jailCgroup: cg.peakResettable() && !cfg.cgroupPerStep}
	s.instDir = filepath.Join(s.dir, s.prefix)
	if s.lock, err = lockInstance(s.dir, s.prefix); err != nil {
		return nil, fmt.Errorf("sandbox: lock instance: %w", err)
	}
	if err := os.Mkdir(s.instDir, 0o700); err != nil {
		s.lock.Close()
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	if err := os.Mkdir(filepath.Join(s.instDir, "root"), 0o700); err != nil {
		s.lock.Close()
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	s.size = cfg.PoolSize
	if s.size <= 0 {
		s.size = 2 * runtime.NumCPU()
	}
	// Room for every jail that may exist: the pool plus one started inline
	// by each concurrent Execute is bounded by the release check.
	s.idle = make(chan *jail, s.size)
	s.refill = make(chan struct{}, 1)
	s.sweep()
	s.bg.Add(1)
	go s.refiller()
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		t := time.NewTicker(sweepInterval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.sweep()
			}
		}
	}()
	log.Debug("sandbox ready", "cgroup_version", cg.version(), "dir", cfg.Dir)
	return s, nil
}

// Close stops the background work of s and removes its instance
// directory and lock. Runs still in Execute are not interrupted; call Close
// after they returned. A process that exits without Close leaves its
// leftovers to the next instance's sweep.
func (s *Sandbox) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.stop)
		s.bg.Wait()
		s.drain()
		err = s.sweepInstance(s.prefix)
		if rerr := os.Remove(filepath.Join(s.dir, s.prefix+lockSuffix)); err == nil && rerr != nil {
			err = rerr
		}
		s.lock.Close()
	})
	return err
}

// CgroupVersion is 1 or 2.
func (s *Sandbox) CgroupVersion() int { return s.cg.version() }

// SelfCheck runs a tiny program in a jail and checks verdict and output.
func (s *Sandbox) SelfCheck(ctx context.Context) error {
	lim := Limits{WallTime: 5 * time.Second, CPUTime: 5 * time.Second, MemoryBytes: 64 << 20,
		Pids: 8, OutputBytes: 1024, OutputKill: 4096, ScratchBytes: 1 << 20, OpenFiles: 64, FileBytes: 1 << 20}
	rep, err := s.Execute(ctx, Request{
		Run: Step{Argv: []string{"/bin/sh", "-c", "echo ok"}, Limits: lim},
		Env: []string{"PATH=/usr/bin:/bin"},
	})
	if err != nil {
		return err
	}
	if r := rep.Run; r.Outcome != OutcomeOK || string(r.Stdout) != "ok\n" {
		return fmt.Errorf("sandbox self-check: outcome %s, stdout %q, stderr %q", r.Outcome, r.Stdout, r.Stderr)
	}
	return nil
}

func validateRequest(req *Request) error {
	steps := []*Step{&req.Run}
	if req.Compile != nil {
		steps = append(steps, req.Compile)
	}
	for _, st := range steps {
		l := st.Limits
		if len(st.Argv) == 0 || !filepath.IsAbs(st.Argv[0]) {
			return errors.New("argv[0] must be an absolute path")
		}
		if st.PythonScript && (len(st.Argv) < 2 || !plainName(st.Argv[1]) || strings.HasPrefix(st.Argv[1], "-")) {
			return errors.New("a python script step is [interpreter, script, args...]")
		}
		if l.WallTime <= 0 || l.CPUTime <= 0 || l.MemoryBytes <= 0 || l.Pids <= 0 || l.OutputBytes < 0 ||
			l.OutputKill <= 0 || l.ScratchBytes <= 0 || l.OpenFiles <= 0 || l.FileBytes <= 0 {
			return fmt.Errorf("invalid limits %+v", l)
		}
	}
	for _, f := range req.Files {
		if !plainName(f.Name) {
			return fmt.Errorf("invalid file name %q", f.Name)
		}
	}
	for _, p := range req.ReadOnlyPaths {
		c := filepath.Clean(p)
		if !filepath.IsAbs(p) || c == "/" || covered(c, []string{"/proc", "/dev", "/box", "/tmp", "/etc", "/sys"}) {
			return fmt.Errorf("invalid read-only path %q", p)
		}
	}
	return nil
}

// plainName reports whether name is a file name with no directory part.
func plainName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}

// Execute runs req. The error is only for failures of the sandbox itself
// (worth retrying); whatever the program does is in the Report.
func (s *Sandbox) Execute(ctx context.Context, req Request) (*Report, error) {
	if err := validateRequest(&req); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	need := stepRlimits(req.Run.Limits)
	if req.Compile != nil {
		need = maxRlimits(need, stepRlimits(req.Compile.Limits))
	}
	j, err := s.take(req.ReadOnlyPaths, need)
	if err != nil {
		return nil, err
	}
	reusable := false
	defer func() { s.release(j, reusable) }()
	scratch := req.Run.Limits.ScratchBytes
	if req.Compile != nil && req.Compile.Limits.ScratchBytes > scratch {
		scratch = req.Compile.Limits.ScratchBytes
	}
	// The template interpreter a python script run can be served by,
	// and the one the jail keeps when it goes back to the pool.
	j.python = nil
	if req.Run.PythonScript && req.Compile == nil {
		j.python = &pythonSpec{Python: req.Run.Argv[0], Env: req.Env}
	}
	if err := j.fillBox(scratch, req.Files, j.python); err != nil {
		return nil, fmt.Errorf("sandbox: prepare box: %w", err)
	}
	rep := &Report{}
	if req.Compile != nil {
		r, err := s.runStep(ctx, j, "c", &req, req.Compile)
		if err != nil {
			return nil, err
		}
		rep.Compile = r
		if r.Outcome != OutcomeOK {
			reusable = !j.dead()
			return rep, nil
		}
		if req.KeepCompiled {
			files, err := j.collectBox()
			if err != nil && !errors.Is(err, errNotKept) {
				s.log.Warn("sandbox: could not read the compiled program back", "jail", j.id, "err", err)
			}
			rep.Compiled = files
		}
	}
	r, err := s.runStep(ctx, j, "r", &req, &req.Run)
	if err != nil {
		return nil, err
	}
	rep.Run = r
	reusable = !j.dead()
	return rep, nil
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Kill reasons, in order of precedence.
const (
	killNone int32 = iota
	killOutput
	killTime
	killCancel
)

// runStep runs one step in jail j, in the cgroup stepCgroup gives it.
func (s *Sandbox) runStep(ctx context.Context, j *jail, name string, req *Request, st *Step) (*StepReport, error) {
	lim := st.Limits
	log := s.log.With("jail", j.id, "step", name)
	// The init and its Go runtime threads live in the step's cgroup too;
	// give them their own pids headroom so the program keeps its limit.
	cgLim := lim
	cgLim.Pids = lim.Pids + initThreads
	cg, err := j.stepCgroup(s, cgLim)
	if err != nil {
		j.kill()
		return nil, fmt.Errorf("sandbox: %w", err)
	}

	inR, inW, err1 := os.Pipe()
	outR, outW, err2 := os.Pipe()
	errR, errW, err3 := os.Pipe()
	if err := errors.Join(err1, err2, err3); err != nil {
		for _, f := range []*os.File{inR, inW, outR, outW, errR, errW} {
			if f != nil {
				f.Close()
			}
		}
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	defer func() {
		for _, f := range []*os.File{inW, outR, errR} {
			f.Close()
		}
	}()
	var killReason atomic.Int32
	kill := func(reason int32) {
		killReason.CompareAndSwap(killNone, reason)
		// The init is pid 1 of the jail's namespace: its death kills every
		// process in it. The cgroup kill is belt and braces.
		j.kill()
		cg.kill()
	}
	internal := func(err error) (*StepReport, error) {
		kill(killCancel)
		j.wait()
		return nil, fmt.Errorf("sandbox: %s: %w", name, err)
	}
	// Sampled before the launch: a short program may be over before we
	// read "started". The launch itself (unshare, seccomp, fork) is well
	// under a millisecond of CPU and counts as the program's.
	cpu0, _ := cg.cpuUsage()
	mem0, oom0 := cg.memoryUsage(), cg.oomKills()
	sendErr := j.send(&initReq{
		Op: "step", Argv: st.Argv, Env: req.Env, Cgroup: j.cgN,
		Rlimits: j.applyRlimits(stepRlimits(lim)),
	}, int(inR.Fd()), int(outW.Fd()), int(errW.Fd()))
	inR.Close()
	outW.Close()
	errW.Close()
	if sendErr != nil {
		return internal(sendErr)
	}

	// Output readers run from the start: a program may write before we
	// see "started".
	outC := &capture{keep: lim.OutputBytes, kill: lim.OutputKill, onKill: func() { kill(killOutput) }}
	errC := &capture{keep: lim.OutputBytes, kill: lim.OutputKill, onKill: func() { kill(killOutput) }}
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); outC.drain(outR) }()
	go func() { defer readers.Done(); errC.drain(errR) }()

	setup := time.NewTimer(setupTimeout)
	defer setup.Stop()
	var started, forked bool
	for !started {
		select {
		case m, ok := <-j.msgs:
			if !ok && killReason.Load() == killOutput {
				// The program started and passed the output limit before
				// we read "started": the main loop below gives the verdict.
				started = true
				break
			}
			if !ok {
				return internal(errors.New("jail init died during set-up"))
			}
			if m.Error != "" {
				return internal(errors.New(m.Error))
			}
			started, forked = m.Started, m.Forked
		case <-setup.C:
			return internal(errors.New("jail set-up timed out"))
		case <-ctx.Done():
			return internal(ctx.Err())
		}
	}
	start := time.Now()

	// Stdin: written in the background; EPIPE (program did not read it all)
	// is normal.
	go func() {
		_, _ = inW.Write(st.Stdin)
		inW.Close()
	}()

	var exited *initMsg
	wall := time.NewTimer(lim.WallTime)
	defer wall.Stop()
	cpuCheck := time.NewTimer(nextCPUCheck(lim.CPUTime))
	defer cpuCheck.Stop()
loop:
	for exited == nil {
		select {
		case m, ok := <-j.msgs:
			if !ok {
				break loop // init gone (killed)
			}
			if m.Error != "" {
				log.Error("sandbox: jail init failed", "err", m.Error)
				j.kill()
			}
			if m.Exited {
				mm := m
				exited = &mm
			}
		case <-wall.C:
			kill(killTime)
		case <-cpuCheck.C:
			u, err := cg.cpuUsage()
			switch {
			case err != nil:
				cpuCheck.Reset(cpuPollInterval)
			case u-cpu0 >= lim.CPUTime:
				kill(killTime)
			default:
				cpuCheck.Reset(nextCPUCheck(lim.CPUTime - (u - cpu0)))
			}
		case <-ctx.Done():
			kill(killCancel)
		}
	}
	wallTime := time.Since(start)
	if exited == nil || killReason.Load() != killNone {
		// The jail was killed: wait until its pid namespace is gone.
		j.kill()
		j.wait()
	} else if p := cg.procs(); !j.onlyInitLeft(p) {
		// Cannot happen (the init reaped every process of the namespace
		// but the template before reporting); never reuse a jail we
		// cannot account for.
		log.Error("sandbox: processes left after a step", "procs", p)
		j.kill()
		j.wait()
	}
	// Every process of the step is dead: the pipes reach EOF.
	readers.Wait()

	rep := &StepReport{
		Stdout: outC.buf.Bytes(), Stderr: errC.buf.Bytes(),
		StdoutTruncated: outC.total > lim.OutputBytes, StderrTruncated: errC.total > lim.OutputBytes,
		WallTime: wallTime, MemoryBytes: max(cg.memoryPeak()-mem0, 0), Forked: forked,
	}
	if u, err := cg.cpuUsage(); err == nil {
		rep.CPUTime = u - cpu0
	}
	if rep.CPUTime < 0 {
		rep.CPUTime = 0
	}
	oom := cg.oomKills() > oom0
	switch reason := killReason.Load(); {
	case reason == killCancel:
		return nil, fmt.Errorf("sandbox: %s: %w", name, ctx.Err())
	case reason == killTime:
		rep.Outcome = OutcomeTimeLimit
	case reason == killOutput:
		rep.Outcome = OutcomeOutputLimit
	case oom && (exited == nil || syscall.WaitStatus(exited.Status).ExitStatus() != 0):
		rep.Outcome = OutcomeMemoryLimit
	case exited == nil && j.signaled():
		// A signal killed the init, and not the cgroup's OOM killer (see
		// above): nothing in the jail can signal its pid 1, so an operator
		// or the host's own OOM killer did. Not the program's doing: the
		// caller retries the run.
		return nil, fmt.Errorf("sandbox: %s: jail init killed from outside the jail", name)
	case exited == nil:
		// The init exited on its own after the program started: only the
		// program can have caused that (e.g. no pid left for a runtime
		// thread). Report it as the program being killed.
		rep.Outcome, rep.Signal, rep.ExitCode = OutcomeSignaled, "SIGKILL", -1
	default:
		ws := syscall.WaitStatus(exited.Status)
		switch {
		case ws.Signaled():
			rep.Outcome, rep.Signal, rep.ExitCode = OutcomeSignaled, unix.SignalName(ws.Signal()), -1
		case ws.ExitStatus() == 0:
			rep.Outcome = OutcomeOK
		default:
			rep.Outcome, rep.ExitCode = OutcomeNonZeroExit, ws.ExitStatus()
		}
	}
	log.Debug("sandbox step done", "outcome", rep.Outcome, "wall", rep.WallTime, "cpu", rep.CPUTime, "mem", rep.MemoryBytes)
	return rep, nil
}

// nextCPUCheck is the soonest the step's processes can use up the
// remaining CPU allowance: they run on at most hostCPUs CPUs at once. The
// CPU limit is checked then, and every cpuPollInterval once that is the
// sooner, so it is enforced as tightly as by a fixed poll, while a
// program that ends in well under its allowance (nearly all of them) is
// never polled: each poll is a timer, a cgroup file read and a context
// switch on the CPUs the program is using.
func nextCPUCheck(remaining time.Duration) time.Duration {
	return max(remaining/time.Duration(hostCPUs()), cpuPollInterval)
}

// hostCPUs is the number of online CPUs: the most a jail can use at once,
// whatever the worker's own affinity (a program may widen its affinity to
// anything its cpuset allows).
var hostCPUs = sync.OnceValue(func() int {
	n := runtime.NumCPU()
	if b, err := os.ReadFile("/sys/devices/system/cpu/online"); err == nil {
		if online, err := parseCPUList(strings.TrimSpace(string(b))); err == nil && online > n {
			n = online
		}
	}
	return n
})

// parseCPUList counts the CPUs of a kernel CPU list such as "0-3,8,10-11".
func parseCPUList(list string) (int, error) {
	n := 0
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0, fmt.Errorf("cpu list %q: %w", list, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return 0, fmt.Errorf("cpu list %q: bad range %q", list, part)
			}
		}
		n += b - a + 1
	}
	return n, nil
}

const (
	cpuPollInterval = 10 * time.Millisecond
	// initThreads is the pids headroom for the jail init (GOMAXPROCS=1 Go
	// runtime: main, sysmon, a few workers).
	initThreads = 8
)

// capture keeps the first keep bytes of a stream, counts the rest and calls
// onKill once when the total passes kill. Memory stays bounded by keep.
type capture struct {
	keep, kill, total int64
	buf               bytes.Buffer
	onKill            func()
	killed            bool
}

func (c *capture) drain(r io.Reader) {
	b := make([]byte, 32<<10)
	for {
		n, err := r.Read(b)
		if n > 0 {
			if room := c.keep - int64(c.buf.Len()); room > 0 {
				c.buf.Write(b[:min(int64(n), room)])
			}
			c.total += int64(n)
			if c.total > c.kill && !c.killed {
				c.killed = true
				c.onKill()
			}
		}
		if err != nil {
			return
		}
	}
}

// stepRlimits are the rlimits of a step's program.
func stepRlimits(l Limits) []rlimit {
	return []rlimit{
		{unix.RLIMIT_CORE, 0},
		{unix.RLIMIT_FSIZE, uint64(l.FileBytes)},
		{unix.RLIMIT_NOFILE, uint64(l.OpenFiles)},
		{unix.RLIMIT_STACK, 64 << 20},
	}
}

// maxRlimits is the larger of a and b, resource by resource (same order).
func maxRlimits(a, b []rlimit) []rlimit {
	out := make([]rlimit, len(a))
	for i := range a {
		out[i] = rlimit{a[i].Resource, max(a[i].Value, b[i].Value)}
	}
	return out
}
