package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/runbox/runbox/internal/testenv"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runbox/runbox/internal/sandbox"
)

func TestMain(m *testing.M) {
	sandbox.Init()
	os.Exit(m.Run())
}

// server is a runbox started through run, as the binary would be.
type server struct {
	t    *testing.T
	base string
	key  string // Bearer key sent with every request, if set
}

// freeAddr finds a loopback port for the server under test.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// requireRoot stops t when the sandbox cannot run (a failure in CI).
func requireRoot(t *testing.T) { testenv.RequireRoot(t) }

// start runs `runbox <sub>` with env on top of a fresh data directory and
// waits until /healthz answers.
func start(t *testing.T, sub string, env map[string]string) *server {
	t.Helper()
	addr := freeAddr(t)
	vars := map[string]string{
		"RUNBOX_DATA_DIR":            t.TempDir(),
		"RUNBOX_HTTP_ADDR":           addr,
		"RUNBOX_LOG_LEVEL":           "warn",
		"RUNBOX_RUN_RATE":            "1000",
		"RUNBOX_RUN_BURST":           "1000",
		"RUNBOX_FETCH_POLL_INTERVAL": "200ms",
	}
	maps.Copy(vars, env)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &syncBuffer{}
	go func() {
		done <- run(ctx, []string{"runbox", sub}, func(k string) string { return vars[k] }, io.Discard, logs)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run returned %v", err)
			}
		case <-time.After(40 * time.Second):
			t.Error("server did not stop within 40s")
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	s := &server{t: t, base: "http://" + addr}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("server exited: %v\n%s", err, logs.String())
		default:
		}
		resp, err := http.Get(s.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("server did not become healthy\n%s", logs.String())
	return nil
}

// response is a decoded answer.
type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (s *server) do(method, path string, body any, headers ...string) response {
	s.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if s.key != "" {
		req.Header.Set("Authorization", "Bearer "+s.key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, raw: raw}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

// expect checks status and, for problems, the code and content type.
func (r response) expect(t *testing.T, status int, code string) response {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
	if code != "" {
		if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("content type %q for a problem", ct)
		}
		if r.body["code"] != code {
			t.Fatalf("code %v, want %s: %s", r.body["code"], code, r.raw)
		}
	}
	return r
}

func (s *server) createSession(lang, src string) string {
	s.t.Helper()
	body := map[string]any{"language": lang}
	if src != "" {
		body["source_code"] = src
	}
	r := s.do("POST", "/code-sessions", body).expect(s.t, 201, "")
	return r.body["session_id"].(string)
}

// runAndWait submits a run and long-polls until it is terminal.
func (s *server) runAndWait(sessionID, stdin string) map[string]any {
	s.t.Helper()
	r := s.do("POST", "/code-sessions/"+sessionID+"/run", map[string]any{"stdin": stdin}).expect(s.t, 202, "")
	id := r.body["execution_id"].(string)
	return s.wait(id)
}

func (s *server) wait(id string) map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		r := s.do("GET", "/executions/"+id+"?wait=30", nil).expect(s.t, 200, "")
		switch r.body["status"] {
		case "COMPLETED", "FAILED", "TIMEOUT":
			return r.body
		}
	}
	s.t.Fatalf("execution %s never finished", id)
	return nil
}

type syncBuffer struct {
	mu  chan struct{}
	buf bytes.Buffer
}

func (b *syncBuffer) lock() {
	if b.mu == nil {
		b.mu = make(chan struct{}, 1)
	}
	b.mu <- struct{}{}
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.lock()
	defer func() { <-b.mu }()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.lock()
	defer func() { <-b.mu }()
	return b.buf.String()
}

func TestCLIHelpListsFlagsAndVariables(t *testing.T) {
	for _, sc := range subcommands {
		var out bytes.Buffer
		if err := run(context.Background(), []string{"runbox", sc.name, "--help"}, func(string) string { return "" }, &out, io.Discard); err != nil {
			t.Fatalf("%s --help: %v", sc.name, err)
		}
		if !strings.Contains(out.String(), "Usage: runbox "+sc.name) || !strings.Contains(out.String(), "-h, --help") {
			t.Errorf("%s --help:\n%s", sc.name, out.String())
		}
		if sc.role != "" && !strings.Contains(out.String(), "RUNBOX_DATABASE_URL") {
			t.Errorf("%s --help does not list its environment variables:\n%s", sc.name, out.String())
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"runbox", "nope"}, func(string) string { return "" }, &out, io.Discard); err == nil {
		t.Error("unknown subcommand accepted")
	}
}

func TestRefusesNonLoopbackWithoutKeys(t *testing.T) {
	env := map[string]string{"RUNBOX_HTTP_ADDR": "0.0.0.0:0", "RUNBOX_DATA_DIR": t.TempDir()}
	err := run(context.Background(), []string{"runbox", "api"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "non-loopback") {
		t.Fatalf("got %v", err)
	}
}

func TestMalformedConfigurationIsRefused(t *testing.T) {
	env := map[string]string{"RUNBOX_RUN_MEMORY": "lots", "RUNBOX_DATA_DIR": t.TempDir()}
	err := run(context.Background(), []string{"runbox", "serve"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "RUNBOX_RUN_MEMORY") {
		t.Fatalf("got %v", err)
	}
	if strings.Contains(fmt.Sprint(err), "lots") {
		t.Error("error echoes the configured value")
	}
}

// TestStartupFailuresNameTheVariable: a value that parses but does not
// work (a data directory that cannot be created, a missing languages file,
// an unknown database scheme) stops the process with the variable's name
// and without its value.
func TestStartupFailuresNameTheVariable(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		env  map[string]string
		name string
	}{
		{map[string]string{"RUNBOX_DATA_DIR": filepath.Join(file, "data")}, "RUNBOX_DATA_DIR"},
		{map[string]string{"RUNBOX_DATA_DIR": dir, "RUNBOX_LANGUAGES_FILE": filepath.Join(dir, "missing.yaml")}, "RUNBOX_LANGUAGES_FILE"},
		{map[string]string{"RUNBOX_DATA_DIR": dir, "RUNBOX_DATABASE_URL": "mysql://u@h/db"}, "RUNBOX_DATABASE_URL"},
	} {
		err := run(context.Background(), []string{"runbox", "serve"}, func(k string) string { return c.env[k] }, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.name) {
			t.Errorf("%v: %v", c.env, err)
			continue
		}
		for _, v := range append(slices.Collect(maps.Values(c.env)), dir) {
			if strings.Contains(err.Error(), v) {
				t.Errorf("the error echoes %q: %v", v, err)
			}
		}
	}
}

func decodeList(t *testing.T, raw []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("not a JSON list: %s", raw)
	}
	return out
}

// TestSplitRolesRefuseAnOldSchema: `runbox api` and `runbox worker` do not
// migrate; on a database that `runbox migrate` has not brought up to date
// they refuse to start and say so, rather than fail every run.
func TestSplitRolesRefuseAnOldSchema(t *testing.T) {
	for _, role := range []string{"api", "worker"} {
		env := map[string]string{"RUNBOX_DATA_DIR": t.TempDir(), "RUNBOX_LOG_LEVEL": "warn", "RUNBOX_HTTP_ADDR": "127.0.0.1:0"}
		// Bounded: a process that starts anyway serves until this ends.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := run(ctx, []string{"runbox", role}, func(k string) string { return env[k] }, io.Discard, io.Discard)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "runbox migrate") {
			t.Errorf("%s on an empty database: %v", role, err)
		}
	}
}
