package main

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSessionsAndErrors drives every session endpoint and every error of
// SPEC §2 that needs no worker, over real HTTP against the embedded default.
func TestSessionsAndErrors(t *testing.T) {
	requireRoot(t)
	s := start(t, "serve", map[string]string{"RUNBOX_MAX_SOURCE_BYTES": "1003"})

	r := s.do("POST", "/code-sessions", map[string]any{"language": "python"}).expect(t, 201, "")
	id := r.body["session_id"].(string)
	if r.header.Get("Location") != "/code-sessions/"+id || r.header.Get("ETag") != `"1"` {
		t.Fatalf("headers %v", r.header)
	}
	if !strings.Contains(r.body["source_code"].(string), "Hello, world!") || r.body["status"] != "ACTIVE" || r.body["version"] != 1.0 {
		t.Fatalf("template not used: %s", r.raw)
	}
	if s.do("GET", "/code-sessions/"+id, nil).expect(t, 200, "").header.Get("X-Request-ID") == "" {
		t.Error("no request id")
	}

	// Autosave answers without the source and bumps the version.
	r = s.do("PATCH", "/code-sessions/"+id, map[string]any{"source_code": "print(1)"}).expect(t, 200, "")
	if r.body["version"] != 2.0 || r.body["source_code"] != nil || r.header.Get("ETag") != `"2"` {
		t.Fatalf("autosave: %s", r.raw)
	}
	s.do("PATCH", "/code-sessions/"+id, map[string]any{"source_code": "x"}, "If-Match", `"1"`).expect(t, 412, "version_conflict")
	s.do("PATCH", "/code-sessions/"+id, map[string]any{"source_code": "print(2)"}, "If-Match", `"2"`).expect(t, 200, "")
	// A list matches when any of its tags is current.
	s.do("PATCH", "/code-sessions/"+id, map[string]any{"source_code": "x"}, "If-Match", `"1", W/"2", junk`).expect(t, 412, "version_conflict")
	s.do("PATCH", "/code-sessions/"+id, map[string]any{"source_code": "print(2)"}, "If-Match", `"999", "3"`).expect(t, 200, "")

	missing := "/code-sessions/00000000-0000-4000-8000-000000000000"
	bad := []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"unknown language", "POST", "/code-sessions", map[string]any{"language": "cobol"}, 400, "unsupported_language"},
		{"huge language", "POST", "/code-sessions", map[string]any{"language": strings.Repeat("\x80", 100000)}, 400, "unsupported_language"},
		{"missing language", "POST", "/code-sessions", map[string]any{}, 400, "invalid_request"},
		{"not JSON", "POST", "/code-sessions", "{nope", 400, "invalid_request"},
		{"unknown field", "POST", "/code-sessions", map[string]any{"language": "python", "extra": 1}, 400, "invalid_request"},
		{"wrong type", "POST", "/code-sessions", map[string]any{"language": 7}, 400, "invalid_request"},
		{"two objects", "POST", "/code-sessions", `{"language":"python"}{}`, 400, "invalid_request"},
		{"field twice", "POST", "/code-sessions", `{"language":"python","language":"bash"}`, 400, "invalid_request"},
		{"field in another case", "POST", "/code-sessions", `{"Language":"python"}`, 400, "invalid_request"},
		{"patch field twice", "PATCH", "/code-sessions/" + id, `{"source_code":"a","source_code":"b"}`, 400, "invalid_request"},
		{"run field twice", "POST", "/code-sessions/" + id + "/run", `{"stdin":"a","stdin":"b"}`, 400, "invalid_request"},
		{"huge unknown field", "POST", "/code-sessions", map[string]any{strings.Repeat("x", 100000): 1}, 400, "invalid_request"},
		{"run field in another case", "POST", "/code-sessions/" + id + "/run", `{"STDIN":""}`, 400, "invalid_request"},
		{"not an object", "POST", "/code-sessions/" + id + "/run", `[1]`, 400, "invalid_request"},
		{"source too large", "POST", "/code-sessions", map[string]any{"language": "python", "source_code": strings.Repeat("x", 1004)}, 413, "source_too_large"},
		{"body too large", "POST", "/code-sessions", map[string]any{"language": "python", "source_code": strings.Repeat("x", 2<<20)}, 413, "body_too_large"},
		{"malformed id", "GET", "/code-sessions/not-a-uuid", nil, 404, "session_not_found"},
		{"unknown id", "GET", missing, nil, 404, "session_not_found"},
		{"patch unknown", "PATCH", missing, map[string]any{"source_code": "x"}, 404, "session_not_found"},
		{"patch nothing", "PATCH", "/code-sessions/" + id, map[string]any{}, 400, "invalid_request"},
		{"patch bad language", "PATCH", "/code-sessions/" + id, map[string]any{"language": "cobol"}, 400, "unsupported_language"},
		{"patch too large", "PATCH", "/code-sessions/" + id, map[string]any{"source_code": strings.Repeat("x", 1004)}, 413, "source_too_large"},
		{"run unknown", "POST", missing + "/run", nil, 404, "session_not_found"},
		{"run nil id", "POST", "/code-sessions/00000000-0000-0000-0000-000000000000/run", nil, 404, "session_not_found"},
		{"nil execution id", "GET", "/executions/00000000-0000-0000-0000-000000000000", nil, 404, "execution_not_found"},
		{"run stdin too large", "POST", "/code-sessions/" + id + "/run", map[string]any{"stdin": strings.Repeat("x", 65537)}, 413, "stdin_too_large"},
		{"run unknown field", "POST", "/code-sessions/" + id + "/run", map[string]any{"stdn": ""}, 400, "invalid_request"},
		{"execution malformed", "GET", "/executions/xyz", nil, 404, "execution_not_found"},
		{"execution unknown", "GET", "/executions/00000000-0000-4000-8000-000000000000", nil, 404, "execution_not_found"},
		{"bad wait", "GET", "/executions/00000000-0000-4000-8000-000000000000?wait=31", nil, 400, "invalid_request"},
		{"wait NaN", "GET", "/executions/00000000-0000-4000-8000-000000000000?wait=NaN", nil, 400, "invalid_request"},
		{"wait hex float", "GET", "/executions/00000000-0000-4000-8000-000000000000?wait=0x1p1", nil, 400, "invalid_request"},
		{"run body null", "POST", "/code-sessions/" + id + "/run", `null`, 400, "invalid_request"},
		{"run body a form feed", "POST", "/code-sessions/" + id + "/run", "\f", 400, "invalid_request"},
		{"bad limit", "GET", "/code-sessions/" + id + "/executions?limit=0", nil, 400, "invalid_request"},
		{"bad cursor", "GET", "/code-sessions/" + id + "/executions?cursor=zzz", nil, 400, "invalid_request"},
		{"list unknown", "GET", missing + "/executions", nil, 404, "session_not_found"},
		{"no route", "GET", "/nope", nil, 404, "not_found"},
		{"wrong method", "PUT", "/code-sessions/" + id, nil, 405, "method_not_allowed"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			r := s.do(c.method, c.path, c.body).expect(t, c.status, c.code)
			if c.status == 405 && r.header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
			if d, _ := r.body["detail"].(string); d == "" || strings.Contains(d, "field  ") {
				t.Errorf("unclear detail: %s", r.raw)
			}
			if len(r.raw) > 4096 { // nothing a client sends is echoed at length
				t.Errorf("a %d-byte problem", len(r.raw))
			}
			// Nor configuration values (the limits of source and stdin).
			for _, leak := range []string{"/tmp", "sql", "SQL", "goroutine", ".go:", "1003", "65536"} {
				if strings.Contains(string(r.raw), leak) {
					t.Errorf("problem leaks %q: %s", leak, r.raw)
				}
			}
		})
	}
	// A body announced over the limit is refused before it is invited.
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /code-sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"Expect: 100-continue\r\nContent-Length: 10000000000\r\n\r\n")
	line, _ := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if !strings.HasPrefix(line, "HTTP/1.1 413") {
		t.Errorf("a 10 GB body announced with Expect: 100-continue got %q", line)
	}

	// Nothing was written by the failed requests.
	if r := s.do("GET", "/code-sessions/"+id, nil); r.body["version"] != 4.0 || r.body["source_code"] != "print(2)" {
		t.Fatalf("a refused request changed the session: %s", r.raw)
	}

	// Languages lists only what this machine can run, with templates.
	langs := s.do("GET", "/languages", nil).expect(t, 200, "")
	if !strings.Contains(string(langs.raw), `"id":"python"`) || !strings.Contains(string(langs.raw), `"template"`) {
		t.Fatalf("languages: %s", langs.raw)
	}
	s.do("GET", "/readyz", nil).expect(t, 200, "")
	if m := s.do("GET", "/metrics", nil).expect(t, 200, ""); !strings.Contains(string(m.raw), "runbox_http_requests_total") {
		t.Fatal("metrics missing")
	}

	// Closing: 204, then PATCH and run are 409.
	s.do("DELETE", "/code-sessions/"+id, nil).expect(t, 204, "")
	s.do("DELETE", missing, nil).expect(t, 404, "session_not_found")
	s.do("PATCH", "/code-sessions/"+id, map[string]any{"source_code": "x"}).expect(t, 409, "session_closed")
	s.do("POST", "/code-sessions/"+id+"/run", nil).expect(t, 409, "session_closed")
	if r := s.do("GET", "/code-sessions/"+id, nil).expect(t, 200, ""); r.body["status"] != "CLOSED" {
		t.Fatalf("closed session: %s", r.raw)
	}
}

