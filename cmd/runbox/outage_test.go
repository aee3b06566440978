package main

import (
	"sync"
	"testing"
	"time"

	"github.com/runbox/runbox/internal/pgtest"
)

// TestDatabaseOutage stops a private PostgreSQL for 10 s under load: requests
// during the outage get 503 unavailable quickly (never a hang, never a 500),
// and afterwards API and workers recover on their own with no accepted
// execution lost.
func TestDatabaseOutage(t *testing.T) {
	requireRoot(t)
	pg := pgtest.Private(t)
	s := start(t, "serve", map[string]string{"RUNBOX_DATABASE_URL": pg.URL, "RUNBOX_MAX_INFLIGHT_PER_SESSION": "50"})
	src := "import time\ntime.sleep(0.5)\nprint('survived')\n"
	sid := s.createSession("python", src)
	// An autosave of the same source: the runs' output stays the same.
	save := func() response { return s.do("PATCH", "/code-sessions/"+sid, map[string]any{"source_code": src}) }

	var (
		mu       sync.Mutex
		accepted []string
	)
	submit := func() int {
		r := s.do("POST", "/code-sessions/"+sid+"/run", nil)
		if r.status == 202 {
			mu.Lock()
			accepted = append(accepted, r.body["execution_id"].(string))
			mu.Unlock()
		}
		return r.status
	}
	for range 4 {
		if st := submit(); st != 202 {
			t.Fatalf("run before the outage: %d", st)
		}
	}

	pg.Stop()
	outageEnds := time.Now().Add(10 * time.Second)
	statuses := map[int]int{}
	for time.Now().Before(outageEnds) {
		begin := time.Now()
		st := submit()
		if took := time.Since(begin); took > 6*time.Second {
			t.Fatalf("a request hung %v during the outage", took)
		}
		statuses[st]++
		for _, r := range []response{s.do("GET", "/code-sessions/"+sid, nil), save()} {
			statuses[r.status]++
			if r.status == 503 {
				r.expect(t, 503, "unavailable")
				if r.header.Get("Retry-After") == "" {
					t.Fatal("503 without Retry-After")
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if statuses[500] > 0 || statuses[503] == 0 {
		t.Fatalf("statuses during the outage: %v", statuses)
	}
	s.do("GET", "/readyz", nil).expect(t, 503, "")
	pg.Start()

	deadline := time.Now().Add(30 * time.Second)
	for s.do("GET", "/readyz", nil).status != 200 {
		if time.Now().After(deadline) {
			t.Fatal("not ready 30 s after the database came back")
		}
		time.Sleep(200 * time.Millisecond)
	}
	save().expect(t, 200, "")
	for range 2 {
		if st := submit(); st != 202 {
			t.Fatalf("run after recovery: %d", st)
		}
	}
	for _, id := range accepted {
		if e := s.wait(id); e["status"] != "COMPLETED" || e["stdout"] != "survived\n" {
			t.Fatalf("accepted execution %s: %v", id, e)
		}
	}
	t.Logf("%d executions accepted, all completed; statuses during the outage: %v", len(accepted), statuses)
}
