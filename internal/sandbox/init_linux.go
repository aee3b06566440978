package sandbox

// The jail init: this same binary, re-executed through /proc/self/exe with
// argv[0] == initArgv0, as pid 1 of fresh pid, mount, network, IPC and UTS
// namespaces. It serves one step at a time for the host over a
// SOCK_SEQPACKET socket on fd 3 (one JSON message per packet, fds passed
// with SCM_RIGHTS):
//
//	setup  build the root (read-only binds, /etc, /dev, /proc), pivot into
//	       it; sent once, after the host put us in our first cgroup; then
//	       prepare the first step's launcher
//	box    mount a fresh scratch tmpfs for /box, /tmp and /dev/shm (see
//	       mountScratch) and write the run's files into /box;
//	       kill the template interpreter unless it serves the first step
//	step   empty /tmp and /dev/shm, then start the program (see launch)
//	clear  unmount /box, /tmp, /dev/shm (the jail goes back to the pool);
//	       we are in the next step's cgroup (the same one, or a new one
//	       the host has put us in): keep the template python interpreter
//	       if it still serves the next steps and is fit to, else start
//	       one, when the last run was a python script (see
//	       template_linux.go); prepare the next step's launcher
//
// EOF on fd 3 means the host (the worker process) is gone: the init exits,
// and the kernel kills everything left in its pid namespace.
//
// The init stays root with its capabilities (it remounts between steps); the
// program never gets any: each step is launched from a dedicated, locked OS
// thread (a launcher) that has unshared a fresh IPC and cgroup namespace
// for itself and entered a network namespace as good as fresh (a new one
// with lo up, or the previous step's if that step created no inet socket
// and left no trace: see netns_linux.go) - ahead of the step, once the
// previous one is over (see launcher) - and then, at the step, drops the
// capability bounding/ambient/inheritable sets, sets no_new_privs and
// loads the seccomp filter - all per-thread attributes that the forked
// program inherits and that no other thread of the init has - then forks
// the program as the jail's user (see jailUIDBase). That thread reaps the
// program, then kills every other process of the pid namespace (kill -1 as
// pid 1) and reaps until ECHILD before it reports the exit: when the host
// reads "exited", nothing of the step is alive. The thread then ends locked,
// so the Go runtime destroys it with its namespaces and filter (the
// network namespace lives on if the init kept it). A python step that the
// jail's template serves is a fork of the template instead, in the
// template's namespaces, and the launcher's thread only waits for it and
// kills everything but us and the template (see template_linux.go).

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	initArgv0    = "runbox-jail-init"
	jailUser     = "runbox"
	jailHostname = "runbox"
	// jailUIDBase is the first of the ids the jails run as: a jail's
	// programs run as uid and gid jailUIDBase + the host pid of its init,
	// ids no host account uses, so no host file or process can be reached
	// through ownership (no supplementary groups either). One id per jail,
	// not one for all: the kernel counts some resources per user (inotify
	// instances, POSIX message queue bytes, file descriptors in flight over
	// unix sockets, pending signals, pipe buffers), and with a shared id
	// one learner's run could use them up for every run beside it, or
	// signal through them. The host pids of live inits are distinct, so
	// are the ids of jails alive at the same time.
	jailUIDBase = 1500000
	// maxMsg bounds one control message.
	maxMsg = 1 << 20
)

// initReq is one message from the host.
type initReq struct {
	Op string // setup, box, step, clear
	// setup
	Root        string   // empty host directory to build the root on
	ReadOnly    []string // extra read-only paths
	UID, GID    int
	TemplateUID int // see templateUIDBase
	// setup, clear, step: the host's number of the cgroup it has put us
	// in. A launcher's cgroup namespace is rooted at the cgroup the init
	// was in when it was prepared; the host moves the init only where the
	// kernel cannot reset a cgroup, and then a step needs a launcher
	// prepared in its own. (Reading /proc/self/cgroup to tell, twice a
	// step, was 4 % of the init's CPU on cgroup v1.)
	Cgroup int
	// box: the files' contents follow each other in the passed memfd
	BoxBytes int64
	Files    []fileMeta
	// box: the first step's, when the template may serve it; clear: the
	// template the jail keeps
	Python *pythonSpec
	// step: fds 0, 1, 2 of the program are passed
	Argv    []string
	Env     []string
	Rlimits []rlimit
}

