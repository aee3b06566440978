package sandbox

// Prestarted python. A python hello world spends ~8 ms of its ~9 ms
// starting the interpreter, before a line of the script runs. A pooled
// jail whose last run was a python script starts the next interpreter as
// soon as it goes back to the pool, from the prepared launcher (see
// init_linux.go): as the jail's user, in the next step's fresh namespaces,
// with no capabilities and the seccomp filter loaded - exactly as that
// step's program would be started - running prestart.py, which waits on
// fd 3 for the step. When the step comes, the init hands it the step's
// rlimits and argv and the program's stdin, stdout and stderr; it lowers
// its rlimits and runs the script as `python3 script args...` would.
//
// The isolation is a fresh process's: the interpreter is started after
// every process of the previous run is dead and its /box, /tmp and
// /dev/shm are gone, and no other program runs in the jail before its
// step, so no run can reach the next one's interpreter. A step for any
// other program (or interpreter, or environment) makes the init kill it
// before the step's box is filled. The host counts its start (CPU and
// memory, from the cgroup's use before it started) as the step's, as for a
// fresh interpreter: only the wait is gone.

import (
	_ "embed"
	"fmt"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// prestartSource is what a prestarted interpreter runs (python3 -c).
//
//go:embed prestart.py
var prestartSource string

// prestartSpec is what an interpreter is prestarted as; it serves a step
// that runs the same interpreter with the same environment.
type prestartSpec struct {
	Python string
	Env    []string
}

func (p *prestartSpec) serves(q *prestartSpec) bool {
	return p != nil && q != nil && p.Python == q.Python && slices.Equal(p.Env, q.Env)
}

// prestarted is an interpreter waiting for its step: a child of the init,
// forked from a launcher's thread.
type prestarted struct {
	spec prestartSpec
	pid  int
	sock int      // our end of its fd 3
	rlim []rlimit // the init's when it was forked, which it inherited
}

// prestart starts an interpreter for spec from l's thread (the caller
// runs on it). An interpreter that cannot be started is not an error
// here: the step, started the usual way, reports why.
func (st *initState) prestart(l *launcher, spec *prestartSpec) error {
	l.dropPrestarted()
	if err := l.confine(st); err != nil {
		return err
	}
	// Its stdio until the step: pipes, as the step's own are, and not
	// /dev/null, because Python asks at start whether its std streams can
	// seek and keeps the answer (sys.stdin.seekable() would say True). Our
	// ends close when we return: stdin reads EOF, a write fails.
	var in, out [2]int
	if err := unix.Pipe2(in[:], unix.O_CLOEXEC); err != nil {
		return err
	}
	defer closeFds(in[:])
	if err := unix.Pipe2(out[:], unix.O_CLOEXEC); err != nil {
		return err
	}
	defer closeFds(out[:])
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(pair[1])
	pid, err := syscall.ForkExec(spec.Python, []string{spec.Python, "-c", prestartSource}, &syscall.ProcAttr{
		Dir:   "/",
		Env:   spec.Env,
		Files: []uintptr{uintptr(in[0]), uintptr(out[1]), uintptr(out[1]), uintptr(pair[1])},
		Sys:   &syscall.SysProcAttr{Credential: st.credential(), Setsid: true},
	})
	if err != nil {
		unix.Close(pair[0])
		return nil
	}
	l.pre = &prestarted{spec: *spec, pid: pid, sock: pair[0], rlim: st.rlim}
	return nil
}

// handOver gives req's step to p: its rlimits where they differ from
// those p was forked with (the previous step's; the step's are never
// higher, see jail.applyRlimits) - setting them costs the interpreter an
// import - and argv, with the program's stdin, stdout and stderr. It fails
// if p is gone.
func (p *prestarted) handOver(req *initReq, fds []int) error {
	var msg strings.Builder
	for _, r := range req.Rlimits {
		if slices.Contains(p.rlim, r) {
			continue
		}
		fmt.Fprintf(&msg, "%d %d ", r.Resource, r.Value)
	}
	msg.WriteString("\n")
	msg.WriteString(strings.Join(req.Argv, "\x00"))
	err := unix.Sendmsg(p.sock, []byte(msg.String()), unix.UnixRights(fds...), nil, 0)
	unix.Close(p.sock)
	p.sock = -1
	return err
}

// dropPrestarted kills the interpreter l prestarted, if any.
func (l *launcher) dropPrestarted() {
	if l.pre != nil {
		l.pre.kill()
		l.pre = nil
	}
}

// kill kills p and reaps it (any thread of the init may: p is a child of
// the process).
func (p *prestarted) kill() {
	if p.sock >= 0 {
		unix.Close(p.sock)
	}
	_ = unix.Kill(p.pid, unix.SIGKILL)
	for {
		if _, err := unix.Wait4(p.pid, nil, 0, nil); err != unix.EINTR {
			return
		}
	}
}