// TestConcurrentAutosaveWithIfMatch: of N saves racing on one version,
// exactly one wins; the others get 412 and nothing is lost silently.
func TestConcurrentAutosaveWithIfMatch(t *testing.T) {
	requireRoot(t)
	s := start(t, "serve", map[string]string{"RUNBOX_AUTOSAVE_RATE": "1000", "RUNBOX_AUTOSAVE_BURST": "1000"})
	id := s.createSession("python", "v1")
	const n = 16
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = s.do("PATCH", "/code-sessions/"+id, map[string]any{"source_code": fmt.Sprint("writer ", i)}, "If-Match", `"1"`).status
		}()
	}
	wg.Wait()
	won := 0
	for _, st := range statuses {
		switch st {
		case 200:
			won++
		case 412:
		default:
			t.Fatalf("unexpected status %d", st)
		}
	}
	if won != 1 {
		t.Fatalf("%d writers won version 1, want exactly 1", won)
	}
	if r := s.do("GET", "/code-sessions/"+id, nil); r.body["version"] != 2.0 {
		t.Fatalf("version %v after one accepted save", r.body["version"])
	}
}

// TestIdleSessionsPurged: a session neither saved nor run for
// RUNBOX_IDLE_SESSION_TTL is gone; one that is saved, or run, is kept.
func TestIdleSessionsPurged(t *testing.T) {
	requireRoot(t)
	const ttl = 3 * time.Second
	s := start(t, "serve", map[string]string{"RUNBOX_IDLE_SESSION_TTL": ttl.String()})
	created := time.Now()
	idle := s.createSession("python", "print('idle')")
	saved := s.createSession("python", "print('saved')")
	ran := s.createSession("python", "print('ran')")
	// The purge runs every second, once River has elected this process
	// its leader and a worker is free: when is up to the host, so wait for
	// it, keeping the other two sessions busy meanwhile (a save and a run
	// every second or so, well within the TTL).
	deadline := time.Now().Add(30 * time.Second)
	for {
		s.do("PATCH", "/code-sessions/"+saved, map[string]any{"source_code": "print('saved')"}).expect(t, 200, "")
		s.runAndWait(ran, "")
		r := s.do("GET", "/code-sessions/"+idle, nil)
		if r.status == 404 {
			if age := time.Since(created); age < ttl {
				t.Fatalf("idle session purged %s after it was created, before its TTL of %s", age, ttl)
			}
			break
		}
		r.expect(t, 200, "")
		if time.Now().After(deadline) {
			t.Fatalf("idle session not purged %s after it was created (TTL %s)", time.Since(created), ttl)
		}
		time.Sleep(500 * time.Millisecond)
	}
	s.do("GET", "/code-sessions/"+idle, nil).expect(t, 404, "session_not_found")
	s.do("PATCH", "/code-sessions/"+idle, map[string]any{"source_code": "x"}).expect(t, 404, "session_not_found")
	s.do("GET", "/code-sessions/"+saved, nil).expect(t, 200, "")
	s.do("GET", "/code-sessions/"+ran, nil).expect(t, 200, "")
}