type fileMeta struct {
	Name string
	Mode uint32
	Size int64
}

type rlimit struct {
	Resource int
	Value    uint64
}

// initMsg is one message to the host.
type initMsg struct {
	Ok      bool `json:",omitempty"` // setup, box or clear done
	Started bool `json:",omitempty"`
	// Forked (with Started): the program is a fork of the template.
	Forked bool   `json:",omitempty"`
	Exited bool   `json:",omitempty"`
	Status uint32 `json:",omitempty"` // syscall.WaitStatus
	Error  string `json:",omitempty"` // an internal error; the jail is unusable
}

// Init must be the first call in main (and in TestMain of any package
// whose tests execute the sandbox). In the re-executed jail init it runs
// the jail and never returns; everywhere else it returns at once.
func Init() {
	if len(os.Args) == 0 || os.Args[0] != initArgv0 {
		return
	}
	runInit()
	os.Exit(0)
}

type initState struct {
	mu  sync.Mutex // serialises sends
	uid int
	gid int
	// templateUID is the template's uid and gid.
	templateUID int
	prog        []unix.SockFilter
	// watch: prog reports inet sockets (see watchSockets); false where the
	// kernel cannot, and then no step's network namespace is kept.
	watch bool
	rlim  []rlimit // the process's, as the last step set them
	// scratch is an O_PATH fd of the run's scratch tmpfs root, whose
	// subdirectories are bound at /box, /tmp and /dev/shm; -1 between runs.
	// step counts the run's steps so far.
	scratch int
	step    int
	next    *launcher // prepared for the next step, if any
	tmpl    *template // the jail's template interpreter, if any
	// net is the network namespace of the last step, for the next one
	// (see netns_linux.go); only a launcher isolating itself touches it,
	// under netMu.
	netMu sync.Mutex
	net   *keptNetns
}

func (st *initState) send(m initMsg) {
	b, _ := json.Marshal(m)
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, err := unix.Write(3, b); err != nil {
		os.Exit(4)
	}
}

func runInit() {
	// The main thread runs this loop and nothing else: a launcher (which
	// ends locked, so that its thread dies with its namespaces) must never
	// get it, since the runtime wedges a locked main thread for good
	// instead of ending it.
	runtime.LockOSThread()
	// Nothing inherited beyond 0-3 may reach a program; 3 is ours. 0-2
	// are /dev/null: programs get their own stdio per step.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		os.Exit(5)
	}
	st := &initState{scratch: -1}
	buf := make([]byte, maxMsg)
	oob := make([]byte, unix.CmsgSpace(3*4))
	for {
		n, oobn, _, _, err := unix.Recvmsg(3, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			os.Exit(0) // the host is gone: so is the jail
		}
		var fds []int
		if oobn > 0 {
			if cm, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
				for _, c := range cm {
					if r, err := unix.ParseUnixRights(&c); err == nil {
						fds = append(fds, r...)
					}
				}
			}
		}
		var req initReq
		if err := json.Unmarshal(buf[:n], &req); err != nil {
			st.send(initMsg{Error: "bad request: " + err.Error()})
			os.Exit(1)
		}
		if err := st.handle(&req, fds); err != nil {
			st.send(initMsg{Error: err.Error()})
			os.Exit(1)
		}
	}
}

func closeFds(fds []int) {
	for _, fd := range fds {
		_ = unix.Close(fd)
	}
}

