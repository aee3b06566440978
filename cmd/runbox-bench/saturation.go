package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/runbox/runbox/internal/queue"
	"github.com/runbox/runbox/internal/session"
	"github.com/runbox/runbox/internal/store"
)

const sleeperSource = "import time\ntime.sleep(3600)\n"

// saturationEnv lets the sleepers occupy the workers for the whole phase
// (one hour of wall time, almost no CPU) and lets the backlog in.
func saturationEnv() map[string]string {
	return map[string]string{
		"RUNBOX_RUN_WALL_TIME":  "1h",
		"RUNBOX_RUN_CPU_TIME":   "1h",
		"RUNBOX_SHUTDOWN_GRACE": "1s",
	}
}

// occupyWorkers submits one long sleeper per worker and waits until all of
// them are RUNNING, so that nothing else is fetched while they run.
func occupyWorkers(ctx context.Context, c *client, workers int, src string) error {
	ids := make([]string, workers)
	for i := range ids {
		sid, err := c.createSession(ctx, "python", src)
		if err != nil {
			return err
		}
		id, st, code, err := c.submit(ctx, sid)
		if err != nil {
			return err
		}
		if st != 202 {
			return fmt.Errorf("sleeper: %d %s", st, code)
		}
		ids[i] = id
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, id := range ids {
		for {
			var e executionJSON
			st, code, err := c.do(ctx, "GET", "/executions/"+id, nil, &e)
			if err != nil {
				return err
			}
			if st != 200 {
				return fmt.Errorf("sleeper %s: %d %s", id, st, code)
			}
			if e.Status == "RUNNING" {
				break
			}
			if terminal(e.Status) {
				return fmt.Errorf("sleeper %s ended %s before the phase", id, e.Status)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("sleeper %s still %s after 60s", id, e.Status)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// backlogChunk is the number of executions (and jobs) inserted per
// transaction. SQLite has one writer: a transaction much longer than the
// server's busy timeout (5 s) would make the server's own writes fail.
const backlogChunk = 10000

// insertBacklog writes n QUEUED executions, each with its River job in the
// same transaction, straight into the embedded server's database, in chunks
// of backlogChunk rows per transaction; the rows belong to n/100 sessions.
func insertBacklog(ctx context.Context, e *embedded, n int) error {
	if n == 0 {
		return nil
	}
	st, err := store.Open(ctx, e.dbURL, e.dataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	cfg := e.cfg
	q, err := queue.New(ctx, queue.Options{
		Store: st, DatabaseURL: e.dbURL, Concurrency: 1,
		MaxAttempts: cfg.MaxAttempts + 1, JobTimeout: cfg.JobTimeout(), RescueAfter: cfg.RescueAfter,
		FetchPollInterval: cfg.FetchPollInterval, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}) // no Workers: an insert-only client
	if err != nil {
		return err
	}
	defer q.Close()

	sessions := make([]uuid.UUID, (n+99)/100)
	now := time.Now().UTC()
	for i := range sessions {
		sessions[i] = uuid.New()
		if err := st.CreateSession(ctx, &session.Session{ID: sessions[i], Status: session.Active,
			Language: "python", SourceCode: pythonHello, CreatedAt: now}); err != nil {
			return err
		}
	}
	sum := sha256.Sum256(nil) // the hash of an empty stdin, as the API computes it
	hash := hex.EncodeToString(sum[:])
	for done := 0; done < n; {
		k := min(backlogChunk, n-done)
		err := func() error {
			tx, err := st.DB().BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			ins, err := tx.PrepareContext(ctx, `INSERT INTO executions
				(id, session_id, tenant, language, source_code, stdin, status, queued_at, attempts, request_hash)
				VALUES ($1, $2, '', 'python', $3, '', 'QUEUED', $4, 0, $5)`)
			if err != nil {
				return err
			}
			defer ins.Close()
			for i := 0; i < k; i++ {
				id := uuid.New()
				if _, err := ins.ExecContext(ctx, id, sessions[(done+i)%len(sessions)], pythonHello,
					time.Now().UnixMicro(), hash); err != nil {
					return err
				}
				job := q.JobOf(id)
				if _, err := tx.ExecContext(ctx, job.SQL, job.Args...); err != nil {
					return err
				}
			}
			return tx.Commit()
		}()
		if err != nil {
			return fmt.Errorf("backlog: %w", err)
		}
		done += k
	}
	return nil
}

// backlogViaAPI queues n runs through the API with many concurrent clients
// (for a server this process cannot reach the database of), perSession at
// a time per session.
func backlogViaAPI(ctx context.Context, c *client, n, perSession int) error {
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sid, used := "", perSession
			for next.Add(1) <= int64(n) {
				if used == perSession {
					var err error
					if sid, err = c.createSession(ctx, "python", pythonHello); err != nil {
						mu.Lock()
						first = errors.Join(first, err)
						mu.Unlock()
						return
					}
					used = 0
				}
				_, st, code, err := c.submit(ctx, sid)
				if err == nil && st != 202 {
					err = fmt.Errorf("backlog run: %d %s", st, code)
				}
				if err != nil {
					mu.Lock()
					first = errors.Join(first, err)
					mu.Unlock()
					return
				}
				used++
			}
		}()
	}
	wg.Wait()
	return first
}

// loadResult is what a timed load loop saw.
type loadResult struct {
	lat     []float64
	elapsed time.Duration
	refused map[string]int // problem code → count
}

func (l loadResult) note() string {
	if len(l.refused) == 0 {
		return ""
	}
	var parts []string
	for k, v := range l.refused {
		parts = append(parts, fmt.Sprintf("%s×%d", k, v))
	}
	sort.Strings(parts)
	return "refused: " + strings.Join(parts, ", ")
}

// load runs op from clients goroutines for d. op returns the HTTP status and
// problem code; only accepted (2xx) requests count in the latencies.
//
// With rate 0 it is a closed loop: each client sends its next request as
// soon as the previous one is answered, so it measures how many requests
// the server takes, and the latency is clients/throughput. With rate > 0 it
// is an open loop: requests are due at a fixed rate whatever the answers do,
// the clients send them as they fall due, and each latency counts from when
// the request was due, so a server that falls behind shows it (no
// coordinated omission); clients must be enough to keep up.
func load(ctx context.Context, clients int, d time.Duration, rate float64,
	setup func(ctx context.Context, w int) (func() (int, string, error), error)) (loadResult, error) {
	ops := make([]func() (int, string, error), clients)
	for w := range ops {
		var err error
		if ops[w], err = setup(ctx, w); err != nil {
			return loadResult{}, err
		}
	}
	var (
		mu    sync.Mutex
		res   = loadResult{refused: map[string]int{}}
		first error
		wg    sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	// next returns when the client's next request is due, false when the
	// phase is over.
	next := func() (time.Time, bool) {
		now := time.Now()
		return now, now.Before(deadline) && ctx.Err() == nil
	}
	if rate > 0 {
		due := make(chan time.Time, clients)
		// stop ends the schedule early when every client has given up (an
		// error) or ctx ends, so that the scheduler never blocks forever.
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			defer close(due)
			interval := time.Duration(float64(time.Second) / rate)
			for t := start; t.Before(deadline); t = t.Add(interval) {
				select {
				case <-time.After(time.Until(t)):
				case <-stop:
					return
				case <-ctx.Done():
					return
				}
				select {
				case due <- t:
				case <-stop:
					return
				case <-ctx.Done():
					return
				}
			}
		}()
		next = func() (time.Time, bool) {
			t, ok := <-due
			return t, ok
		}
	}
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []float64
			refused := map[string]int{}
			defer func() {
				mu.Lock()
				res.lat = append(res.lat, lat...)
				for k, v := range refused {
					res.refused[k] += v
				}
				mu.Unlock()
			}()
			for {
				t0, ok := next()
				if !ok {
					return
				}
				st, code, err := ops[w]()
				if err != nil {
					mu.Lock()
					first = errors.Join(first, err)
					mu.Unlock()
					return
				}
				if st >= 300 {
					refused[code]++
					if rate == 0 && (st == 429 || st == 503) {
						time.Sleep(10 * time.Millisecond)
					}
					continue
				}
				lat = append(lat, msSince(t0))
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	if first != nil {
		return res, first
	}
	return res, ctx.Err()
}

// pacedClients send the paced POST /run requests: far more than a few
// milliseconds per request at -post-rate needs, so that a late answer delays
// no other request.
const pacedClients = 16

// measureSaturation is phase 5 against a server whose workers are all busy
// and whose queue holds backlog runs: POST /run and autosave latency.
// insert creates the backlog; perSession is how many runs one session may
// have in flight on that server.
func measureSaturation(ctx context.Context, c *client, o *Options, workers, perSession int, insert func() error, logf func(string, ...any)) ([]Row, error) {
	logf("saturation: occupying %d workers with sleepers", workers)
	if err := occupyWorkers(ctx, c, workers, sleeperSource); err != nil {
		return nil, err
	}
	logf("saturation: inserting a backlog of %d runs", o.Backlog)
	t0 := time.Now()
	if err := insert(); err != nil {
		return nil, err
	}
	backlogTime := time.Since(t0)
	logf("saturation: backlog created in %s", backlogTime.Round(time.Millisecond))
	time.Sleep(300 * time.Millisecond) // let the API's cached queue depth see the backlog

	// POST /run: each poster moves to a fresh session before it reaches the
	// per-session in-flight cap, so the figure is the cost of accepting a run.
	perPoster := min(perSession, 100)
	submitter := func(ctx context.Context, w int) (func() (int, string, error), error) {
		sid, used := "", perPoster
		return func() (int, string, error) {
			if used >= perPoster {
				var err error
				if sid, err = c.createSession(ctx, "python", pythonHello); err != nil {
					return 0, "", err
				}
				used = 0
			}
			used++
			_, st, code, err := c.submit(ctx, sid)
			return st, code, err
		}, nil
	}
	logf("saturation: POST /run, %d clients back to back, %s", o.Posters, o.Duration)
	runs, err := load(ctx, o.Posters, o.Duration, 0, submitter)
	if err != nil {
		return nil, err
	}
	logf("saturation: POST /run, %.0f/s paced, %s", o.PostRate, o.Duration)
	paced, err := load(ctx, pacedClients, o.Duration, o.PostRate, submitter)
	if err != nil {
		return nil, err
	}
	// Autosave: one session per client, a save of a growing buffer each time.
	logf("saturation: autosave, %d clients, %s", o.Autosavers, o.Duration)
	saves, err := load(ctx, o.Autosavers, o.Duration, 0, func(ctx context.Context, w int) (func() (int, string, error), error) {
		sid, err := c.createSession(ctx, "python", pythonHello)
		if err != nil {
			return nil, err
		}
		i := 0
		return func() (int, string, error) {
			i++
			return c.save(ctx, sid, fmt.Sprintf("def main():\n    print(\"hello %d\")\n\n\nmain()\n", i))
		}, nil
	})
	if err != nil {
		return nil, err
	}
	rs, ps, ss := SummarizeMS(runs.lat), SummarizeMS(paced.lat), SummarizeMS(saves.lat)
	return []Row{
		{Section: "saturation", Name: fmt.Sprintf("workers occupied (%d sleepers) + backlog created", workers),
			Value: backlogTime.Seconds(), Unit: "s", VsBare: fmt.Sprintf("%.0f runs/s inserted", float64(o.Backlog)/backlogTime.Seconds())},
		{Section: "saturation", Name: fmt.Sprintf("POST /run, %d clients back to back, backlog %d", o.Posters, o.Backlog), Latency: &rs,
			Rate: float64(len(runs.lat)) / runs.elapsed.Seconds(), Target: "p99 ≤ 10 ms", Note: runs.note()},
		{Section: "saturation", Name: fmt.Sprintf("POST /run, %.0f/s paced (open loop)", o.PostRate), Latency: &ps,
			Rate: float64(len(paced.lat)) / paced.elapsed.Seconds(), Target: "p99 ≤ 10 ms", Note: paced.note()},
		{Section: "saturation", Name: fmt.Sprintf("PATCH autosave, %d clients", o.Autosavers), Latency: &ss,
			Rate: float64(len(saves.lat)) / saves.elapsed.Seconds(), Target: "≥ 5000 /s", Note: saves.note()},
	}, nil
}
