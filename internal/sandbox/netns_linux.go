package sandbox

import (
	"bytes"
	"fmt"

	"golang.org/x/sys/unix"
)

// A jail keeps the network namespace of its last step for the next one,
// but only while nothing in it tells it from a fresh one. Creating a
// network namespace, and the kernel's tearing it down afterwards, is the
// costliest part of a step's set-up (0.9 ms of CPU, 6 % of a sandboxed
// python hello world, most of it registering and unregistering the
// namespace's sysctl tables and lo), and almost no run ever opens a socket.
//
// A program without capabilities cannot configure the namespace (its
// interfaces, routes, sysctls and netfilter rules need CAP_NET_ADMIN over
// it); all it can change is through sockets, and what it leaves behind
// once its processes are dead shows in /proc/net: sockets still alive
// (passed around in flight, or lingering) and TIME_WAIT ones in the
// per-namespace socket counts, traffic over lo in its packet counters and
// the protocol counters (a send that found no route counts too), IPv6 flow
// labels with their linger time, multicast memberships. So before a step
// uses the kept namespace, the launcher reads those files in it and
// compares them byte for byte with what they read when the namespace was
// new; any difference, or any error, and the step gets a fresh one, which
// is kept in turn. What a later run can still learn is the namespace's
// identity (its inode, SO_NETNS_COOKIE): that it is the namespace of an
// earlier run of the same jail which left no trace, as it can already
// tell of the jail's mount and pid namespaces.
type keptNetns struct {
	fd int // the namespace (an open /proc/thread-self/ns/net)
	// files are netnsFiles, opened in the namespace (-1: absent). A
	// /proc/net file stays bound to the namespace it was opened in, and
	// reading it again from offset 0 shows it anew: the check costs no
	// path lookups (opening them each time was half its cost).
	files []int
	fresh []byte // netnsState when it was new
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
// network namespace of the next step: the kept one while it reads as
// fresh, else a new one with lo up, which is kept instead.
func (st *initState) enterNetns() error {
	if k := st.net; k != nil {
		st.net = nil
		if cur, err := netnsState(k.files); err == nil && bytes.Equal(cur, k.fresh) &&
			unix.Setns(k.fd, unix.CLONE_NEWNET) == nil {
			st.net = k
			return nil
		}
		k.close()
	}
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	if err := loopbackUp(); err != nil {
		return err
	}
	fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("network namespace: %w", err)
	}
	k := &keptNetns{fd: fd}
	if k.files, err = openNetnsFiles(); err == nil {
		k.fresh, err = netnsState(k.files)
	}
	if err != nil {
		k.close()
		return err
	}
	st.net = k
	return nil
}
