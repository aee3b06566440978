package api

import (
	"math"
	"sync"
	"time"
)

// limiter is a set of token buckets, one per client (tenant or address).
// Buckets idle long enough to be full again are dropped, so the map stays
// bounded by the clients active in the last few seconds.
type limiter struct {
	rate  float64 // tokens per second
	burst float64

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(rate float64, burst int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), buckets: map[string]*bucket{}}
}

// allow takes a token for key; when none is left it returns the whole
// seconds until one is.
func (l *limiter) allow(key string, now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	if now.Sub(l.swept) > full && len(l.buckets) > 0 {
		for k, b := range l.buckets {
			if now.Sub(b.at) > full {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, int(math.Ceil((1 - b.tokens) / l.rate))
}

// holds counts what each client (tenant or address) holds at once, such as
// long-polls: a waiting request keeps a connection, a goroutine and its
// buffers for up to 30 s, so without a bound one client could hold
// thousands. Keys are dropped at zero, so the map holds only current
// holders.
type holds struct {
	max int // 0: no bound
	mu  sync.Mutex
	n   map[string]int
}

func newHolds(max int) *holds { return &holds{max: max, n: map[string]int{}} }

// acquire takes a hold for key, or reports false when key has max of them.
func (h *holds) acquire(key string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.max > 0 && h.n[key] >= h.max {
		return false
	}
	h.n[key]++
	return true
}

func (h *holds) release(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n[key]--; h.n[key] <= 0 {
		delete(h.n, key)
	}
}
