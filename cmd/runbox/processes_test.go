package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runbox/runbox/internal/pgtest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds runbox once for the tests that run it as separate processes.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "runbox-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "runbox")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// proc is a runbox process whose JSON log lines are collected.
type proc struct {
	cmd         *exec.Cmd
	metricsAddr string
	mu          sync.Mutex
	logs        []map[string]any
	done        chan struct{}
}

func spawn(t *testing.T, sub string, env map[string]string) *proc {
	t.Helper()
	cmd := exec.Command(binary(t), sub)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "RUNBOX_LOG_LEVEL=info"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil {
				p.mu.Lock()
				p.logs = append(p.logs, line)
				p.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			p.mu.Lock()
			for _, l := range p.logs {
				if l["level"] == "WARN" || l["level"] == "ERROR" {
					t.Logf("%s %s: %v", sub, l["msg"], l)
				}
			}
			p.mu.Unlock()
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
		_ = cmd.Wait()
	})
	return p
}

// started returns the execution ids this process moved to RUNNING.
func (p *proc) started() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ids []string
	for _, l := range p.logs {
		if l["msg"] == "execution running" {
			ids = append(ids, fmt.Sprint(l["execution_id"]))
		}
	}
	return ids
}

func (p *proc) waitLog(t *testing.T, msg string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		for _, l := range p.logs {
			if l["msg"] == msg {
				p.mu.Unlock()
				return
			}
		}
		p.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %q log line", msg)
}

// splitDeployment migrates a fresh PostgreSQL database and starts one API
// process and the given number of worker processes on it.
func splitDeployment(t *testing.T, workers int, env map[string]string) (*server, []*proc) {
	t.Helper()
	requireRoot(t)
	base := map[string]string{
		"RUNBOX_DATABASE_URL":             pgtest.Database(t),
		"RUNBOX_DATA_DIR":                 t.TempDir(),
		"RUNBOX_WORKER_CONCURRENCY":       "2",
		"RUNBOX_RUN_RATE":                 "1000",
		"RUNBOX_RUN_BURST":                "1000",
		"RUNBOX_MAX_INFLIGHT_PER_SESSION": "100",
	}
	maps.Copy(base, env)
	m := exec.Command(binary(t), "migrate")
	m.Env = []string{"RUNBOX_DATABASE_URL=" + base["RUNBOX_DATABASE_URL"], "RUNBOX_DATA_DIR=" + base["RUNBOX_DATA_DIR"]}
	if out, err := m.CombinedOutput(); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	var ws []*proc
	for range workers {
		wenv := map[string]string{"RUNBOX_METRICS_ADDR": freeAddr(t)}
		maps.Copy(wenv, base)
		w := spawn(t, "worker", wenv)
		w.metricsAddr = wenv["RUNBOX_METRICS_ADDR"]
		w.waitLog(t, "workers started")
		ws = append(ws, w)
	}
	addr := freeAddr(t)
	apiEnv := map[string]string{"RUNBOX_HTTP_ADDR": addr}
	maps.Copy(apiEnv, base)
	a := spawn(t, "api", apiEnv)
	a.waitLog(t, "api listening")
	return &server{t: t, base: "http://" + addr}, ws
}

// TestSplitProcessesShareTheLoad: `runbox api` and two `runbox worker`
// processes on one PostgreSQL database; every run completes exactly once,
// and both workers take part.
func TestSplitProcessesShareTheLoad(t *testing.T) {
	s, ws := splitDeployment(t, 2, nil)
	sid := s.createSession("python", "import time\ntime.sleep(0.3)\nprint('ok')\n")
	var ids []string
	for range 12 {
		r := s.do("POST", "/code-sessions/"+sid+"/run", nil).expect(t, 202, "")
		ids = append(ids, r.body["execution_id"].(string))
	}
	for _, id := range ids {
		if e := s.wait(id); e["status"] != "COMPLETED" || e["attempts"] != 1.0 || e["stdout"] != "ok\n" {
			t.Fatalf("execution %s: %v", id, e)
		}
	}
	seen := map[string]int{}
	for i, w := range ws {
		ops := &server{t: t, base: "http://" + w.metricsAddr}
		ops.do("GET", "/readyz", nil).expect(t, 200, "")
		m := ops.do("GET", "/metrics", nil).expect(t, 200, "")
		if !strings.Contains(string(m.raw), `runbox_executions_total{error_code="",language="python",status="COMPLETED"}`) {
			t.Errorf("worker %d metrics lack its executions", i)
		}
		ops.do("GET", "/code-sessions/"+sid, nil).expect(t, 404, "not_found")
		started := w.started()
		if len(started) == 0 {
			t.Errorf("worker %d ran nothing", i)
		}
		for _, id := range started {
			seen[id]++
		}
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("execution %s started %d times", id, seen[id])
		}
	}
}

