package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaultsMatchSpec(t *testing.T) {
	c, err := Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"http addr", c.HTTPAddr, "127.0.0.1:8080"},
		{"run wall", c.Run.WallTime, 5 * time.Second},
		{"run cpu", c.Run.CPUTime, 5 * time.Second},
		{"run memory", c.Run.MemoryBytes, int64(256 << 20)},
		{"run pids", c.Run.Pids, 64},
		{"compile wall", c.Compile.WallTime, 15 * time.Second},
		{"compile memory", c.Compile.MemoryBytes, int64(1 << 30)},
		{"compile pids", c.Compile.Pids, 256},
		{"output kept", c.OutputBytes, int64(64 << 10)},
		{"output kill", c.OutputKillBytes, int64(1 << 20)},
		{"scratch", c.ScratchBytes, int64(32 << 20)},
		{"compile cache", c.CompileCacheBytes, int64(64 << 20)},
		{"source", c.MaxSourceBytes, int64(64 << 10)},
		{"stdin", c.MaxStdinBytes, int64(64 << 10)},
		{"inflight", c.MaxInflightPerSession, 2},
		{"retention", c.Retention, 7 * 24 * time.Hour},
		{"log format", c.LogFormat, "json"},
		{"data dir is absolute", filepath.IsAbs(c.DataDir) && filepath.Base(c.DataDir) == "data", true},
		{"session rate follows the run rate", c.SessionRate, c.RunRate},
		{"session burst", c.SessionBurst, 5 * c.RunBurst},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	if c.RescueAfter <= c.JobTimeout() {
		t.Errorf("rescue horizon %v not beyond the job timeout %v", c.RescueAfter, c.JobTimeout())
	}
}

func TestInvalidValuesAreRefusedWithoutEchoingThem(t *testing.T) {
	for _, c := range []struct{ name, value string }{
		{"RUNBOX_RUN_MEMORY", "plenty-secret"},
		{"RUNBOX_RUN_WALL_TIME", "-1s"},
		{"RUNBOX_RUN_WALL_TIME", "2562047h"}, // its sums would overflow
		{"RUNBOX_FETCH_POLL_INTERVAL", "1ns"},
		{"RUNBOX_WORKER_CONCURRENCY", "none"},
		{"RUNBOX_LOG_FORMAT", "xml"},
		{"RUNBOX_ALLOW_UNAUTHENTICATED", "perhaps"},
		{"RUNBOX_RUN_RATE", "-3"},
		{"RUNBOX_RUN_RATE", "NaN"},
		{"RUNBOX_AUTOSAVE_RATE", "Inf"},
		{"RUNBOX_RUN_RATE", "1e-10"}, // a token a few centuries apart: no limit at all, in effect
		{"RUNBOX_HTTP_ADDR", "127.0.0.1:99999"},
		{"RUNBOX_HTTP_ADDR", "secret-garbage"},
		{"RUNBOX_METRICS_ADDR", "secret-garbage"},
		{"RUNBOX_MAX_INFLIGHT_PER_SESSION", "lots"},
		{"RUNBOX_MAX_SOURCE_BYTES", "4MiB"}, // over the body limit: unreachable
		{"RUNBOX_REQUEST_TIMEOUT", "10s"},
		{"RUNBOX_RESCUE_AFTER", "1s"},
		{"RUNBOX_SANDBOX_MEMORY", "512MiB"}, // below the compile limit
		{"RUNBOX_SANDBOX_MEMORY", "lots"},
		{"RUNBOX_COMPILE_CACHE", "-1"},
		{"RUNBOX_COMPILE_CACHE", "lots"},
		{"RUNBOX_API_KEYS_FILE", "/nonexistent/secret-path"},
		{"RUNBOX_API_KEYS", ","},              // set, yet no key: auth would be off
		{"RUNBOX_API_KEYS", "tenant-secret:"}, // an empty key
		{"RUNBOX_API_KEYS", "a:secret-k1,b:secret-k1"},
		{"RUNBOX_API_KEYS", "secret with spaces"},
	} {
		_, err := Load(env(map[string]string{c.name: c.value}))
		if err == nil || !strings.Contains(err.Error(), c.name) {
			t.Errorf("%s=%s: %v", c.name, c.value, err)
			continue
		}
		if strings.Contains(err.Error(), c.value) || strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: error echoes the value: %v", c.name, err)
		}
	}
}

func TestCompileCacheOff(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, " 0 ": 0, "1MiB": 1 << 20} {
		c, err := Load(env(map[string]string{"RUNBOX_COMPILE_CACHE": in}))
		if err != nil {
			t.Errorf("%q: %v", in, err)
		} else if c.CompileCacheBytes != want {
			t.Errorf("%q: %d, want %d", in, c.CompileCacheBytes, want)
		}
	}
}

func TestParseBytes(t *testing.T) {
	good := map[string]int64{"1": 1, "64KiB": 64 << 10, "256MiB": 256 << 20, "1GiB": 1 << 30, "10M": 10 << 20, "512B": 512}
	for in, want := range good {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("%q: %d, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "0", "-1", "1TiB", "MiB", "1.5GiB", "99999999999999GiB"} {
		if _, err := ParseBytes(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestAPIKeysFromFile(t *testing.T) {
	f := t.TempDir() + "/keys"
	if err := writeFile(f, "# comment\nalice:k1\n\nk2\n"); err != nil {
		t.Fatal(err)
	}
	c, err := Load(env(map[string]string{"RUNBOX_API_KEYS": "ignored", "RUNBOX_API_KEYS_FILE": f}))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.APIKeys, ",") != "alice:k1,k2" {
		t.Fatalf("keys %v", c.APIKeys)
	}
}

func TestLoopbackOnly(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "localhost:80": true, "[::1]:8080": true, "127.1.2.3:1": true,
		"0.0.0.0:8080": false, ":8080": false, "10.0.0.1:80": false, "nonsense": false,
	} {
		if got := LoopbackOnly(addr); got != want {
			t.Errorf("%s: %v", addr, got)
		}
	}
}

func TestEveryVariableHasARole(t *testing.T) {
	seen := map[string]bool{}
	for _, v := range Vars {
		if !strings.HasPrefix(v.Name, "RUNBOX_") || v.Meaning == "" || v.Default == "" || len(v.Roles) == 0 || seen[v.Name] {
			t.Errorf("bad entry %+v", v)
		}
		seen[v.Name] = true
	}
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

// TestSessionLimitsFollowTheRunLimits: a deployment that raises its run
// rate (a load test, a trusted tenant) need not know of the session limit.
func TestSessionLimitsFollowTheRunLimits(t *testing.T) {
	c, err := Load(env(map[string]string{"RUNBOX_RUN_RATE": "1000", "RUNBOX_RUN_BURST": "2000"}))
	if err != nil || c.SessionRate != 1000 || c.SessionBurst != 10000 {
		t.Fatalf("session rate %v, burst %d, %v", c.SessionRate, c.SessionBurst, err)
	}
	c, err = Load(env(map[string]string{"RUNBOX_RUN_RATE": "1000", "RUNBOX_SESSION_RATE": "3", "RUNBOX_SESSION_BURST": "4"}))
	if err != nil || c.SessionRate != 3 || c.SessionBurst != 4 {
		t.Fatalf("session rate %v, burst %d, %v", c.SessionRate, c.SessionBurst, err)
	}
}
