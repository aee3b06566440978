package main

import (
	"context"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// apiOnly starts `runbox api` on a freshly migrated SQLite file: with no
// worker, every accepted run stays QUEUED, which makes backlogs exact.
func apiOnly(t *testing.T, env map[string]string) *server {
	t.Helper()
	dir := t.TempDir()
	vars := map[string]string{"RUNBOX_DATA_DIR": dir, "RUNBOX_LOG_LEVEL": "warn"}
	if err := run(context.Background(), []string{"runbox", "migrate"}, func(k string) string { return vars[k] }, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	env["RUNBOX_DATA_DIR"] = dir
	return start(t, "api", env)
}

func retryAfter(t *testing.T, r response) {
	t.Helper()
	if n, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || n < 1 {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
}

func TestBackpressure(t *testing.T) {
	s := apiOnly(t, map[string]string{"RUNBOX_MAX_QUEUE_DEPTH": "3", "RUNBOX_MAX_INFLIGHT_PER_SESSION": "2"})
	a := s.createSession("python", "")
	b := s.createSession("python", "")

	// Per-session cap: the third queued run of one session is refused.
	s.do("POST", "/code-sessions/"+a+"/run", nil).expect(t, 202, "")
	s.do("POST", "/code-sessions/"+a+"/run", nil).expect(t, 202, "")
	retryAfter(t, s.do("POST", "/code-sessions/"+a+"/run", nil).expect(t, 429, "too_many_inflight"))

	// Global bound: once 3 runs wait, everyone gets 503 overloaded. The
	// depth is a sampled count plus the runs this process accepted since,
	// so the bound holds at once here; the loop allows for a refresh.
	accepted := s.do("POST", "/code-sessions/"+b+"/run", nil, "Idempotency-Key", "b-1").expect(t, 202, "").body["execution_id"]
	c := s.createSession("python", "")
	var refused response
	for range 20 {
		time.Sleep(100 * time.Millisecond)
		if refused = s.do("POST", "/code-sessions/"+s.createSession("python", "")+"/run", nil); refused.status != 202 {
			break
		}
	}
	retryAfter(t, refused.expect(t, 503, "overloaded"))
	// A replay of an accepted run still learns its id; a new key does not.
	if got := s.do("POST", "/code-sessions/"+b+"/run", nil, "Idempotency-Key", "b-1").expect(t, 202, "").body["execution_id"]; got != accepted {
		t.Errorf("replay while overloaded: %v, want %v", got, accepted)
	}
	s.do("POST", "/code-sessions/"+b+"/run", nil, "Idempotency-Key", "b-2").expect(t, 503, "overloaded")
	// Autosave is never refused for overload: it enqueues nothing.
	s.do("PATCH", "/code-sessions/"+c, map[string]any{"source_code": "print(1)"}).expect(t, 200, "")

	m := s.do("GET", "/metrics", nil).expect(t, 200, "")
	for _, want := range []string{`runbox_rejections_total{code="overloaded"} 2`, `runbox_rejections_total{code="too_many_inflight"} 1`} {
		if !contains(m.raw, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestRateLimits(t *testing.T) {
	s := apiOnly(t, map[string]string{
		"RUNBOX_RUN_RATE": "0.5", "RUNBOX_RUN_BURST": "2",
		"RUNBOX_AUTOSAVE_RATE": "1", "RUNBOX_AUTOSAVE_BURST": "3",
		"RUNBOX_MAX_INFLIGHT_PER_SESSION": "10",
	})
	id := s.createSession("python", "")
	for range 3 {
		s.do("PATCH", "/code-sessions/"+id, map[string]any{"source_code": "x"}).expect(t, 200, "")
	}
	retryAfter(t, s.do("PATCH", "/code-sessions/"+id, map[string]any{"source_code": "x"}).expect(t, 429, "rate_limited"))
	first := s.do("POST", "/code-sessions/"+id+"/run", nil, "Idempotency-Key", "k-1").expect(t, 202, "").body["execution_id"]
	s.do("POST", "/code-sessions/"+id+"/run", nil).expect(t, 202, "")
	r := s.do("POST", "/code-sessions/"+id+"/run", nil).expect(t, 429, "rate_limited")
	if r.header.Get("Retry-After") != "2" {
		t.Fatalf("Retry-After %q at 0.5 runs/s", r.header.Get("Retry-After"))
	}
	// A replay of an accepted run is answered with it, out of tokens or
	// not; the same key with another body is not a replay.
	if got := s.do("POST", "/code-sessions/"+id+"/run", nil, "Idempotency-Key", "k-1").expect(t, 202, "").body["execution_id"]; got != first {
		t.Errorf("rate-limited replay: %v, want %v", got, first)
	}
	s.do("POST", "/code-sessions/"+id+"/run", map[string]any{"stdin": "other"}, "Idempotency-Key", "k-1").expect(t, 429, "rate_limited")
}

func TestTenantsAndKeys(t *testing.T) {
	s := apiOnly(t, map[string]string{"RUNBOX_API_KEYS": "alice:key-a,bob:key-b,key-c"})
	s.do("POST", "/code-sessions", map[string]any{"language": "python"}).expect(t, 401, "unauthorized")
	s.key = "wrong"
	s.do("GET", "/languages", nil).expect(t, 401, "unauthorized")
	for _, open := range []string{"/healthz", "/readyz", "/metrics"} {
		s.do("GET", open, nil).expect(t, 200, "")
	}

	s.key = "key-a"
	sid := s.createSession("python", "")
	eid := s.do("POST", "/code-sessions/"+sid+"/run", nil).expect(t, 202, "").body["execution_id"].(string)
	s.do("GET", "/code-sessions/"+sid, nil).expect(t, 200, "")

	for _, other := range []string{"key-b", "key-c"} {
		s.key = other
		s.do("GET", "/code-sessions/"+sid, nil).expect(t, 404, "session_not_found")
		s.do("PATCH", "/code-sessions/"+sid, map[string]any{"source_code": "x"}).expect(t, 404, "session_not_found")
		s.do("POST", "/code-sessions/"+sid+"/run", nil).expect(t, 404, "session_not_found")
		s.do("DELETE", "/code-sessions/"+sid, nil).expect(t, 404, "session_not_found")
		s.do("GET", "/code-sessions/"+sid+"/executions", nil).expect(t, 404, "session_not_found")
		s.do("GET", "/executions/"+eid, nil).expect(t, 404, "execution_not_found")
	}
	s.key = "key-a"
	s.do("GET", "/executions/"+eid, nil).expect(t, 200, "")
	// The scheme is case-insensitive; the key is not.
	s.do("GET", "/executions/"+eid, nil, "Authorization", "bearer key-a").expect(t, 200, "")
	s.do("GET", "/executions/"+eid, nil, "Authorization", "Bearer KEY-A").expect(t, 401, "unauthorized")
	s.do("GET", "/executions/"+eid, nil, "Authorization", "Basic key-a").expect(t, 401, "unauthorized")
}

// TestClientBacklogCap: one client's queued runs over all its sessions are
// bounded, so that it cannot fill the backlog for everyone; another client
// (tenant) is not affected, and a replay is still answered.
func TestClientBacklogCap(t *testing.T) {
	s := apiOnly(t, map[string]string{"RUNBOX_API_KEYS": "alice:key-a,bob:key-b", "RUNBOX_MAX_INFLIGHT_PER_CLIENT": "3"})
	s.key = "key-a"
	a, b := s.createSession("python", ""), s.createSession("python", "")
	s.do("POST", "/code-sessions/"+a+"/run", nil).expect(t, 202, "")
	s.do("POST", "/code-sessions/"+a+"/run", nil).expect(t, 202, "")
	first := s.do("POST", "/code-sessions/"+b+"/run", nil, "Idempotency-Key", "k").expect(t, 202, "").body["execution_id"]
	refused := s.do("POST", "/code-sessions/"+b+"/run", nil).expect(t, 429, "too_many_inflight")
	retryAfter(t, refused)
	if !contains(refused.raw, "you already have") {
		t.Errorf("the refusal does not say whose limit it is: %s", refused.raw)
	}
	if again := s.do("POST", "/code-sessions/"+b+"/run", nil, "Idempotency-Key", "k").expect(t, 202, ""); again.body["execution_id"] != first {
		t.Errorf("replay at the cap: %s", again.raw)
	}
	s.key = "key-b"
	s.do("POST", "/code-sessions/"+s.createSession("python", "")+"/run", nil).expect(t, 202, "")
}

// TestLongPollsPerClient: past its share of held long-polls, a client's
// GET ?wait= answers at once; another client still waits.
func TestLongPollsPerClient(t *testing.T) {
	s := apiOnly(t, map[string]string{"RUNBOX_API_KEYS": "alice:key-a,bob:key-b", "RUNBOX_MAX_WAITS_PER_CLIENT": "1"})
	queued := func(key string) string { // no worker: it stays QUEUED
		s.key = key
		return s.do("POST", "/code-sessions/"+s.createSession("python", "")+"/run", nil).expect(t, 202, "").body["execution_id"].(string)
	}
	a, b := queued("key-a"), queued("key-b")
	s.key = "" // each request says whose it is: they run concurrently
	held := make(chan time.Duration, 1)
	go func() {
		begin := time.Now()
		s.do("GET", "/executions/"+a+"?wait=2", nil, "Authorization", "Bearer key-a")
		held <- time.Since(begin)
	}()
	time.Sleep(300 * time.Millisecond) // the first is held
	begin := time.Now()
	if r := s.do("GET", "/executions/"+a+"?wait=2", nil, "Authorization", "Bearer key-a").expect(t, 200, ""); r.body["status"] != "QUEUED" {
		t.Fatalf("second long-poll: %s", r.raw)
	}
	if d := time.Since(begin); d > time.Second {
		t.Errorf("a client's second long-poll was held %v", d)
	}
	begin = time.Now()
	s.do("GET", "/executions/"+b+"?wait=1", nil, "Authorization", "Bearer key-b").expect(t, 200, "")
	if d := time.Since(begin); d < 900*time.Millisecond {
		t.Errorf("another client's long-poll returned after %v", d)
	}
	if d := <-held; d < 1900*time.Millisecond {
		t.Errorf("the first long-poll returned after %v", d)
	}
	// Released: waits again.
	begin = time.Now()
	s.do("GET", "/executions/"+a+"?wait=1", nil, "Authorization", "Bearer key-a").expect(t, 200, "")
	if d := time.Since(begin); d < 900*time.Millisecond {
		t.Errorf("a released slot: returned after %v", d)
	}
}

func contains(b []byte, s string) bool { return strings.Contains(string(b), s) }

// TestRacingIdempotentRuns: a double-click sends the same run twice at once;
// the unique constraint, not a read-then-write, makes them one execution.
func TestRacingIdempotentRuns(t *testing.T) {
	s := apiOnly(t, map[string]string{"RUNBOX_MAX_INFLIGHT_PER_SESSION": "50", "RUNBOX_RUN_RATE": "100", "RUNBOX_RUN_BURST": "100"})
	sid := s.createSession("python", "")
	const n = 12
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := s.do("POST", "/code-sessions/"+sid+"/run", map[string]any{"stdin": "same"}, "Idempotency-Key", "double-click")
			if r.status == 202 {
				ids[i] = r.body["execution_id"].(string)
			}
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id == "" || id != ids[0] {
			t.Fatalf("racing duplicates got %v", ids)
		}
	}
	page := s.do("GET", "/code-sessions/"+sid+"/executions", nil).expect(t, 200, "")
	if items := page.body["items"].([]any); len(items) != 1 {
		t.Fatalf("%d executions for one idempotency key", len(items))
	}
}
