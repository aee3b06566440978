package api

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	l := newLimiter(2, 3) // 2 per second, bursts of 3
	now := time.Unix(1000, 0)
	for i := range 3 {
		if ok, _ := l.allow("a", now); !ok {
			t.Fatalf("burst request %d refused", i)
		}
	}
	ok, wait := l.allow("a", now)
	if ok || wait != 1 {
		t.Fatalf("over the burst: ok=%v retry after %d", ok, wait)
	}
	if ok, _ := l.allow("b", now); !ok {
		t.Fatal("another client shares the bucket")
	}
	if ok, _ := l.allow("a", now.Add(500*time.Millisecond)); !ok {
		t.Fatal("a token should have refilled after 0.5 s at 2/s")
	}
	// Idle buckets are dropped once they would be full again.
	l.allow("c", now.Add(10*time.Second))
	if _, kept := l.buckets["b"]; kept || len(l.buckets) != 1 {
		t.Fatalf("idle buckets kept: %d", len(l.buckets))
	}
}

func TestParseKeysDerivesStableOpaqueTenants(t *testing.T) {
	keys := parseKeys([]string{"alice:secret-1", "secret-2"})
	if keys[0].tenant != "alice" {
		t.Fatalf("tenant %q", keys[0].tenant)
	}
	again := parseKeys([]string{"secret-2"})
	if keys[1].tenant != again[0].tenant || keys[1].tenant == "secret-2" || len(keys[1].tenant) < 8 {
		t.Fatalf("bare key tenant %q", keys[1].tenant)
	}
}

func TestHolds(t *testing.T) {
	h := newHolds(2)
	if !h.acquire("a") || !h.acquire("a") || h.acquire("a") {
		t.Fatal("a client gets exactly its two holds")
	}
	if !h.acquire("b") {
		t.Fatal("another client is not held back")
	}
	h.release("a")
	if !h.acquire("a") {
		t.Fatal("a released hold is free again")
	}
	h.release("a")
	h.release("a")
	h.release("b")
	if len(h.n) != 0 {
		t.Fatalf("clients holding nothing are still counted: %v", h.n)
	}
	unbounded := newHolds(0)
	for range 1000 {
		if !unbounded.acquire("a") {
			t.Fatal("0 is no bound")
		}
	}
}
