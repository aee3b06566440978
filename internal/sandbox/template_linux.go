package sandbox

// Python from a template. Starting the interpreter is most of a python
// hello world's CPU (16-18 ms of ~20 on a 2-vCPU host); a process forked
// from an interpreter that has started already costs 4-5 ms, normal exit
// included. So a pooled jail whose last run was a python script keeps a
// template interpreter (template.py), and each python step of the jail is
// a fork of it, which the init reaps and accounts for as it would a
// program it started itself.
//
// The template must be out of every run's reach, since it outlives them:
//   - it runs as a uid of its own (templateUIDBase + the host pid of the
//     init), so a run, which runs as the jail's user, cannot signal it,
//     trace it, change its limits, priority or affinity, or read its
//     /proc files (hidepid=2 hides it altogether); its only capabilities
//     are CAP_SETUID, CAP_SETGID and CAP_SETPCAP, which the step's process
//     drops, with the bounding set, the ids and every other set, before
//     the script's first line (template.py checks /proc/self/status);
//   - it reads nothing after its start but the init's messages, and a
//     step's process shares nothing writable with it (a fork);
//   - it has the seccomp filter and no_new_privs of every program, loaded
//     before it started, and the step's process inherits both;
//   - the step's process runs in the template's network, IPC and cgroup
//     namespaces, not fresh ones: before each step the init checks that
//     no run left anything in them (no inet socket was created in the
//     network namespace and it reads as new, see netns_linux.go; no
//     System V object or POSIX message queue exists in the IPC one; the
//     cgroup is the one the template started in) and starts the step the
//     usual way, and drops the template, otherwise;
//   - the step's process is the template's child (the template sends the
//     init its wait status); its orphans are the init's, as a program's
//     are. When it exits, the init kills every process of the pid
//     namespace but itself and the template, as it kills every process
//     but itself after any step, and reaps them before it reports.
//
// The template's own start (CPU and memory) is not any step's: a step is
// charged from its fork on, and the pages it shares with the template are
// charged to the template (they count against the cgroup's limit, as a
// fresh interpreter's own would).

