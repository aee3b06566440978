package sandbox

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

func TestSeccompProgram(t *testing.T) {
	prog, err := seccompProgram(true)
	if err != nil {
		t.Fatal(err)
	}
	if len(prog) < 10 || len(prog) > 4096 {
		t.Fatalf("program length %d", len(prog))
	}
	// The first instructions are our architecture check: load arch, allow
	// x86_64 to continue, kill anything else.
	if prog[0].K != seccompArchOffset || prog[1].K != auditArchX86_64 || prog[2].K != unix.SECCOMP_RET_KILL_PROCESS {
		t.Errorf("arch check missing: %+v", prog[:3])
	}
	// Every denied name must be known to the library for this arch
	// (Assemble fails otherwise) and listed once.
	seen := map[string]bool{}
	for _, n := range deniedSyscalls {
		if seen[n] {
			t.Errorf("duplicate %s", n)
		}
		seen[n] = true
	}
	for _, must := range []string{"mount", "unshare", "setns", "ptrace", "bpf", "keyctl", "io_uring_setup", "perf_event_open", "userfaultfd"} {
		if !seen[must] {
			t.Errorf("%s not denied", must)
		}
	}
}

// TestSeccompVerdicts runs the assembled filters (with and without the
// report of inet sockets) in a BPF interpreter, so that the verdict for a
// foreign architecture is proven even on kernels where int 0x80 never
// reaches seccomp (see TestVerdicts).
func TestSeccompVerdicts(t *testing.T) {
	vms := map[bool]*bpf.VM{}
	for _, watch := range []bool{false, true} {
		prog, err := seccompProgram(watch)
		if err != nil {
			t.Fatal(err)
		}
		insts := make([]bpf.Instruction, len(prog))
		for i, f := range prog {
			insts[i] = bpf.RawInstruction{Op: f.Code, Jt: f.Jt, Jf: f.Jf, K: f.K}.Disassemble()
		}
		if vms[watch], err = bpf.NewVM(insts); err != nil {
			t.Fatal(err)
		}
	}
	const (
		auditArchI386 = 0x40000003
		x32Bit        = 0x40000000
		allow         = unix.SECCOMP_RET_ALLOW
		eperm         = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
		enosys        = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
		kill          = unix.SECCOMP_RET_KILL_PROCESS
		notify        = unix.SECCOMP_RET_USER_NOTIF
	)
	for _, c := range []struct {
		name    string
		arch    uint32
		nr      uint32
		args    []uint64
		want    uint32
		watched uint32 // the verdict of the watching filter, if not want
	}{
		{"getpid", auditArchX86_64, unix.SYS_GETPID, nil, allow, 0},
		{"i386 getpid", auditArchI386, 20, nil, kill, 0},
		{"i386 mount", auditArchI386, 21, nil, kill, 0},
		{"mount", auditArchX86_64, unix.SYS_MOUNT, nil, eperm, 0},
		{"unshare", auditArchX86_64, unix.SYS_UNSHARE, []uint64{unix.CLONE_NEWNET}, eperm, 0},
		{"x32 getpid", auditArchX86_64, x32Bit | unix.SYS_GETPID, nil, enosys, 0},
		{"clone3", auditArchX86_64, unix.SYS_CLONE3, nil, enosys, 0},
		{"clone for fork", auditArchX86_64, unix.SYS_CLONE, []uint64{uint64(unix.SIGCHLD)}, allow, 0},
		{"clone with a new netns", auditArchX86_64, unix.SYS_CLONE, []uint64{unix.CLONE_NEWNET | uint64(unix.SIGCHLD)}, eperm, 0},
		{"clone with a new user ns", auditArchX86_64, unix.SYS_CLONE, []uint64{unix.CLONE_NEWUSER}, eperm, 0},
		{"socket inet", auditArchX86_64, unix.SYS_SOCKET, []uint64{unix.AF_INET}, allow, notify},
		{"socket inet6", auditArchX86_64, unix.SYS_SOCKET, []uint64{unix.AF_INET6, unix.SOCK_STREAM}, allow, notify},
		// The kernel reads the family as an int: reported all the same.
		{"socket inet, high bits set", auditArchX86_64, unix.SYS_SOCKET, []uint64{1<<32 | unix.AF_INET}, eperm, notify},
		{"socket unix", auditArchX86_64, unix.SYS_SOCKET, []uint64{unix.AF_UNIX}, allow, 0},
		{"socket netlink", auditArchX86_64, unix.SYS_SOCKET, []uint64{unix.AF_NETLINK}, eperm, 0},
		{"socketpair unix", auditArchX86_64, unix.SYS_SOCKETPAIR, []uint64{unix.AF_UNIX, unix.SOCK_STREAM}, allow, 0},
		{"socketpair inet", auditArchX86_64, unix.SYS_SOCKETPAIR, []uint64{unix.AF_INET, unix.SOCK_STREAM}, eperm, 0},
		{"socketpair netlink", auditArchX86_64, unix.SYS_SOCKETPAIR, []uint64{unix.AF_NETLINK}, eperm, 0},
		{"personality PER_LINUX", auditArchX86_64, unix.SYS_PERSONALITY, []uint64{0}, allow, 0},
		{"socket packet", auditArchX86_64, unix.SYS_SOCKET, []uint64{unix.AF_PACKET}, eperm, 0},
		{"personality query", auditArchX86_64, unix.SYS_PERSONALITY, []uint64{0xffffffff}, allow, 0},
		{"personality change", auditArchX86_64, unix.SYS_PERSONALITY, []uint64{0x0040000}, eperm, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			// struct seccomp_data as the kernel lays it out on x86_64, each
			// 32-bit word big-endian because that is how the interpreter
			// loads (the kernel loads native words).
			data := make([]byte, 64)
			binary.BigEndian.PutUint32(data[0:], c.nr)
			binary.BigEndian.PutUint32(data[4:], c.arch)
			for i, a := range c.args {
				binary.BigEndian.PutUint32(data[16+8*i:], uint32(a))
				binary.BigEndian.PutUint32(data[16+8*i+4:], uint32(a>>32))
			}
			for watch, vm := range vms {
				want := c.want
				if watch && c.watched != 0 {
					want = c.watched
				}
				got, err := vm.Run(data)
				if err != nil {
					t.Fatal(err)
				}
				if uint32(got) != want {
					t.Errorf("watching %v: verdict %#x, want %#x", watch, uint32(got), want)
				}
			}
		})
	}
}

