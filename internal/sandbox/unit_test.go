package sandbox

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestSeccompProgram(t *testing.T) {
	prog, err := seccompProgram()
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
	if p := parsePids([]byte("12\n345\n\n")); len(p) != 2 || p[0] != 12 || p[1] != 345 {
		t.Errorf("cgroup.procs = %v", p)
	}
	d := t.TempDir()
	for name, v := range map[string]string{"memory.peak": "4096\n", "pids.max": "max\n"} {
		if err := os.WriteFile(filepath.Join(d, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := &stepV2{dir: d, fd: -1}
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