func (st *initState) handle(req *initReq, fds []int) error {
	switch req.Op {
	case "setup":
		closeFds(fds)
		st.uid, st.gid, st.templateUID = req.UID, req.GID, req.TemplateUID
		if err := unix.Sethostname([]byte(jailHostname)); err != nil {
			return fmt.Errorf("sethostname: %w", err)
		}
		if err := buildRoot(req); err != nil {
			return err
		}
		st.watch = canWatchSockets()
		prog, err := seccompProgram(st.watch)
		if err != nil {
			return err
		}
		st.prog = prog
		if err := st.prepareLauncher(req.Cgroup, false); err != nil {
			return err
		}
		st.send(initMsg{Ok: true})
	case "box":
		if t := st.tmpl; t != nil {
			if t.armed = t.spec.serves(req.Python); !t.armed {
				st.dropTemplate()
			}
		}
		if err := st.mountBox(req, fds); err != nil {
			return err
		}
		st.send(initMsg{Ok: true})
	case "clear":
		closeFds(fds)
		if err := st.dropScratch(); err != nil {
			return err
		}
		// Before the host removes the cgroup of a template it moved us
		// out of, and before the launcher, which is lazy with a template.
		if req.Python != nil {
			if err := st.startTemplate(req.Python, req.Cgroup); err != nil {
				return err
			}
		} else {
			st.dropTemplate()
		}
		if err := st.prepareLauncher(req.Cgroup, st.tmpl != nil); err != nil {
			return err
		}
		st.send(initMsg{Ok: true})
	case "step":
		if len(fds) != 3 || len(req.Argv) == 0 {
			closeFds(fds)
			return errors.New("step: bad request")
		}
		if err := st.freshTmp(); err != nil {
			closeFds(fds)
			return err
		}
		l, err := st.takeLauncher(req.Cgroup)
		if err != nil {
			closeFds(fds)
			return err
		}
		// What the launcher reads of our state is decided here, before it
		// starts (the channel orders it), never written back: the
		// launcher's end reaches this loop only through the host.
		st.rlim = req.Rlimits // the launcher sets them before the program starts
		w := launchWork{req: req, fds: fds, tmpl: st.tmpl}
		if t := st.tmpl; t != nil {
			w.fork = t.armed && t.checked
			t.armed, t.checked = false, false
		}
		l.work <- w
	default:
		closeFds(fds)
		return fmt.Errorf("unknown op %q", req.Op)
	}
	return nil
}

// unmountAll detaches every mount stacked on m (a no-op if none).
func unmountAll(m string) error {
	for {
		err := unix.Unmount(m, unix.MNT_DETACH)
		if err == unix.EINVAL { // not a mount point (any more)
			return nil
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", m, err)
		}
	}
}

// scratchDirs are the run's writable places: subdirectories of one
// tmpfs of the run's scratch size, so that the limit holds for all three
// together (three tmpfs mounts would give a program three times the space).
// /tmp and /dev/shm have one directory per step of a run (compile, run),
// all made before any untrusted code runs: a step's fresh ones cannot be
// kept from being made (by inodes used up, or a directory pinned), and the
// previous step's are only removed on a best-effort basis.
var scratchDirs = []struct{ name, at string }{{"box", "/box"}, {"tmp", "/tmp"}, {"shm", "/dev/shm"}}

// maxSteps is the number of steps a run has at most: compile and run.
const maxSteps = 2

