package sandbox

// The seccomp filter of every jailed program: a deny-list (default allow)
// of the syscalls a judged program never needs and that widen the kernel's
// attack surface or open channels out of the jail. Built with
// go-seccomp-bpf; we add the architecture check ourselves because the
// library's own check falls through to the default action (allow) for a
// foreign architecture, which would let i386 syscalls (int 0x80) bypass
// the list. The library already returns ENOSYS for the x32 ABI.

import (
	"fmt"
	"unsafe"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// deniedSyscalls fail with EPERM.
var deniedSyscalls = []string{
	// mounts and root changes, including the new mount API
	"mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount",
	"fspick", "move_mount", "open_tree", "mount_setattr",
	// namespaces
	"unshare", "setns",
	// other processes' memory
	"ptrace", "process_vm_readv", "process_vm_writev",
	// kernel-wide state
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	"reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog",
	"iopl", "ioperm", "vhangup", "lookup_dcookie",
	// attack surface and cross-jail channels
	"bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	"open_by_handle_at", "name_to_handle_at",
}

const (
	cloneNewMask = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
		unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP
	auditArchX86_64 = 0xc000003e
	// struct seccomp_data offsets: nr, arch, the low half of args[0]
	// (little-endian).
	seccompNrOffset   = 0
	seccompArchOffset = 4
	seccompArg0Offset = 16
)

// seccompPolicy is the deny-list policy for the native architecture. The
// group with argument conditions must stay last: when they fail, the
// library's code leaves the argument, not the syscall number, in the
// accumulator, and any check after them would compare against it.
func seccompPolicy() seccomp.Policy {
	eperm := seccomp.ActionErrno // the library adds EPERM
	return seccomp.Policy{
		DefaultAction: seccomp.ActionAllow,
		Syscalls: []seccomp.SyscallGroup{
			{Names: deniedSyscalls, Action: eperm},
			{
				// Extended attributes on tmpfs take their space from a pool
				// per inode, outside the mount's size: 24 MiB more than
				// the scratch limit. EOPNOTSUPP is what a file system
				// without them answers, and what copy tools ignore.
				Names:  []string{"setxattr", "lsetxattr", "fsetxattr", "setxattrat"},
				Action: seccomp.Action(unix.SECCOMP_RET_ERRNO | uint32(unix.EOPNOTSUPP)),
			},
			{
				// clone3 passes its flags in memory, where BPF cannot look:
				// ENOSYS makes glibc fall back to clone, which we can check.
				Names:  []string{"clone3"},
				Action: seccomp.Action(unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)),
			},
			{
				Action: eperm,
				NamesWithCondtions: []seccomp.NameWithConditions{
					// clone(flags, ...) with any CLONE_NEW* flag.
					{Name: "clone", Conditions: seccomp.ArgumentConditions{
						{Argument: 0, Operation: seccomp.BitsSet, Value: cloneNewMask},
					}},
					// socket(family, ...) for anything but unix, inet, inet6.
					{Name: "socket", Conditions: seccomp.ArgumentConditions{
						{Argument: 0, Operation: seccomp.NotEqual, Value: unix.AF_UNIX},
						{Argument: 0, Operation: seccomp.NotEqual, Value: unix.AF_INET},
						{Argument: 0, Operation: seccomp.NotEqual, Value: unix.AF_INET6},
					}},
					// socketpair for anything but unix: the kernel creates
					// both sockets before it fails for other families, so
					// this would create inet sockets the report never sees
					// (see watchSockets), and netlink or vsock ones.
					{Name: "socketpair", Conditions: seccomp.ArgumentConditions{
						{Argument: 0, Operation: seccomp.NotEqual, Value: unix.AF_UNIX},
					}},
					// personality: only the query (0xffffffff) and PER_LINUX.
					{Name: "personality", Conditions: seccomp.ArgumentConditions{
						{Argument: 0, Operation: seccomp.NotEqual, Value: 0},
						{Argument: 0, Operation: seccomp.NotEqual, Value: 0xffffffff},
					}},
				},
			},
		},
	}
}

// seccompProgram assembles the full filter: architecture check first.
// With watchInet, creating an AF_INET or AF_INET6 socket is reported to
// the init first (a user notification, see watchSockets), which lets it
// proceed; the network namespace is then not kept for the next step.
func seccompProgram(watchInet bool) ([]unix.SockFilter, error) {
	p := seccompPolicy()
	insts, err := p.Assemble()
	if err != nil {
		return nil, err
	}
	head := []bpf.Instruction{
		bpf.LoadAbsolute{Off: seccompArchOffset, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: auditArchX86_64, SkipTrue: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_KILL_PROCESS},
	}
	if watchInet {
		head = append(head,
			bpf.LoadAbsolute{Off: seccompNrOffset, Size: 4},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.SYS_SOCKET, SkipTrue: 4},
			// The family is an int: the kernel reads the low half only.
			bpf.LoadAbsolute{Off: seccompArg0Offset, Size: 4},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_INET, SkipTrue: 1},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.AF_INET6, SkipTrue: 1},
			bpf.RetConstant{Val: unix.SECCOMP_RET_USER_NOTIF},
		)
	}
	raw, err := bpf.Assemble(append(head, insts...))
	if err != nil {
		return nil, err
	}
	out := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		out[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return out, nil
}

// installSeccomp sets no_new_privs and loads the filter on the calling
// thread only (no TSYNC: the init's other threads keep remounting between
// steps); the program, forked from this thread, inherits both. With
// listener it returns the filter's user-notification fd (close-on-exec),
// else -1.
func installSeccomp(prog []unix.SockFilter, listener bool) (int, error) {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return -1, fmt.Errorf("no_new_privs: %w", err)
	}
	var flags uintptr
	if listener {
		flags = unix.SECCOMP_FILTER_FLAG_NEW_LISTENER
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	fd, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return -1, fmt.Errorf("seccomp: %w", errno)
	}
	if !listener {
		return -1, nil
	}
	return int(fd), nil
}