import (
	"bytes"
	_ "embed"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// templateSource is what a template interpreter runs (python3 -c).
//
//go:embed template.py
var templateSource string

// templateUIDBase is the first of the ids templates run as: a template
// runs as uid and gid templateUIDBase + the host pid of its jail's init.
// Host pids are below 1<<22 (the kernel's PID_MAX_LIMIT), so these ids
// never meet the jails' own (see jailUIDBase).
const templateUIDBase = jailUIDBase + 1<<22

// templateCaps are the capabilities a template keeps: what its forks need
// to drop the bounding set and change their ids.
var templateCaps = []uintptr{unix.CAP_SETGID, unix.CAP_SETUID, unix.CAP_SETPCAP}

// pythonSpec is what a template is started as; it serves a step that runs
// the same interpreter with the same environment.
type pythonSpec struct {
	Python string
	Env    []string
}

func (p *pythonSpec) serves(q *pythonSpec) bool {
	return p != nil && q != nil && p.Python == q.Python && slices.Equal(p.Env, q.Env)
}

// template is a template interpreter, a child of the init.
type template struct {
	spec   pythonSpec
	pid    int // in the jail's pid namespace
	sock   int // our end of its fd 3
	cgroup int // initReq.Cgroup when it started
	rlim   []rlimit
	net    *keptNetns
	ipc    *ipcState
	// armed: the step the box was filled for is this template's to serve.
	// checked: it was found fit (or started) since its last step.
	armed, checked bool
	// reaped: a launcher reaped it (it died during a step).
	reaped atomic.Bool
}

// startTemplate starts a template for spec, replacing the one the jail
// has unless that one serves spec and is still fit to. A template that
// cannot be started is not an error: the steps are started the usual way.
// Nothing runs in the jail between this and the next step, so what it
// found holds at that step.
func (st *initState) startTemplate(spec *pythonSpec, cg int) error {
	if t := st.tmpl; t != nil && !(t.spec.serves(spec) && t.fit(cg)) {
		st.dropTemplate()
	}
	if st.tmpl == nil {
		t, err := st.newTemplate(spec, cg)
		if err != nil {
			return err
		}
		st.tmpl = t
	}
	if st.tmpl != nil {
		st.tmpl.checked = true
	}
	return nil
}

// newTemplate starts a template for spec on a thread of its own (see
// forkTemplate); nil if the interpreter could not be started.
func (st *initState) newTemplate(spec *pythonSpec, cg int) (*template, error) {
	type result struct {
		t   *template
		err error
	}
	res := make(chan result)
	go func() {
		// Never unlocked: the thread ends with the namespaces and the
		// capabilities it changed, and the runtime destroys it.
		runtime.LockOSThread()
		t, err := st.forkTemplate(spec, cg)
		res <- result{t, err}
	}()
	r := <-res
	return r.t, r.err
}

// forkTemplate starts a template from the calling thread, which it
// changes for good: fresh network, IPC and cgroup namespaces, the
// template's capabilities only, and the seccomp filter.
func (st *initState) forkTemplate(spec *pythonSpec, cg int) (*template, error) {
	// The socket pair first: a socket belongs to the network namespace it
	// was created in, and the template's must read as new.
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	defer unix.Close(pair[1])
	if err := unix.Unshare(unix.CLONE_NEWIPC | unix.CLONE_NEWCGROUP); err != nil {
		unix.Close(pair[0])
		return nil, fmt.Errorf("template: unshare: %w", err)
	}
	net, err := newNetns()
	if err != nil {
		unix.Close(pair[0])
		return nil, fmt.Errorf("template: %w", err)
	}
	t := &template{spec: *spec, sock: pair[0], cgroup: cg, rlim: st.rlim, net: net}
	fail := func(err error) (*template, error) {
		t.close()
		return nil, fmt.Errorf("template: %w", err)
	}
	if t.ipc, err = newIPCState(); err != nil {
		return fail(err)
	}
	if err := limitCapabilities(templateCaps...); err != nil {
		return fail(err)
	}
	fd, err := installSeccomp(st.prog, st.watch)
	if err != nil {
		return fail(err)
	}
	if st.watch {
		watchSockets(fd, net)
	} else {
		net.used.Store(true)
	}
	// Its stdio: pipes, as a step's are (see template.py). Our ends close
	// when we return: stdin reads EOF, a write fails.
	var in, out [2]int
	if err := unix.Pipe2(in[:], unix.O_CLOEXEC); err != nil {
		return fail(err)
	}
	defer closeFds(in[:])
	if err := unix.Pipe2(out[:], unix.O_CLOEXEC); err != nil {
		return fail(err)
	}
	defer closeFds(out[:])
	id := uint32(st.templateUID)
	pid, err := syscall.ForkExec(spec.Python, []string{spec.Python, "-c", templateSource}, &syscall.ProcAttr{
		Dir:   "/",
		Env:   spec.Env,
		Files: []uintptr{uintptr(in[0]), uintptr(out[1]), uintptr(out[1]), uintptr(pair[1])},
		Sys: &syscall.SysProcAttr{
			Credential:  &syscall.Credential{Uid: id, Gid: id, Groups: []uint32{}},
			AmbientCaps: templateCaps,
			Setsid:      true,
		},
	})
	if err != nil {
		t.close()
		return nil, nil
	}
	t.pid = pid
	return t, nil
}

// fit reports whether t may serve a step in the host's cgroup number cg:
// it is alive, and no run left anything in its namespaces.
func (t *template) fit(cg int) bool {
	if t.reaped.Load() || t.cgroup != cg || t.net.used.Load() {
		return false
	}
	if cur, err := netnsState(t.net.files); err != nil || !bytes.Equal(cur, t.net.fresh) {
		return false
	}
	return t.ipc.empty()
}

// fork has t fork the process of req's step, with fds as its stdin,
// stdout and stderr, and returns its pid: once it is known, the process
// has dropped to the jail's user and its capabilities and waits for
// nothing more. It is t's child, not ours (forking it from a fork, to
// make it ours, cost 1.3 ms of CPU a run): wait has its status.
func (t *template) fork(st *initState, req *initReq, fds []int) (int, error) {
	var msg strings.Builder
	fmt.Fprintf(&msg, "%d %d", st.uid, st.gid)
	for _, r := range req.Rlimits {
		if !slices.Contains(t.rlim, r) {
			fmt.Fprintf(&msg, " %d %d", r.Resource, r.Value)
		}
	}
	msg.WriteString("\n")
	msg.WriteString(strings.Join(req.Argv, "\x00"))
	if err := unix.Sendmsg(t.sock, []byte(msg.String()), unix.UnixRights(fds...), nil, 0); err != nil {
		return 0, err
	}
	answer, err := t.read()
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(answer)
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("template: no step process (%q)", answer)
	}
	return pid, nil
}

// read returns t's next message (a number; "" if t is gone).
func (t *template) read() (string, error) {
	var buf [16]byte
	for {
		n, err := unix.Read(t.sock, buf[:])
		if err != unix.EINTR {
			return string(buf[:max(n, 0)]), err
		}
	}
}

