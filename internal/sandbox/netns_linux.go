package sandbox

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A jail keeps the network namespace of its last step for the next one
// when that step created no inet socket. Creating a network namespace, and
// the kernel's tearing it down afterwards, is the costliest part of a
// step's set-up (0.9 ms of CPU, 6 % of a sandboxed python hello world,
// most of it registering and unregistering the namespace's sysctl tables
// and lo), and almost no run opens a socket.
//
// A program without capabilities cannot configure the namespace (its
// interfaces, routes, sysctls and netfilter rules need CAP_NET_ADMIN over
// it); it can change it only through sockets. Not all of what inet
// sockets leave behind shows anywhere: multicast reports still queued on a
// timer after the group was left, a flag the kernel sets for good once an
// exclusive IPv6 flow label existed, cached routes. (An audit found both
// of the first two with an earlier version, which kept the namespace
// whenever /proc/net read as it did fresh.) So the filter of every step
// reports each socket(AF_INET or AF_INET6) to the init before the kernel
// creates it (a seccomp user notification, see watchSockets), and a
// namespace in which one was created is never used again. Unix sockets,
// the only other family the filter allows, leave nothing behind once
// closed; one still alive (a socket passed in flight in a cycle that only
// the kernel's unix GC frees, or the abstract name it holds) shows in
// /proc/net, and so does anything else, should the notification be missed:
// before a step uses the kept namespace, the launcher also compares
// netnsFiles with what they read when it was new. What a later run can
// still learn is the namespace's identity (its inode, SO_NETNS_COOKIE):
// that an earlier run of the same jail opened no inet socket, as it can
// already tell from the jail's mount and pid namespaces that runs came
// before it.
type keptNetns struct {
	fd int // the namespace (an open /proc/thread-self/ns/net)
	// files are netnsFiles, opened in the namespace (-1: absent). A
	// /proc/net file stays bound to the namespace it was opened in, and
	// reading it again from offset 0 shows it anew: the check costs no
	// path lookups (opening them each time was half its cost).
	files []int
	fresh []byte // netnsState when it was new
	// used: a program created an inet socket in it (or nothing watched).
	used atomic.Bool
}

func (k *keptNetns) close() {
	_ = unix.Close(k.fd)
	for _, fd := range k.files {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
	}
}

// netnsFiles are the /proc/net files compared (those a kernel lacks, e.g.
// the IPv6 ones without IPv6, read as absent both times).
var netnsFiles = []string{
	"sockstat", "sockstat6", // live and TIME_WAIT sockets (see sockstatOwn)
	"unix",                                  // unix sockets, abstract names included
	"dev",                                   // lo's packet counters
	"snmp", "snmp6", "netstat", "rt6_stats", // protocol counters, cached IPv6 routes
	"ip6_flowlabel",                          // flow labels, which outlive their socket
	"igmp", "igmp6", "mcfilter", "mcfilter6", // multicast memberships and filters
}

// openNetnsFiles opens netnsFiles in the calling thread's network
// namespace.
func openNetnsFiles() ([]int, error) {
	files := make([]int, len(netnsFiles))
	for i, name := range netnsFiles {
		fd, err := unix.Open("/proc/thread-self/net/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		switch {
		case err == unix.ENOENT:
			fd = -1
		case err != nil:
			for _, fd := range files[:i] {
				if fd >= 0 {
					_ = unix.Close(fd)
				}
			}
			return nil, fmt.Errorf("network namespace state: %s: %w", name, err)
		}
		files[i] = fd
	}
	return files, nil
}

// netnsState returns what a network namespace shows of what programs did
// in it: the contents of netnsFiles (opened in it), in order.
func netnsState(files []int) ([]byte, error) {
	var out bytes.Buffer
	buf := make([]byte, 16<<10)
	for i, fd := range files {
		out.WriteString(netnsFiles[i])
		out.WriteByte('\n')
		if fd < 0 {
			out.WriteString("absent\n")
			continue
		}
		b, err := preadAll(fd, buf)
		if err != nil {
			return nil, fmt.Errorf("network namespace state: %s: %w", netnsFiles[i], err)
		}
		if netnsFiles[i] == "sockstat" {
			b = sockstatOwn(b)
		}
		out.Write(b)
	}
	return out.Bytes(), nil
}

