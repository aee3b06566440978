package sandbox

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const sweepHelperEnv = "RUNBOX_SWEEP_HELPER_DIR"

// TestSweepHelper is not a test: TestSweepAfterCrash runs it in a child
// process, which starts a long run and is SIGKILLed in the middle of it.
func TestSweepHelper(t *testing.T) {
	dir := os.Getenv(sweepHelperEnv)
	if dir == "" {
		t.Skip("helper process only")
	}
	s, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("instance " + s.prefix + "\n")
	_, err = s.Execute(context.Background(), Request{
		Files: []File{{Name: "f", Content: []byte("x")}},
		Run:   Step{Argv: []string{"/bin/sleep", "60"}, Limits: defLimits()},
		Env:   testEnv,
	})
	t.Fatalf("the run was not killed: %v", err)
}

// TestSweepAfterCrash: a worker SIGKILLed mid-run leaves nothing behind
// once a new instance starts on the same Dir, and a live instance on the
// same Dir is never swept.
func TestSweepAfterCrash(t *testing.T) {
	live := newTestSandbox(t)
	dir := live.dir
	cmd := exec.Command(os.Args[0], "-test.run", "^TestSweepHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), sweepHelperEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "instance ") {
		t.Fatalf("helper said %q: %v", line, err)
	}
	dead := &Sandbox{prefix: strings.TrimSpace(strings.TrimPrefix(line, "instance ")), dir: dir, cg: live.cg}
	dead.instDir = filepath.Join(dir, dead.prefix)
	// Wait until the program runs.
	deadline := time.Now().Add(10 * time.Second)
	for len(jailProcs(dead)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the helper's run never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	// The live instance's periodic sweep must not touch itself; a new
	// instance on the same Dir sweeps the dead one.
	s2, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if p := jailProcs(dead); len(p) > 0 {
		t.Errorf("processes of the dead instance survive: %v", p)
	}
	for _, d := range live.cg.parentDirs() {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), dead.prefix) {
				t.Errorf("cgroup of the dead instance survives: %s/%s", d, e.Name())
			}
		}
	}
	if m := mountsUnder(dir); len(m) > 0 {
		t.Errorf("mounts survive under %s: %v", dir, m)
	}
	if _, err := os.Stat(dead.instDir); !os.IsNotExist(err) {
		t.Errorf("dead instance dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, dead.prefix+lockSuffix)); !os.IsNotExist(err) {
		t.Errorf("dead instance lock: %v", err)
	}
	// The live instances are untouched and still work.
	for _, s := range []*Sandbox{live, s2} {
		if _, err := os.Stat(s.instDir); err != nil {
			t.Errorf("live instance dir swept: %v", err)
		}
		if err := s.SelfCheck(context.Background()); err != nil {
			t.Errorf("live instance broken: %v", err)
		}
	}
	if err := s2.Close(); err != nil {
		t.Error(err)
	}
	if err := live.Close(); err != nil {
		t.Error(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Errorf("Dir not removable: %v", err)
	}
}
