package sandbox

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runbox/runbox/internal/testenv"
)

//go:embed testdata/hostile.c
var hostileC []byte

var testEnv = []string{"PATH=/usr/bin:/bin", "HOME=/box", "LANG=C.UTF-8"}

func defLimits() Limits {
	return Limits{WallTime: 5 * time.Second, CPUTime: 5 * time.Second, MemoryBytes: 256 << 20,
		Pids: 64, OutputBytes: 64 << 10, OutputKill: 1 << 20, ScratchBytes: 32 << 20, OpenFiles: 256, FileBytes: 16 << 20}
}

func compileLimits() Limits {
	l := defLimits()
	l.WallTime, l.MemoryBytes, l.Pids, l.CPUTime = 30*time.Second, 1<<30, 256, 30*time.Second
	return l
}

func newTestSandbox(t *testing.T) *Sandbox { return newSandbox(t, Config{}) }

// newSandbox is a Sandbox on a fresh directory, with debug logs when
// SANDBOX_DEBUG is set under -v; at the end of the test it checks that
// nothing of it is left and closes it. A sandbox that cannot be built (not
// root, no cgroups) skips the test, or fails it in CI.
func newSandbox(t *testing.T, cfg Config) *Sandbox {
	t.Helper()
	if testing.Verbose() && os.Getenv("SANDBOX_DEBUG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg.Dir = t.TempDir()
	s, err := New(cfg)
	testenv.Require(t, err == nil, fmt.Sprintf("a working sandbox (%v)", err))
	t.Cleanup(func() {
		assertClean(t, s)
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		assertClosed(t, s)
	})
	return s
}

// sh runs a shell script as the Run step.
func sh(script string, l Limits) Request {
	return Request{Run: Step{Argv: []string{"/bin/sh", "-c", script}, Limits: l}, Env: testEnv}
}

// cProg compiles testdata/hostile.c inside the jail and runs it with args.
func cProg(l Limits, args ...string) Request {
	return Request{
		Files:   []File{{Name: "hostile.c", Content: hostileC, Mode: 0o644}},
		Compile: &Step{Argv: []string{"/usr/bin/gcc", "-O1", "-o", "/box/hostile", "/box/hostile.c"}, Limits: compileLimits()},
		Run:     Step{Argv: append([]string{"/box/hostile"}, args...), Limits: l},
		Env:     testEnv,
	}
}

// hostServesI386Syscalls reports whether int 0x80 reaches the kernel at
// all, by running hostile.c's i386 mode on the host, outside any jail.
func hostServesI386Syscalls(t *testing.T) bool {
	t.Helper()
	dir := t.TempDir()
	src, bin := filepath.Join(dir, "hostile.c"), filepath.Join(dir, "hostile")
	if err := os.WriteFile(src, hostileC, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("/usr/bin/gcc", "-O1", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "i386").Output()
	if err == nil && strings.HasPrefix(string(out), "i386 syscall returned") {
		return true
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGSEGV {
			return false
		}
	}
	t.Fatalf("i386 probe on the host: %q %v", out, err)
	return false
}

func run(t *testing.T, s *Sandbox, req Request) *StepReport {
	t.Helper()
	rep, err := s.Execute(context.Background(), req)
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	if rep.Compile != nil && rep.Compile.Outcome != OutcomeOK {
		t.Fatalf("compile: %+v\n%s", rep.Compile.Outcome, rep.Compile.Stderr)
	}
	if rep.Run == nil {
		t.Fatal("no run report")
	}
	return rep.Run
}

func describe(r *StepReport) string {
	if r == nil {
		return "<nil>"
	}
	return string(r.Outcome) + " exit=" + strconv.Itoa(r.ExitCode) + " sig=" + r.Signal + " wall=" + r.WallTime.String() +
		" cpu=" + r.CPUTime.String() + "\nstdout: " + trunc(r.Stdout) + "\nstderr: " + trunc(r.Stderr)
}

func trunc(b []byte) string {
	if len(b) > 2000 {
		return string(b[:2000]) + "..."
	}
	return string(b)
}

// jailProcs lists host processes running as a jail's uid in a cgroup of s
// (other packages' tests may run jails at the same time).
func jailProcs(s *Sandbox) []string { return procsOf(s, isJailID) }

// templateProcs lists the host pids of the template interpreters of s's
// jails.
func templateProcs(s *Sandbox) []string { return procsOf(s, isTemplateID) }

// procsOf lists host processes in a cgroup of s whose real uid is one
// that ofUID accepts.
func procsOf(s *Sandbox, ofUID func(string) bool) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if uid := procUIDs(e.Name()); len(uid) > 0 && ofUID(uid[0]) {
			if cg, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup")); strings.Contains(string(cg), "/"+s.prefix) {
				out = append(out, e.Name())
			}
		}
	}
	return out
}

// assertClean checks the host after Execute returned: no process of the
// jail uid and no mount under Dir (the jails mount nothing on the host).
// Step cgroups are removed in the background; assertClosed checks them.
func assertClean(t *testing.T, s *Sandbox) {
	t.Helper()
	if p := jailProcs(s); len(p) > 0 {
		t.Errorf("leftover jail processes: %v", p)
	}
	if m := mountsUnder(s.dir); len(m) > 0 {
		t.Errorf("leftover mounts %v", m)
	}
}

// assertClosed checks the host after Close: nothing of s is left.
func assertClosed(t *testing.T, s *Sandbox) {
	t.Helper()
	assertClean(t, s)
	for _, d := range s.cg.parentDirs() {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), s.prefix) {
				t.Errorf("leftover cgroup %s/%s", d, e.Name())
			}
		}
	}
	if _, err := os.Stat(s.instDir); !os.IsNotExist(err) {
		t.Errorf("instance dir %s: %v", s.instDir, err)
	}
}

// isJailID reports whether a decimal uid is one of the jails' (see jailUIDBase).
func isJailID(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > jailUIDBase && n < templateUIDBase
}

// isTemplateID reports whether a decimal uid is one of the templates' (see
// templateUIDBase).
func isTemplateID(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > templateUIDBase
}
