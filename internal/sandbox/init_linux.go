package sandbox

// The jail init: this same binary, re-executed by Execute through
// /proc/self/exe with argv[0] == initArgv0, as pid 1 of fresh pid, mount,
// network, IPC and UTS namespaces, already inside the step's cgroup.
//
// It reads its jailConfig from fd 3 (on cgroup v1 the host writes it only
// after putting us in the cgroup, so the read is also the "go" signal),
// builds the root, drops everything it can, forks the program and reports
// on fd 4: a "started" line, then the program's wait status. When the
// program exits, init exits, and the kernel kills whatever the program left
// behind in the pid namespace (daemons, double forks).
//
// init stays root (it needs no privilege after the fork, but dropping it
// would let the program signal or ptrace it); the program runs as jailUID
// with no capabilities, no_new_privs and the seccomp filter.

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	initArgv0    = "runbox-jail-init"
	jailUser     = "runbox"
	jailHostname = "runbox"
	// jailUID is a dedicated id no host account uses, so no host file or
	// process can be reached through ownership. No supplementary groups.
	jailUID = 1500000
	jailGID = 1500000
)

// jailConfig is what the host tells the init.
type jailConfig struct {
	Root     string   // empty host directory to build the root on
	Box      string   // host path of the run's scratch tmpfs
	ReadOnly []string // extra read-only paths
	Argv     []string
	Env      []string
	UID, GID int
	TmpBytes int64
	Rlimits  []rlimit
}

type rlimit struct {
	Resource int
	Value    uint64
}

// initMsg is one line on the status pipe.
type initMsg struct {
	Started bool   `json:",omitempty"`
	Exited  bool   `json:",omitempty"`
	Status  uint32 `json:",omitempty"` // syscall.WaitStatus
	Error   string `json:",omitempty"` // set-up failed: an internal error
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

func runInit() {
	// One OS thread does everything: no_new_privs is per thread, and the
	// program must be forked from the thread that carries it.
	runtime.LockOSThread()
	status := os.NewFile(4, "status")
	enc := json.NewEncoder(status)
	fail := func(err error) {
		_ = enc.Encode(initMsg{Error: err.Error()})
		os.Exit(1)
	}
	// Nothing inherited beyond 0-4 may reach the program; 3 and 4 are ours.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		fail(fmt.Errorf("close_range: %w", err))
	}
	var c jailConfig
	cfgFile := os.NewFile(3, "config")
	if err := json.NewDecoder(cfgFile).Decode(&c); err != nil {
		fail(fmt.Errorf("read config: %w", err))
	}
	// The host keeps the config pipe open for as long as it runs: EOF
	// means the worker died, and then so do we (and, as pid 1, the whole
	// jail). Pdeathsig alone is tied to the forking thread.
	go func() {
		_, _ = io.Copy(io.Discard, cfgFile)
		os.Exit(3)
	}()
	// We are in our cgroup now: make it the root of our cgroup namespace so
	// /proc/self/cgroup reveals nothing of the host's layout.
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		fail(fmt.Errorf("unshare cgroup: %w", err))
	}
	if err := unix.Sethostname([]byte(jailHostname)); err != nil {
		fail(fmt.Errorf("sethostname: %w", err))
	}
	if err := loopbackUp(); err != nil {
		fail(err)
	}
	if err := buildRoot(&c); err != nil {
		fail(err)
	}
	prog, err := seccompProgram()
	if err != nil {
		fail(err)
	}
	if err := dropPrivileges(&c); err != nil {
		fail(err)
	}
	if err := installSeccomp(prog); err != nil {
		fail(err)
	}
	// The program's own ends of the pipes are 0, 1, 2; ForkExec passes
	// exactly those (everything else is CLOEXEC).
	pid, err := syscall.ForkExec(c.Argv[0], c.Argv, &syscall.ProcAttr{
		Dir:   "/box",
		Env:   c.Env,
		Files: []uintptr{0, 1, 2},
		Sys: &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: uint32(c.UID), Gid: uint32(c.GID), Groups: []uint32{}},
			Setsid:     true,
			Pdeathsig:  syscall.SIGKILL,
		},
	})
	if err != nil {
		// Not an internal error: the program could not be started (ENOENT,
		// EACCES, ENOEXEC...). Report it like a shell does: exit 127/126.
		code := 126
		if err == syscall.ENOENT {
			code = 127
		}
		fmt.Fprintf(os.Stderr, "runbox: cannot execute %s: %v\n", c.Argv[0], err)
		_ = enc.Encode(initMsg{Started: true})
		_ = enc.Encode(initMsg{Exited: true, Status: uint32(code << 8)})
		return
	}
	// Our own copies of the program's pipes must not keep them open.
	for fd := 0; fd <= 2; fd++ {
		_ = unix.Close(fd)
	}
	_ = enc.Encode(initMsg{Started: true})
	for {
		var ws syscall.WaitStatus
		// As pid 1 we also reap the program's orphans.
		wpid, err := syscall.Wait4(-1, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			fail(fmt.Errorf("wait: %w", err))
		}
		if wpid == pid {
			_ = enc.Encode(initMsg{Exited: true, Status: uint32(ws)})
			return // exit: the kernel kills the rest of the namespace
		}
	}
}

// dropPrivileges sets the rlimits and empties the capability bounding,
// ambient and inheritable sets, so that the program, once setuid to a
// non-root id, has and can regain no capability (setuid binaries are
// neutralised by nosuid mounts and no_new_privs as well).
func dropPrivileges(c *jailConfig) error {
	for _, r := range c.Rlimits {
		lim := unix.Rlimit{Cur: r.Value, Max: r.Value}
		if err := unix.Setrlimit(r.Resource, &lim); err != nil {
			return fmt.Errorf("setrlimit %d: %w", r.Resource, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient caps: %w", err)
	}
	for capb := 0; ; capb++ {
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
