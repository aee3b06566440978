package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/runbox/runbox/internal/app"
	"github.com/runbox/runbox/internal/config"
)

// embedded is a `runbox serve` running in this process on a temporary data
// directory (and, for PostgreSQL, a fresh database), discarded by stop.
type embedded struct {
	base     string
	cfg      *config.Config
	dbURL    string // "" for SQLite
	dataDir  string
	tmp      string
	logPath  string
	cancel   context.CancelFunc
	done     chan error
	dropDB   func() error
	stopOnce bool
}

// benchEnv raises every limit that would throttle a benchmark client (all of
// them come from one loopback address); limits of the programs stay at their
// defaults unless extra says otherwise.
func benchEnv() map[string]string {
	return map[string]string{
		"RUNBOX_LOG_LEVEL":                "warn",
		"RUNBOX_LOG_FORMAT":               "text",
		"RUNBOX_RUN_RATE":                 "1000000",
		"RUNBOX_RUN_BURST":                "1000000",
		"RUNBOX_AUTOSAVE_RATE":            "1000000",
		"RUNBOX_AUTOSAVE_BURST":           "1000000",
		"RUNBOX_SESSION_RATE":             "1000000",
		"RUNBOX_SESSION_BURST":            "1000000",
		"RUNBOX_MAX_INFLIGHT_PER_SESSION": "1000",
		// The saturation phase's backlog of 100,000 runs is one client's.
		"RUNBOX_MAX_INFLIGHT_PER_CLIENT": "0",
		"RUNBOX_MAX_QUEUE_DEPTH":         "100000000",
		"RUNBOX_WORKER_CONCURRENCY":      fmt.Sprint(runtime.NumCPU()),
		"RUNBOX_SHUTDOWN_GRACE":          "5s",
	}
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// createDatabase makes a fresh database on the server of adminURL and
// returns its URL and a function that drops it.
func createDatabase(ctx context.Context, adminURL string) (string, func() error, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(cctx, adminURL)
	if err != nil {
		return "", nil, fmt.Errorf("postgres: %w", err)
	}
	defer admin.Close(context.Background())
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "runbox_bench_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(cctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("postgres: create database: %w", err)
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		return "", nil, err
	}
	u.Path = "/" + name
	drop := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, adminURL)
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		_, err = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		return err
	}
	return u.String(), drop, nil
}

func postgresReachable(ctx context.Context, adminURL string) bool {
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := pgx.Connect(cctx, adminURL)
	if err != nil {
		return false
	}
	c.Close(context.Background())
	return true
}

// startEmbedded starts `runbox serve` (app.Run with both roles) for driver
// ("sqlite" or "postgres" on pgAdmin) with benchEnv, then extra, on top of
// the defaults, and waits until /readyz answers 200.
func startEmbedded(ctx context.Context, driver, pgAdmin string, extra ...map[string]string) (*embedded, error) {
	tmp, err := os.MkdirTemp("", "runbox-bench-serve-")
	if err != nil {
		return nil, err
	}
	e := &embedded{tmp: tmp, dataDir: filepath.Join(tmp, "data"), logPath: filepath.Join(tmp, "server.log"), done: make(chan error, 1)}
	ok := false
	defer func() {
		if !ok {
			e.stop()
		}
	}()
	if driver == "postgres" {
		if e.dbURL, e.dropDB, err = createDatabase(ctx, pgAdmin); err != nil {
			return nil, err
		}
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	env := benchEnv()
	for _, m := range extra {
		for k, v := range m {
			env[k] = v
		}
	}
	env["RUNBOX_DATA_DIR"] = e.dataDir
	env["RUNBOX_HTTP_ADDR"] = addr
	env["RUNBOX_DATABASE_URL"] = e.dbURL
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		return nil, err
	}
	e.cfg = cfg
	logs, err := os.Create(e.logPath)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancel = cancel
	go func() {
		err := app.Run(sctx, cfg, app.RoleAPI|app.RoleWorker, logs)
		logs.Close()
		e.done <- err
	}()
	e.base = "http://" + addr
	c := newClient(e.base, "")
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-e.done:
			e.done <- err
			return nil, fmt.Errorf("embedded server exited: %v\n%s", err, e.logTail())
		case <-ctx.Done():
			return nil, ctx.Err()
		default:
		}
		if st, _, err := c.do(ctx, "GET", "/readyz", nil, nil); err == nil && st == 200 {
			ok = true
			return e, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, fmt.Errorf("embedded server not ready within 60s\n%s", e.logTail())
}

func (e *embedded) logTail() string {
	b, _ := os.ReadFile(e.logPath)
	s := string(b)
	if len(s) > 4000 {
		s = "…" + s[len(s)-4000:]
	}
	return strings.TrimSpace(s)
}

// stop shuts the server down and discards its data directory and database.
func (e *embedded) stop() error {
	if e.stopOnce {
		return nil
	}
	e.stopOnce = true
	var errs []error
	if e.cancel != nil {
		e.cancel()
		select {
		case err := <-e.done:
			if err != nil {
				errs = append(errs, fmt.Errorf("server: %w", err))
			}
		case <-time.After(90 * time.Second):
			// Runs may still hold mounts under the data directory: leave it.
			return errors.Join(append(errs, errors.New("server did not stop within 90s; left "+e.tmp))...)
		}
	}
	if e.dropDB != nil {
		if err := e.dropDB(); err != nil {
			errs = append(errs, fmt.Errorf("drop database: %w", err))
		}
	}
	if err := os.RemoveAll(e.tmp); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