// TestWorkerKilledMidRun: SIGKILL a worker while it runs executions; every
// execution still ends terminal (re-run by the surviving worker after the
// rescue horizon, attempts+1), and none runs twice at the same time.
func TestWorkerKilledMidRun(t *testing.T) {
	s, ws := splitDeployment(t, 2, map[string]string{
		"RUNBOX_RUN_WALL_TIME":     "3s",
		"RUNBOX_COMPILE_WALL_TIME": "2s",
		"RUNBOX_RESCUE_AFTER":      "12s",
	})
	sid := s.createSession("python", "import time\ntime.sleep(1.5)\nprint('done')\n")
	var ids []string
	for range 6 {
		r := s.do("POST", "/code-sessions/"+sid+"/run", nil).expect(t, 202, "")
		ids = append(ids, r.body["execution_id"].(string))
	}
	// Kill the first worker as soon as it is running something.
	deadline := time.Now().Add(20 * time.Second)
	for len(ws[0].started()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	victim := ws[0].started()
	if len(victim) == 0 {
		t.Fatal("worker 0 never started a run")
	}
	if err := ws[0].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	rescued := 0
	for _, id := range ids {
		e := s.wait(id)
		if e["status"] != "COMPLETED" || e["stdout"] != "done\n" {
			t.Fatalf("execution %s after the kill: %v", id, e)
		}
		if e["attempts"].(float64) > 1 {
			rescued++
		}
	}
	if rescued == 0 {
		t.Fatalf("no execution was re-run after worker 0 (which had started %v) died", victim)
	}
	// No process of a killed worker's jails survives it.
	out, _ := exec.Command("pgrep", "-f", "time.sleep").CombinedOutput()
	if strings.TrimSpace(string(out)) != "" {
		t.Errorf("processes of killed runs survive: %s", out)
	}
}

// TestGracefulShutdown: SIGTERM while a run is in flight and another waits;
// the process finishes the running one before it exits, and the waiting one
// runs after a restart. Nothing accepted is lost.
func TestGracefulShutdown(t *testing.T) {
	requireRoot(t)
	env := map[string]string{
		"RUNBOX_DATA_DIR":           t.TempDir(),
		"RUNBOX_HTTP_ADDR":          freeAddr(t),
		"RUNBOX_WORKER_CONCURRENCY": "1",
		"RUNBOX_SHUTDOWN_GRACE":     "20s",
	}
	p := spawn(t, "serve", env)
	p.waitLog(t, "api listening")
	s := &server{t: t, base: "http://" + env["RUNBOX_HTTP_ADDR"]}
	sid := s.createSession("python", "import time\ntime.sleep(1.5)\nprint('finished')\n")
	first := s.do("POST", "/code-sessions/"+sid+"/run", nil).expect(t, 202, "").body["execution_id"].(string)
	second := s.do("POST", "/code-sessions/"+sid+"/run", nil).expect(t, 202, "").body["execution_id"].(string)
	for len(p.started()) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(25 * time.Second):
		t.Fatal("serve did not exit within the grace period")
	}
	_ = p.cmd.Wait()

	p2 := spawn(t, "serve", env)
	p2.waitLog(t, "api listening")
	for _, id := range []string{first, second} {
		if e := s.wait(id); e["status"] != "COMPLETED" || e["attempts"] != 1.0 {
			t.Fatalf("execution %s across the restart: %v", id, e)
		}
	}
	if started := p.started(); len(started) != 1 || started[0] != first {
		t.Fatalf("the first process started %v; want only %s", started, first)
	}
}

// TestServeKilledOnSQLite: the embedded default is SIGKILLed mid-run and
// started again on the same data directory. The run it was executing is
// picked up at once (attempts 2), not after the rescue horizon: the new
// process knows it is the only worker on the SQLite file.
func TestServeKilledOnSQLite(t *testing.T) {
	requireRoot(t)
	env := map[string]string{
		"RUNBOX_DATA_DIR":     t.TempDir(),
		"RUNBOX_HTTP_ADDR":    freeAddr(t),
		"RUNBOX_RESCUE_AFTER": "10m", // only the restart may re-run it within the test
	}
	p := spawn(t, "serve", env)
	p.waitLog(t, "api listening")
	s := &server{t: t, base: "http://" + env["RUNBOX_HTTP_ADDR"]}
	sid := s.createSession("python", "import time\ntime.sleep(2)\nprint('again')\n")
	id := s.do("POST", "/code-sessions/"+sid+"/run", nil).expect(t, 202, "").body["execution_id"].(string)
	for len(p.started()) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
	_ = p.cmd.Wait()

	p2 := spawn(t, "serve", env)
	p2.waitLog(t, "api listening")
	e := s.wait(id)
	if e["status"] != "COMPLETED" || e["stdout"] != "again\n" || e["attempts"] != 2.0 {
		t.Fatalf("after the restart: %v", e)
	}
	if out, _ := exec.Command("pgrep", "-f", "time.sleep").CombinedOutput(); strings.TrimSpace(string(out)) != "" {
		t.Errorf("processes of the killed run survive: %s", out)
	}
}
