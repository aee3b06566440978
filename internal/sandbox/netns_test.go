package sandbox

import (
	"strings"
	"testing"
)

// nsRun runs a python script in the jail of s's pool of one, once it is
// back in the pool, and returns the inode of the run's network namespace
// and its output.
func nsRun(t *testing.T, s *Sandbox, script string, args ...string) (string, string) {
	t.Helper()
	waitIdle(t, s)
	// The inode number alone can name two namespaces in turn (the kernel
	// reuses the number of a freed one); the cookie (SO_NETNS_COOKIE, Linux
	// 5.14) is never reused. A unix socket leaves the namespace unused.
	prog := `import os, socket
try:
    with socket.socket(socket.AF_UNIX) as u:
        cookie = u.getsockopt(socket.SOL_SOCKET, 71, 8).hex()
except OSError:
    cookie = ''
print(os.readlink('/proc/self/ns/net'), cookie, flush=True)
` + script
	argv := append([]string{"/usr/bin/python3", "-c", prog}, args...)
	r := run(t, s, Request{Run: Step{Argv: argv, Limits: defLimits()}, Env: testEnv})
	if r.Outcome != OutcomeOK {
		t.Fatalf("%s", describe(r))
	}
	ns, rest, _ := strings.Cut(string(r.Stdout), "\n")
	return ns, rest
}

// TestNetnsKeptOnlyWhenUntouched: a pooled jail's next run gets the
// network namespace of its previous run only if that run left no trace in
// it; after any use of the network, the next run has a new namespace and
// nothing of the earlier one (TIME_WAIT sockets, counters, flow labels,
// sockets kept alive in flight) reaches it.
func TestNetnsKeptOnlyWhenUntouched(t *testing.T) {
	s := newPoolSandbox(t)
	pid := waitIdle(t, s)
	// What a run can read of earlier traffic: every per-namespace socket
	// and the TCP/UDP counters.
	check := `
import socket, sys
snmp = open('/proc/net/snmp').read().split('\n')
for proto in ('Tcp:', 'Udp:'):
    names, values = [l.split() for l in snmp if l.startswith(proto)]
    v = dict(zip(names[1:], values[1:]))
    print(proto, v.get('ActiveOpens', '-'), v.get('InDatagrams', '-'), v.get('OutDatagrams', '-'))
print('tcp', len(open('/proc/net/tcp').read().splitlines()) - 1)
lo = [l.split() for l in open('/proc/net/dev') if l.strip().startswith('lo:')][0]
print('lo', lo[1], lo[9])
try:
    print('flowlabels', len(open('/proc/net/ip6_flowlabel').read().splitlines()) - 1)
except FileNotFoundError:
    print('flowlabels 0')
u = socket.socket(socket.AF_UNIX)
try:
    u.connect('\0runbox-netns-leak'); print('abstract socket alive')
except OSError:
    pass
if len(sys.argv) > 1:
    try:
        socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=2); print('listener alive')
    except ConnectionRefusedError:
        print('listener gone')
`
	const pristine = "Tcp: 0 - -\nUdp: - 0 0\ntcp 0\nlo 0 0\nflowlabels 0\n"
	first, _ := nsRun(t, s, "")
	kept, out := nsRun(t, s, check)
	if kept != first {
		t.Errorf("an untouched network namespace was not kept (%s, then %s)", first, kept)
	}
	if out != pristine {
		t.Errorf("untouched namespace:\n%s", out)
	}
	for _, c := range []struct {
		name, script string
		collectable  bool
	}{
		{"TCP over lo, leaving TIME_WAIT", `
import socket
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()
c = socket.create_connection(srv.getsockname()); a, _ = srv.accept()
c.close(); a.close(); srv.close()
`, false},
		{"a hundred sockets, no traffic", `
import socket
for i in range(100):
    socket.socket(socket.AF_INET6 if i % 2 else socket.AF_INET, socket.SOCK_DGRAM).close()
`, false},
		// Found by an audit of an earlier version that kept a namespace
		// whenever /proc/net read as fresh: the reports of a multicast
		// group left at exit go out on a timer, after the check.
		{"multicast joined at exit", `
import socket, struct
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton('239.1.2.3') + struct.pack('=II', 0, 1))
os._exit(0)
`, false},
		{"UDP to itself", `
import socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 0))
u.sendto(b'x', u.getsockname()); u.recv(1)
`, false},
		{"IPv6 flow label with a linger time", `
import socket, struct
s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
# struct in6_flowlabel_req: dst, label (big-endian), then action GET,
# share ANY, flags CREATE, expires, linger 60 s, pad (host order)
req = (socket.inet_pton(socket.AF_INET6, '::1') + struct.pack('!I', 0x12345) +
       struct.pack('=BBHHHI', 0, 255, 1, 0, 60, 0))
try:
    s6.setsockopt(socket.IPPROTO_IPV6, 32, req)
except OSError as e:
    print('no flow label:', e)
s6.close()
`, false},
		{"a listener kept alive in flight", `
import socket
a, b = socket.socketpair()
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()
print(l.getsockname()[1])
# l and b into b's own queue: a cycle only the kernel's unix GC frees.
socket.send_fds(a, [b'x'], [l.fileno(), b.fileno()])
`, false},
		// No inet socket: only the /proc/net check can see it, and only
		// while the kernel's unix GC has not yet freed the cycle. A kept
		// namespace is then right if the next run finds nothing.
		{name: "an abstract unix socket kept alive in flight", collectable: true, script: `
import socket
a, b = socket.socketpair()
u = socket.socket(socket.AF_UNIX); u.bind('\0runbox-netns-leak'); u.listen()
socket.send_fds(a, [b'x'], [u.fileno(), b.fileno()])
`},
	} {
		t.Run(c.name, func(t *testing.T) {
			used, out := nsRun(t, s, c.script)
			if strings.HasPrefix(out, "no flow label") {
				t.Skip(out)
			}
			var args []string
			if port := strings.TrimSpace(out); port != "" {
				args = append(args, port)
			}
			next, got := nsRun(t, s, check, args...)
			if next == used && !c.collectable {
				t.Errorf("the namespace the run used (%s) was kept", used)
			}
			want := pristine
			if len(args) > 0 {
				want += "listener gone\n"
			}
			if got != want {
				t.Errorf("the next run reads:\n%s\nwant:\n%s", got, want)
			}
			// Kept again from now on (the check itself may have used the
			// network).
			a, _ := nsRun(t, s, "")
			if b, _ := nsRun(t, s, ""); a != b {
				t.Errorf("an untouched namespace was not kept (%s, then %s)", a, b)
			}
		})
	}
	if p := waitIdle(t, s); p != pid {
		t.Fatalf("the jail was not reused (%d, then %d): the test ran on several", pid, p)
	}
}

func TestSockstatOwn(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{
			"sockets: used 3\nTCP: inuse 1 orphan 4 tw 2 alloc 9 mem 7\nUDP: inuse 0 mem 12\nUDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n",
			"sockets: used 3\nTCP: inuse 1 tw 2\nUDP: inuse 0\nUDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n",
		},
		{"", ""},
		{"TCP: inuse 0 orphan 1\n", "TCP: inuse 0\n"},
	} {
		if got := string(sockstatOwn([]byte(c.in))); got != c.want {
			t.Errorf("sockstatOwn(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