// preadAll reads a whole (small) procfs file from its start into buf,
// which it grows if needed, and returns the bytes read.
func preadAll(fd int, buf []byte) ([]byte, error) {
	n := 0
	for {
		if n == len(buf) {
			buf = append(buf, make([]byte, len(buf))...)
		}
		m, err := unix.Pread(fd, buf[n:], int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m == 0 {
			return buf[:n], nil
		}
		n += m
	}
}

// sockstatOwn keeps the figures of /proc/net/sockstat that belong to the
// namespace (sockets in use, TIME_WAIT, fragments) and drops the ones
// the kernel counts for the whole host (orphans, allocations, memory),
// which change with the host's own traffic.
func sockstatOwn(b []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		out = append(out, f[0]...)
		for i := 1; i+1 < len(f); i += 2 {
			switch string(f[i]) {
			case "orphan", "alloc", "mem":
				continue
			}
			out = append(out, ' ')
			out = append(out, f[i]...)
			out = append(out, ' ')
			out = append(out, f[i+1]...)
		}
		out = append(out, '\n')
	}
	return out
}

// enterNetns puts the calling thread (a launcher being prepared) in the
// network namespace of the next step: the kept one if no inet socket was
// created in it and it reads as fresh, else a new one with lo up, which
// is kept instead.
func (st *initState) enterNetns() error {
	if k := st.net; k != nil {
		st.net = nil
		if !k.used.Load() {
			if cur, err := netnsState(k.files); err == nil && bytes.Equal(cur, k.fresh) &&
				unix.Setns(k.fd, unix.CLONE_NEWNET) == nil {
				st.net = k
				return nil
			}
		}
		k.close()
	}
	k, err := newNetns()
	if err != nil {
		return err
	}
	st.net = k
	return nil
}

// newNetns puts the calling thread in a new network namespace with lo up.
func newNetns() (*keptNetns, error) {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("unshare: %w", err)
	}
	if err := loopbackUp(); err != nil {
		return nil, err
	}
	fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	k := &keptNetns{fd: fd}
	if k.files, err = openNetnsFiles(); err == nil {
		k.fresh, err = netnsState(k.files)
	}
	if err != nil {
		k.close()
		return nil, err
	}
	return k, nil
}

// canWatchSockets reports whether the kernel can report a program's
// sockets to the init and let them proceed (SECCOMP_USER_NOTIF_FLAG_CONTINUE,
// Linux 5.5) and say when no program is left to report (EPOLLHUP on the
// notification fd, Linux 5.8).
func canWatchSockets() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	major, minor, ok := parseKernelRelease(unix.ByteSliceToString(u.Release[:]))
	return ok && (major > 5 || major == 5 && minor >= 8)
}

// parseKernelRelease reads "6.18.44-foo" as 6, 18.
func parseKernelRelease(r string) (major, minor int, ok bool) {
	a, rest, ok1 := strings.Cut(r, ".")
	b := rest[:len(rest)-len(strings.TrimLeft(rest, "0123456789"))]
	major, err1 := strconv.Atoi(a)
	minor, err2 := strconv.Atoi(b)
	return major, minor, ok1 && err1 == nil && err2 == nil
}

// seccompNotif and seccompNotifResp are the kernel's struct seccomp_notif
// and struct seccomp_notif_resp.
type seccompNotif struct {
	ID    uint64
	PID   uint32
	Flags uint32
	Data  struct {
		Nr   int32
		Arch uint32
		IP   uint64
		Args [6]uint64
	}
}

type seccompNotifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

// watchSockets serves the user notifications of a launcher's filter (fd):
// each is a program creating an AF_INET or AF_INET6 socket, which marks
// net used before the kernel goes on with the call as if unfiltered (the
// call's arguments are registers, so nothing can change under us between
// the report and the call). It returns once no task uses the filter (the
// launcher's thread and every program forked from it are gone), and
// holds an OS thread until then (see spareInitThreads).
func watchSockets(fd int, net *keptNetns) {
	go func() {
		defer unix.Close(fd)
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(pfd, -1); err == unix.EINTR {
				continue
			} else if err != nil {
				net.used.Store(true)
				return
			}
			if pfd[0].Revents&unix.POLLIN == 0 {
				return // EPOLLHUP: nothing uses the filter any more
			}
			var n seccompNotif
			_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_RECV, uintptr(unsafe.Pointer(&n)))
			switch errno {
			case 0:
			case unix.EINTR, unix.ENOENT: // ENOENT: the caller died meanwhile
				continue
			default:
				net.used.Store(true)
				return
			}
			net.used.Store(true)
			resp := seccompNotifResp{ID: n.ID, Flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE}
			// ENOENT if the caller died meanwhile: nothing to do.
			_, _, _ = unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_SEND, uintptr(unsafe.Pointer(&resp)))
		}
	}()
}