func TestDetectCgroupVersion(t *testing.T) {
	mk := func(files ...string) string {
		d := t.TempDir()
		for _, f := range files {
			p := filepath.Join(d, f)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			content := ""
			if filepath.Base(f) == "cgroup.controllers" {
				content = "cpuset cpu io memory hugetlb pids rdma misc\n"
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	if v, err := detectCgroupVersion(mk("cgroup.controllers")); v != 2 || err != nil {
		t.Errorf("v2: %d %v", v, err)
	}
	// Hybrid: an empty unified mount does not count; v1 controllers do.
	hybrid := mk("memory/cgroup.procs", "pids/cgroup.procs", "cpuacct/cgroup.procs", "unified/cgroup.procs")
	if err := os.WriteFile(filepath.Join(hybrid, "cgroup.controllers"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if v, err := detectCgroupVersion(hybrid); v != 1 || err != nil {
		t.Errorf("v1: %d %v", v, err)
	}
	if _, err := detectCgroupVersion(mk("memory/cgroup.procs")); err == nil {
		t.Error("missing pids accepted")
	}
	if v, err := detectCgroupVersion(cgroupRoot); err != nil || v == 0 {
		t.Errorf("this host: %d %v", v, err)
	}
}

func TestCgroupFileParsing(t *testing.T) {
	events := []byte("low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n")
	if n, ok := parseKeyed(events, "oom_kill"); !ok || n != 1 {
		t.Errorf("memory.events oom_kill = %d %v", n, ok)
	}
	oomControl := []byte("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
	if n, ok := parseKeyed(oomControl, "oom_kill"); !ok || n != 3 {
		t.Errorf("memory.oom_control oom_kill = %d %v", n, ok)
	}
	cpuStat := []byte("usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\nnr_periods 0\n")
	if d, err := parseCPUStatV2(cpuStat); err != nil || d != 1234567*time.Microsecond {
		t.Errorf("cpu.stat = %v %v", d, err)
	}
	if _, err := parseCPUStatV2([]byte("user_usec 1\n")); err == nil {
		t.Error("cpu.stat without usage_usec accepted")
	}
	if n := memTotalKiB([]byte("MemTotal:       24683620 kB\nMemFree:  1 kB\n")); n != 24683620 {
		t.Errorf("MemTotal = %d", n)
	}
	if p := parsePids([]byte("12\n345\n\n")); len(p) != 2 || p[0] != 12 || p[1] != 345 {
		t.Errorf("cgroup.procs = %v", p)
	}
	d := t.TempDir()
	for name, v := range map[string]string{"memory.peak": "4096\n", "pids.max": "max\n"} {
		if err := os.WriteFile(filepath.Join(d, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, v := range map[string]string{"memory.stat": "anon 8192\nfile 4096\nshmem 65536\n", "memory.limit_in_bytes": "max\n"} {
		if err := os.WriteFile(filepath.Join(d, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := &stepV2{dir: d, fd: -1}
	if s.shmem() != 65536 {
		t.Errorf("memory.stat shmem = %d", s.shmem())
	}
	// The jails' cap: half the host's RAM by default, else as configured.
	limit := filepath.Join(d, "memory.limit_in_bytes")
	if err := capJails(limit, 0); err != nil {
		t.Fatal(err)
	}
	if capped, _ := readInt(limit); capped <= 0 || capped >= 1<<50 {
		t.Errorf("jails' default cap %d", capped)
	}
	if err := os.WriteFile(limit, []byte("max\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := capJails(limit, 3<<30); err != nil {
		t.Fatal(err)
	}
	if n, _ := readInt(limit); n != 3<<30 {
		t.Errorf("jails' cap %d, want 3 GiB", n)
	}
	if s.memoryPeak() != 4096 {
		t.Errorf("memory.peak = %d", s.memoryPeak())
	}
	if n, _ := readInt(filepath.Join(d, "pids.max")); n != -1 {
		t.Errorf("max = %d", n)
	}
}

func TestValidateRequest(t *testing.T) {
	good := sh("true", defLimits())
	if err := validateRequest(&good); err != nil {
		t.Fatal(err)
	}
	bad := []func(r *Request){
		func(r *Request) { r.Files = []File{{Name: "../x"}} },
		func(r *Request) { r.Files = []File{{Name: "a/b"}} },
		func(r *Request) { r.Files = []File{{Name: ".."}} },
		func(r *Request) { r.Run.Argv = []string{"sh"} },
		func(r *Request) { r.Run.Limits.Pids = 0 },
		func(r *Request) { r.ReadOnlyPaths = []string{"/"} },
		func(r *Request) { r.ReadOnlyPaths = []string{"/proc/1"} },
		func(r *Request) { r.ReadOnlyPaths = []string{"relative"} },
	}
	for i, f := range bad {
		r := sh("true", defLimits())
		f(&r)
		if err := validateRequest(&r); err == nil {
			t.Errorf("bad request %d accepted", i)
		}
	}
}

func TestParseCPUList(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
		bad  bool
	}{
		{in: "0", want: 1},
		{in: "0-1", want: 2},
		{in: "0-3,8,10-11", want: 7},
		{in: "", bad: true},
		{in: "x", bad: true},
		{in: "3-1", bad: true},
		{in: "0-", bad: true},
	} {
		n, err := parseCPUList(c.in)
		if (err != nil) != c.bad || n != c.want {
			t.Errorf("parseCPUList(%q) = %d, %v", c.in, n, err)
		}
	}
}

func TestNextCPUCheck(t *testing.T) {
	cpus := time.Duration(hostCPUs())
	for _, c := range []struct{ remaining, want time.Duration }{
		// The soonest the allowance can run out with every CPU busy.
		{remaining: 5 * time.Second, want: 5 * time.Second / cpus},
		// Never more often than the fixed poll.
		{remaining: cpuPollInterval, want: cpuPollInterval},
		{remaining: 0, want: cpuPollInterval},
	} {
		if got := nextCPUCheck(c.remaining); got != c.want {
			t.Errorf("nextCPUCheck(%v) = %v, want %v", c.remaining, got, c.want)
		}
	}
}

// TestPeakResettableV2: one cgroup per jail only where memory.peak is
// writable (Linux 6.12 and later); older v2 kernels get one per step.
func TestPeakResettableV2(t *testing.T) {
	d := t.TempDir()
	c := &cgroupV2{parent: d}
	if c.peakResettable() {
		t.Error("no memory.peak, yet resettable")
	}
	peak := filepath.Join(d, "memory.peak")
	for _, mode := range []os.FileMode{0o444, 0o644} {
		if err := os.WriteFile(peak, []byte("0\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(peak, mode); err != nil {
			t.Fatal(err)
		}
		if got, want := c.peakResettable(), mode == 0o644; got != want {
			t.Errorf("memory.peak mode %v: resettable %v", mode, got)
		}
	}
}

func TestParseKernelRelease(t *testing.T) {
	for _, c := range []struct {
		in           string
		major, minor int
		ok           bool
	}{
		{"6.18.44-fc-v595", 6, 18, true},
		{"5.8.0", 5, 8, true},
		{"5.4", 5, 4, true},
		{"4.19.0-25-amd64", 4, 19, true},
		{"5.10rc1", 5, 10, true},
		{"6", 0, 0, false},
		{"", 0, 0, false},
		{"x.y", 0, 0, false},
	} {
		major, minor, ok := parseKernelRelease(c.in)
		if ok != c.ok || ok && (major != c.major || minor != c.minor) {
			t.Errorf("parseKernelRelease(%q) = %d, %d, %v; want %d, %d, %v", c.in, major, minor, ok, c.major, c.minor, c.ok)
		}
	}
}