// wait returns the wait status of pid, t's fork, which t sends. Should t
// die first (or say something else), it is killed and reaped, which makes
// pid our child (as every orphan of the pid namespace), and we wait for
// it ourselves; if t had reaped it already, the status says it was
// killed.
func (t *template) wait(pid int) syscall.WaitStatus {
	if answer, err := t.read(); err == nil {
		if status, err := strconv.Atoi(answer); err == nil {
			return syscall.WaitStatus(status)
		}
	}
	_ = unix.Kill(t.pid, unix.SIGKILL)
	for {
		if _, err := syscall.Wait4(t.pid, nil, 0, nil); err != syscall.EINTR {
			break
		}
	}
	t.reaped.Store(true)
	for {
		var ws syscall.WaitStatus
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		switch err {
		case nil:
			return ws
		case syscall.EINTR:
			continue
		default:
			return syscall.WaitStatus(syscall.SIGKILL)
		}
	}
}

// close releases what the init holds of t; the process is the caller's.
func (t *template) close() {
	if t.sock >= 0 {
		_ = unix.Close(t.sock)
		t.sock = -1
	}
	t.net.close()
	if t.ipc != nil {
		t.ipc.close()
	}
}

// dropTemplate kills the jail's template, if any, and reaps it.
func (st *initState) dropTemplate() {
	t := st.tmpl
	if t == nil {
		return
	}
	st.tmpl = nil
	t.close()
	if t.reaped.Load() {
		return
	}
	_ = unix.Kill(t.pid, unix.SIGKILL)
	for {
		if _, err := unix.Wait4(t.pid, nil, 0, nil); err != unix.EINTR {
			return
		}
	}
}

// sysvipcFiles list an IPC namespace's System V objects (those of the
// namespace of whoever opened them).
var sysvipcFiles = []string{"/proc/sysvipc/shm", "/proc/sysvipc/sem", "/proc/sysvipc/msg"}

// ipcState shows what programs left in an IPC namespace.
type ipcState struct {
	files []int  // sysvipcFiles, opened in it
	fresh []byte // their contents when it was new (headers only)
	mq    int    // the root of its POSIX message queue file system
}

// newIPCState opens what shows the calling thread's IPC namespace: the
// System V lists, and its mqueue file system, mounted nowhere (the new
// mount API makes a detached mount, which no program can see).
func newIPCState() (*ipcState, error) {
	s := &ipcState{mq: -1}
	for _, name := range sysvipcFiles {
		fd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("IPC namespace state: %w", err)
		}
		s.files = append(s.files, fd)
	}
	fresh, err := s.sysv()
	if err != nil {
		s.close()
		return nil, err
	}
	s.fresh = fresh
	fs, err := unix.Fsopen("mqueue", unix.FSOPEN_CLOEXEC)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("IPC namespace state: fsopen: %w", err)
	}
	defer unix.Close(fs)
	if err := unix.FsconfigCreate(fs); err != nil {
		s.close()
		return nil, fmt.Errorf("IPC namespace state: fsconfig: %w", err)
	}
	mnt, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("IPC namespace state: fsmount: %w", err)
	}
	defer unix.Close(mnt)
	if s.mq, err = unix.Openat(mnt, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
		s.close()
		return nil, fmt.Errorf("IPC namespace state: mqueue: %w", err)
	}
	return s, nil
}

// sysv reads the System V lists.
func (s *ipcState) sysv() ([]byte, error) {
	var out []byte
	buf := make([]byte, 4<<10)
	for _, fd := range s.files {
		b, err := preadAll(fd, buf)
		if err != nil {
			return nil, fmt.Errorf("IPC namespace state: %w", err)
		}
		out = append(out, b...)
	}
	return out, nil
}

// empty reports whether the namespace holds no System V object and no
// message queue.
func (s *ipcState) empty() bool {
	if cur, err := s.sysv(); err != nil || !bytes.Equal(cur, s.fresh) {
		return false
	}
	if _, err := unix.Seek(s.mq, 0, 0); err != nil {
		return false
	}
	buf := make([]byte, 4<<10)
	n, err := unix.Getdents(s.mq, buf)
	if err != nil {
		return false
	}
	_, _, names := unix.ParseDirent(buf[:n], -1, nil)
	return len(names) == 0
}

func (s *ipcState) close() {
	closeFds(s.files)
	if s.mq >= 0 {
		_ = unix.Close(s.mq)
	}
}