// mountScratch mounts the run's scratch tmpfs at /box, makes its
// directories and binds box onto /box, where it stacks on the tmpfs
// itself, whose root no path reaches afterwards; st.scratch keeps it for
// the init.
func (st *initState) mountScratch(size int64) error {
	if err := st.dropScratch(); err != nil {
		return err
	}
	opts := fmt.Sprintf("size=%d,nr_inodes=24576,mode=0700", size)
	if err := unix.Mount("tmpfs", "/box", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return mountErr("tmpfs", "/box", err)
	}
	fd, err := unix.Open("/box", unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	st.scratch, st.step = fd, 0
	// /box belongs to the run's user; /tmp and /dev/shm are sticky and
	// open to all, as usual.
	err = unix.Mkdirat(fd, "box", 0o700)
	if err == nil {
		err = unix.Fchownat(fd, "box", st.uid, st.gid, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err == nil {
		err = unix.Fchmodat(fd, "box", 0o755, 0)
	}
	for _, d := range scratchDirs[1:] {
		for step := range maxSteps {
			name := d.name + strconv.Itoa(step)
			if err == nil {
				err = unix.Mkdirat(fd, name, 0o700)
			}
			if err == nil {
				err = unix.Fchmodat(fd, name, 0o1777, 0)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("scratch: %w", err)
	}
	return st.bindScratch("box", "/box")
}

// bindScratch binds scratch directory name at at; a bind keeps the tmpfs's
// nosuid and nodev.
func (st *initState) bindScratch(name, at string) error {
	if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d/%s", st.scratch, name), at, "", unix.MS_BIND, ""); err != nil {
		return mountErr("scratch "+name, at, err)
	}
	return nil
}

// freshTmp gives a step its own empty /tmp and /dev/shm: the compile
// step's files are not the run's. Every process of the previous step is
// dead; its directories are removed if they can be (RemoveAll unlinks
// symlinks rather than following them), else they stay, unreachable, until
// the run's scratch goes.
func (st *initState) freshTmp() error {
	if st.scratch < 0 {
		return errors.New("step: no scratch")
	}
	if st.step >= maxSteps {
		return errors.New("step: more steps than a run has")
	}
	for _, d := range scratchDirs[1:] {
		if err := unmountAll(d.at); err != nil {
			return err
		}
		if err := st.bindScratch(d.name+strconv.Itoa(st.step), d.at); err != nil {
			return err
		}
		if st.step > 0 {
			_ = os.RemoveAll(fmt.Sprintf("/proc/self/fd/%d/%s%d", st.scratch, d.name, st.step-1))
		}
	}
	st.step++
	return nil
}

// dropScratch unmounts the run's scratch; the tmpfs goes with its last
// reference, the fd.
func (st *initState) dropScratch() error {
	for _, d := range scratchDirs {
		if err := unmountAll(d.at); err != nil {
			return err
		}
	}
	if st.scratch >= 0 {
		_ = unix.Close(st.scratch)
		st.scratch = -1
	}
	return nil
}

// mountBox mounts a fresh scratch and writes the files into /box (nothing
// untrusted runs while we do; every open is O_EXCL|O_NOFOLLOW relative to
// the new mount).
func (st *initState) mountBox(req *initReq, fds []int) error {
	// The fds are closed through *os.File, never by number: a File left to
	// the garbage collector would close its number later, by then perhaps
	// reused by the next step's stdin (a learner's input vanished that way).
	received := make([]*os.File, len(fds))
	for i, fd := range fds {
		received[i] = os.NewFile(uintptr(fd), "box-content")
		defer received[i].Close()
	}
	if err := st.mountScratch(req.BoxBytes); err != nil {
		return err
	}
	if len(req.Files) == 0 {
		return nil
	}
	if len(fds) != 1 {
		return errors.New("box: no content fd")
	}
	dfd, err := unix.Open("/box", unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	content := received[0]
	var off int64
	for _, f := range req.Files {
		mode := f.Mode & 0o777
		if mode == 0 {
			mode = 0o644
		}
		fd, err := unix.Openat(dfd, f.Name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
		if err != nil {
			return fmt.Errorf("create %q: %w", f.Name, err)
		}
		w := os.NewFile(uintptr(fd), f.Name)
		_, err = w.ReadFrom(&sectionReader{f: content, off: off, n: f.Size})
		off += f.Size
		if err == nil {
			err = unix.Fchown(fd, st.uid, st.gid)
		}
		if err == nil {
			err = unix.Fchmod(fd, mode) // not subject to the umask
		}
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %q: %w", f.Name, err)
		}
	}
	return nil
}

type sectionReader struct {
	f   *os.File
	off int64
	n   int64
}

func (r *sectionReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	n, err := r.f.ReadAt(p, r.off)
	r.off += int64(n)
	r.n -= int64(n)
	if err != nil && r.n > 0 {
		return n, err
	}
	return n, nil
}

// launcher is a goroutine locked to an OS thread of its own that has
// unshared a fresh IPC and cgroup namespace, entered a network namespace
// as good as fresh, and waits to launch the next step's program. The init
// prepares it between steps, once the previous step's processes are all
// dead and the host has put the init in the cgroup of the next step, so
// that creating the thread and the namespaces (about half of what the
// jail adds to a python hello world) is off the step's path. No process
// but the step's program enters the namespaces, so they are as fresh as
// if created at the step. A step that the template serves does not use
// them: the launcher's thread then only waits for it.
type launcher struct {
	cgroup int // initReq.Cgroup when it was prepared
	work   chan launchWork
	net    *keptNetns // the network namespace it entered; nil: none yet
}

// launchWork is a step to launch: with fork, a fork of tmpl (the jail's
// template, if any, which the launcher otherwise only reaps should it die).
type launchWork struct {
	req  *initReq
	fds  []int
	tmpl *template
	fork bool
}

// confine drops the capability sets of the launcher's thread and loads the
// seccomp filter into it: every program forked from the thread inherits
// both. The filter reports the programs' inet sockets where the
// kernel can; where it cannot, the network namespace is not kept.
func (l *launcher) confine(st *initState) error {
	if err := limitCapabilities(); err != nil {
		return err
	}
	fd, err := installSeccomp(st.prog, st.watch)
	if err != nil {
		return err
	}
	if st.watch {
		watchSockets(fd, l.net)
	} else {
		l.net.used.Store(true)
	}
	return nil
}

// prepareLauncher replaces st.next with a new launcher, in the host's
// cgroup number cg (initReq.Cgroup).
//
// With lazy, the launcher enters its namespaces only if its step needs
// them, at the step: a jail with a template expects the template to
// serve the next step, and a step it serves runs in the template's.
func (st *initState) prepareLauncher(cg int, lazy bool) error {
	st.dropLauncher()
	// The launcher holds one M; keep the spares the step needs besides.
	spareThreads(spareInitThreads)
	l := &launcher{cgroup: cg, work: make(chan launchWork)}
	ready := make(chan error)
	go func() {
		runtime.LockOSThread()
		var err error
		if !lazy {
			err = l.isolate(st)
		}
		ready <- err
		if err != nil {
			return // ends locked: the runtime destroys the thread
		}
		if w, ok := <-l.work; ok {
			st.launch(l, w)
		}
	}()
	if err := <-ready; err != nil {
		return err
	}
	st.next = l
	return nil
}

// isolate gives the launcher's thread (and so the program) fresh IPC and
// cgroup namespaces, the cgroup one rooted at the cgroup we are in now,
// and a network namespace as good as fresh.
func (l *launcher) isolate(st *initState) error {
	st.netMu.Lock()
	defer st.netMu.Unlock()
	err := st.enterNetns()
	l.net = st.net
	if err != nil {
		return err
	}
	if err := unix.Unshare(unix.CLONE_NEWIPC | unix.CLONE_NEWCGROUP); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	return nil
}

// dropLauncher ends the prepared launcher, if any, with its thread and
// namespaces.
func (st *initState) dropLauncher() {
	if l := st.next; l != nil {
		close(l.work)
		st.next = nil
	}
}

// takeLauncher returns the prepared launcher if its cgroup namespace is
// rooted at the cgroup the init is in now (the step's, number cg), else a
// new one: where cgroups cannot be reset, a second step of one request
// runs in a cgroup of its own, entered after the first step's launcher
// was used.
func (st *initState) takeLauncher(cg int) (*launcher, error) {
	if st.next != nil && st.next.cgroup != cg {
		st.dropLauncher()
	}
	if st.next == nil {
		if err := st.prepareLauncher(cg, false); err != nil {
			return nil, err
		}
	}
	l := st.next
	st.next = nil
	return l, nil
}

// launch runs one step's program from the launcher's thread (see the top
// of this file) and reports "started", then "exited" once every process of
// the step is dead. It never unlocks its thread.
func (st *initState) launch(l *launcher, w launchWork) {
	req, fds := w.req, w.fds
	fail := func(err error) {
		closeFds(fds)
		st.send(initMsg{Error: err.Error()})
		os.Exit(1)
	}
	// Rlimits belong to the whole init process and the program inherits
	// them; the host only ever lowers them (see jail.rlim), since raising a
	// hard limit needs CAP_SYS_RESOURCE, which the worker may not have. The
	// init itself lives with the last step's limits, far above its own needs.
	for _, r := range req.Rlimits {
		lim := unix.Rlimit{Cur: r.Value, Max: r.Value}
		if err := unix.Setrlimit(r.Resource, &lim); err != nil {
			fail(fmt.Errorf("setrlimit %d: %w", r.Resource, err))
		}
	}
	started := startedMsg
	pid := 0
	var t *template // the template the program is a fork of
	// Its namespaces were checked at "clear"; nothing ran since.
	if w.fork && !w.tmpl.reaped.Load() && w.tmpl.cgroup == l.cgroup {
		if pid, _ = w.tmpl.fork(st, req, fds); pid != 0 {
			t, started = w.tmpl, forkedMsg
		}
		// Else the step is started the usual way, its end kills the
		// template, and the next "clear" replaces it.
	}
	var err error
	if pid == 0 {
		if l.net == nil {
			if err := l.isolate(st); err != nil {
				fail(err)
			}
		}
		if err := l.confine(st); err != nil {
			fail(err)
		}
		pid, err = syscall.ForkExec(req.Argv[0], req.Argv, &syscall.ProcAttr{
			Dir:   "/box",
			Env:   req.Env,
			Files: []uintptr{uintptr(fds[0]), uintptr(fds[1]), uintptr(fds[2])},
			Sys:   &syscall.SysProcAttr{Credential: st.credential(), Setsid: true},
		})
	}
	if err != nil {
		// Not an internal error: the program could not be started (ENOENT,
		// EACCES, ENOEXEC...). Report it like a shell does: exit 127/126.
		code := 126
		if err == syscall.ENOENT {
			code = 127
		}
		stderr := os.NewFile(uintptr(fds[2]), "stderr")
		_, _ = fmt.Fprintf(stderr, "runbox: cannot execute %s: %v\n", req.Argv[0], err)
		stderr.Close()
		closeFds(fds[:2])
		st.send(initMsg{Started: true})
		st.send(initMsg{Exited: true, Status: uint32(code << 8)})
		return
	}
	// Our copies of the program's pipes must not keep them open.
	for _, fd := range fds {
		_, _, _ = syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(fd), 0, 0)
	}
	st.mu.Lock()
	_, _, e := syscall.RawSyscall(syscall.SYS_WRITE, 3, uintptr(unsafe.Pointer(&started[0])), uintptr(len(started)))
	st.mu.Unlock()
	if e != 0 {
		os.Exit(4)
	}
	// The waits are plain syscalls: the runtime hands our P to one of the
	// spare threads (see spareThreads), which finds nothing to do and parks,
	// and with every P idle its monitor thread (sysmon) sleeps until we come
	// back. A raw wait4 kept the P busy for the whole run, and sysmon then
	// polled it, every 20 us at first: about 60 wake-ups, a millisecond of
	// CPU, per python hello world on a paravirtualised host.
	var status, ws syscall.WaitStatus
	for t == nil {
		// As pid 1 we also reap the program's orphans.
		wpid, err := syscall.Wait4(-1, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			fail(fmt.Errorf("wait: %w", err))
		}
		w.tmpl.noteReaped(wpid)
		if wpid == pid {
			status = ws
			break
		}
	}
	if t != nil {
		status = t.wait(pid)
	}
	if t != nil {
		if err := killAllButTemplate(t); err != nil {
			fail(err)
		}
	} else {
		// Kill what the program left (daemons, double forks) and reap it
		// all: after ECHILD no process but us is left in the pid namespace.
		for {
			_, _, _ = syscall.RawSyscall(syscall.SYS_KILL, ^uintptr(0), uintptr(syscall.SIGKILL), 0)
			wpid, err := syscall.Wait4(-1, nil, 0, nil)
			if err == syscall.ECHILD {
				break
			}
			w.tmpl.noteReaped(wpid)
		}
	}
	st.send(initMsg{Exited: true, Status: uint32(status)})
}

// noteReaped notes that the init reaped pid, which may be t's (t may be
// nil).
func (t *template) noteReaped(pid int) {
	if t != nil && t.pid == pid {
		t.reaped.Store(true)
	}
}

// killAllButTemplate kills what a step forked from t left (daemons,
// double forks) and reaps it all: when it returns, no process but us and
// t is left in the pid namespace. kill(-1) would kill t too, so it kills
// what /proc lists until /proc lists nothing more: a process forked
// meanwhile has a parent alive when it was listed, and a killed process
// forks no more.
func killAllButTemplate(t *template) error {
	proc, err := unix.Open("/proc", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("kill: %w", err)
	}
	defer unix.Close(proc)
	buf := make([]byte, 8<<10)
	for {
		if _, err := unix.Seek(proc, 0, 0); err != nil {
			return fmt.Errorf("kill: %w", err)
		}
		left := false
		for {
			n, err := unix.Getdents(proc, buf)
			if err != nil {
				return fmt.Errorf("kill: %w", err)
			}
			if n == 0 {
				break
			}
			_, _, names := unix.ParseDirent(buf[:n], -1, nil)
			for _, name := range names {
				pid, err := strconv.Atoi(name)
				if err != nil || pid == 1 || pid == t.pid && !t.reaped.Load() {
					continue
				}
				left = true
				_ = unix.Kill(pid, unix.SIGKILL)
			}
		}
		if !left {
			return nil
		}
		// A zombie is listed until it is reaped: wait for one (a killed
		// process's orphans are ours once it is gone).
		wpid, err := syscall.Wait4(-1, nil, 0, nil)
		if err != nil && err != syscall.EINTR && err != syscall.ECHILD {
			return fmt.Errorf("kill: wait: %w", err)
		}
		t.noteReaped(wpid)
	}
}

// spareInitThreads is how many idle OS threads the init keeps ready for
// its Go runtime before each step (one of them for watchSockets, which
// holds one while it waits).
const spareInitThreads = 4

// spareThreads makes sure the Go runtime has at least n idle OS threads
// (Ms), creating the missing ones now, while the step's pids cgroup still
// has room. During a step the program can fill pids.max, and then creating
// a thread fails and the runtime aborts, taking the jail down without a
// verdict. The runtime needs an idle M whenever the launch goroutine,
// locked to its thread, is preempted or blocks in a syscall (the P is
// handed to another M while it waits: see launch); idle Ms are never
// freed, but the launch thread ends locked, so each step uses one up.
// n goroutines locked at the same time hold n distinct Ms; when they
// unlock and exit, those Ms go idle.
func spareThreads(n int) {
	var ready, done sync.WaitGroup
	ready.Add(n)
	done.Add(n)
	release := make(chan struct{})
	for range n {
		go func() {
			defer done.Done()
			runtime.LockOSThread()
			ready.Done()
			<-release
			runtime.UnlockOSThread()
		}()
	}
	ready.Wait()
	close(release)
	done.Wait()
}

// startedMsg and forkedMsg are the "started" messages, encoded ahead:
// between the fork and the wait the launcher only makes raw syscalls.
var (
	startedMsg, _ = json.Marshal(initMsg{Started: true})
	forkedMsg, _  = json.Marshal(initMsg{Started: true, Forked: true})
)

// credential is the jail user's, with no supplementary groups.
func (st *initState) credential() *syscall.Credential {
	return &syscall.Credential{Uid: uint32(st.uid), Gid: uint32(st.gid), Groups: []uint32{}}
}

// limitCapabilities empties the calling thread's capability bounding set
// but for keep, and its ambient and inheritable sets, so that the
// program, once setuid to a non-root id, has and can regain no capability
// but those it is given (setuid binaries are neutralised by nosuid mounts
// and no_new_privs as well).
func limitCapabilities(keep ...uintptr) error {
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient caps: %w", err)
	}
	for capb := 0; ; capb++ {
		if slices.Contains(keep, uintptr(capb)) {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(capb), 0, 0, 0); err != nil {
			if err == unix.EINVAL && capb > 0 { // past CAP_LAST_CAP
				break
			}
			return fmt.Errorf("drop cap %d: %w", capb, err)
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}

// loopbackUp brings up lo, the only interface of the new network namespace,
// so that a program may talk to itself over 127.0.0.1 (there is no route
// anywhere else).
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}
