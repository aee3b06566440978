// Package app assembles runbox from its parts (store, queue, workers,
// sandbox, API) for each role a process can play, and runs it until its
// context ends, then shuts down gracefully.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"

	"github.com/runbox/runbox/internal/api"
	"github.com/runbox/runbox/internal/buildcache"
	"github.com/runbox/runbox/internal/config"
	"github.com/runbox/runbox/internal/execution"
	"github.com/runbox/runbox/internal/language"
	"github.com/runbox/runbox/internal/queue"
	"github.com/runbox/runbox/internal/sandbox"
	"github.com/runbox/runbox/internal/store"
	"github.com/runbox/runbox/internal/telemetry"
	"github.com/runbox/runbox/internal/worker"
	"github.com/runbox/runbox/openapi"
)

// Role is what a process does: serve the API, run workers, or both.
type Role int

const (
	RoleAPI Role = 1 << iota
	RoleWorker
)

// Migrate applies every schema migration (runbox's and River's) and returns.
func Migrate(ctx context.Context, cfg *config.Config, logs io.Writer) error {
	logger := telemetry.NewLogger(logs, cfg.LogFormat, cfg.LogLevel)
	st, err := store.Open(ctx, cfg.DatabaseURL, cfg.DataDir)
	if err != nil {
		return startErr(cfg, "RUNBOX_DATABASE_URL, RUNBOX_DATA_DIR", err)
	}
	defer st.Close()
	if err := store.MigrateAll(ctx, st); err != nil {
		return err
	}
	logger.Info("migrations applied", "driver", st.Driver())
	return nil
}

// Run runs the API, the workers, or both, until ctx ends; then it stops
// accepting, lets in-flight requests and runs finish within the grace period,
// and returns. Logs go to logs.
func Run(ctx context.Context, cfg *config.Config, roles Role, logs io.Writer) error {
	logger := telemetry.NewLogger(logs, cfg.LogFormat, cfg.LogLevel)
	if roles&RoleAPI != 0 && len(cfg.APIKeys) == 0 && !config.LoopbackOnly(cfg.HTTPAddr) && !cfg.AllowUnauthenticated {
		return errors.New("refusing to listen on a non-loopback address without API keys: set RUNBOX_API_KEYS or RUNBOX_ALLOW_UNAUTHENTICATED=true")
	}
	st, err := store.Open(ctx, cfg.DatabaseURL, cfg.DataDir)
	if err != nil {
		return startErr(cfg, "RUNBOX_DATABASE_URL, RUNBOX_DATA_DIR", err)
	}
	defer st.Close()
	if roles == RoleAPI|RoleWorker {
		// The embedded default migrates itself; split deployments run `runbox migrate` once.
		if err := store.MigrateAll(ctx, st); err != nil {
			return err
		}
	} else if err := store.CheckSchema(ctx, st); errors.Is(err, store.ErrSchemaBehind) {
		// Every statement touching what a missing migration adds would
		// fail; refusing to start says why at once. (A database not up
		// yet is /readyz's to report.)
		return err
	}
	langs, err := language.Load(cfg.LanguagesFile)
	if err != nil {
		return startErr(cfg, "RUNBOX_LANGUAGES_FILE", err)
	}
	langs.Probe(ctx)
	logger.Info("languages available", "languages", langs.IDs())

	metrics := telemetry.NewMetrics()
	hub := execution.NewHub()
	checks := map[string]func(context.Context) string{}

	var workers *river.Workers
	var periodic []*river.PeriodicJob
	var w *worker.Worker
	if roles&RoleWorker != 0 {
		sb, err := sandbox.New(sandbox.Config{Dir: filepath.Join(cfg.DataDir, "jails"), Logger: logger, MemoryCap: cfg.SandboxMemory})
		if err != nil {
			if roles == RoleWorker {
				return startErr(cfg, "RUNBOX_DATA_DIR", fmt.Errorf("sandbox: %w", err))
			}
			// Serve the API anyway: runs stay QUEUED (nothing is lost) and
			// /readyz says why nothing executes.
			logger.Error("sandbox unavailable; executions will wait in the queue", "reason", err.Error())
			checks["sandbox"] = func(context.Context) string { return "sandbox unavailable" }
		} else {
			// Runs after the workers have stopped (defers run last-in, first-out).
			defer sb.Close()
			check, stopSelfCheck := selfCheck(ctx, sb, logger)
			defer stopSelfCheck() // before sb.Close

			checks["sandbox"] = check
			w = &worker.Worker{
				Store: st, Sandbox: sb, Languages: langs, Hub: hub, Metrics: metrics, Logger: logger,
				Attempts: cfg.MaxAttempts, Now: time.Now,
				Limits: language.StepLimits{Run: cfg.Run, Compile: cfg.Compile,
					OutputBytes: cfg.OutputBytes, OutputKill: cfg.OutputKillBytes, Scratch: cfg.ScratchBytes},
			}
			if cfg.CompileCacheBytes > 0 {
				w.Builds = buildcache.New(cfg.CompileCacheBytes)
			}
			workers = river.NewWorkers()
			river.AddWorker(workers, w)
			river.AddWorker(workers, &worker.Purger{Store: st, Retention: cfg.Retention, IdleSessionTTL: cfg.IdleSessionTTL, Logger: logger})
			periodic = append(periodic, worker.PurgeEvery(worker.PurgeInterval(min(cfg.Retention, cfg.IdleSessionTTL))))
		}
	}

	poll := cfg.FetchPollInterval
	if poll == 0 {
		// River wakes workers on a transactional insert only through
		// PostgreSQL's LISTEN/NOTIFY; on SQLite a fetch of the local file
		// costs tens of microseconds, so a worker process polls often
		// instead. `serve` does not need to: its API wakes its own workers
		// the moment a run commits (Queue.Committed), and a 5 ms poll would cost
		// an idle server 3-5 % of a core.
		poll = time.Second
		if st.Driver() == "sqlite" && roles&RoleAPI == 0 {
			poll = 5 * time.Millisecond
		}
	}
	q, err := queue.New(ctx, queue.Options{
		Store: st, DatabaseURL: cfg.DatabaseURL, Workers: workers, Concurrency: cfg.WorkerConcurrency,
		MaxAttempts: cfg.MaxAttempts + 1, JobTimeout: cfg.JobTimeout(), RescueAfter: cfg.RescueAfter,
		FetchPollInterval: poll, Logger: riverLogger(logger), PeriodicJobs: periodic,
	})
	if err != nil {
		return err
	}
	defer q.Close()
	deps := api.Deps{
		Config: cfg, Store: st, Queue: q, Languages: langs, Hub: hub, Metrics: metrics,
		Logger: logger, Checks: checks, OpenAPI: openapi.Spec, Draining: ctx.Done(),
	}
	var handler http.Handler
	addr := cfg.HTTPAddr
	switch {
	case roles&RoleAPI != 0:
		handler = api.NewHandler(deps)
		go func() { _ = st.ListenFinished(ctx, func(id uuid.UUID) { hub.Notify(id, nil) }) }()
	case cfg.MetricsAddr != "":
		handler, addr = api.NewOpsHandler(deps), cfg.MetricsAddr
	}
	// Bound before the workers start: a taken port ends the process before
	// it has claimed or run anything.
	var ln net.Listener
	if handler != nil {
		if ln, err = net.Listen("tcp", addr); err != nil {
			return err
		}
		defer ln.Close() // if we return before serving
	}
	if w != nil {
		release, requeued, err := store.ClaimSQLiteWorker(ctx, st)
		if err != nil {
			return err
		}
		defer release()
		if requeued > 0 {
			logger.Warn("requeued executions left running by a worker that died", "jobs", requeued)
		}
		// Not ctx: cancelling River's start context cancels running jobs,
		// and a SIGTERM must let them finish (q.Stop below).
		if err := q.Start(context.WithoutCancel(ctx)); err != nil {
			return fmt.Errorf("queue: %w", err)
		}
		logger.Info("workers started", "concurrency", cfg.WorkerConcurrency, "driver", st.Driver())
	}

	var srv *http.Server
	serveErr := make(chan error, 1)
	if handler != nil {
		srv = &http.Server{
			Handler:           handler,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       15 * time.Second,
			WriteTimeout:      cfg.RequestTimeout,
			IdleTimeout:       90 * time.Second,
			MaxHeaderBytes:    32 << 10,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
			BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		}
		go func() { serveErr <- srv.Serve(ln) }()
		logger.Info("api listening", "addr", ln.Addr().String(), "driver", st.Driver(), "operational_only", roles&RoleAPI == 0)
	}

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return err
	}
	logger.Info("shutting down", "grace", cfg.ShutdownGrace.String())
	grace, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	if srv != nil {
		if err := srv.Shutdown(grace); err != nil {
			logger.Warn("http shutdown incomplete", "error", err.Error())
		}
	}
	if w != nil {
		if err := q.Stop(grace); err != nil {
			logger.Warn("workers stopped before their runs finished; those runs will be rescued", "error", err.Error())
		}
	}
	logger.Info("stopped")
	return nil
}

// selfCheck runs the sandbox self-check now and then every minute. It
// returns the readiness check that reports its last result, and a stop
// function that ends the self-checks and waits for them (the sandbox must
// not be closed under a running one).
func selfCheck(ctx context.Context, sb *sandbox.Sandbox, logger *slog.Logger) (func(context.Context) string, func()) {
	ctx, cancel := context.WithCancel(ctx)
	var failing atomic.Pointer[string]
	pending := "self-check pending"
	failing.Store(&pending)
	check := func() {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := sb.SelfCheck(cctx); err != nil {
			if ctx.Err() == nil {
				logger.Error("sandbox self-check failed", "reason", err.Error())
			}
			reason := "self-check failed"
			failing.Store(&reason)
			return
		}
		failing.Store(nil)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		check()
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				check()
			}
		}
	}()
	return func(context.Context) string {
		if r := failing.Load(); r != nil {
			return *r
		}
		return ""
	}, func() { cancel(); <-done }
}

// riverLogger keeps River's own chatter at warnings and above.
func riverLogger(l *slog.Logger) *slog.Logger {
	return slog.New(levelFloor{l.Handler(), slog.LevelWarn}).With("component", "river")
}

type levelFloor struct {
	slog.Handler
	floor slog.Level
}

func (h levelFloor) Enabled(ctx context.Context, lvl slog.Level) bool {
	return lvl >= h.floor && h.Handler.Enabled(ctx, lvl)
}

// WithAttrs and WithGroup keep the floor on derived loggers (River derives
// one per component).
func (h levelFloor) WithAttrs(attrs []slog.Attr) slog.Handler {
	return levelFloor{h.Handler.WithAttrs(attrs), h.floor}
}

func (h levelFloor) WithGroup(name string) slog.Handler {
	return levelFloor{h.Handler.WithGroup(name), h.floor}
}

// startErr says which variables a start-up failure concerns, and writes the
// configured paths as the names of their variables: a message naming the
// variable never echoes its value (README, Configuration).
func startErr(cfg *config.Config, vars string, err error) error {
	msg := err.Error()
	for _, v := range []struct{ name, value string }{
		{"$RUNBOX_LANGUAGES_FILE", cfg.LanguagesFile},
		{"$RUNBOX_DATABASE_URL", cfg.DatabaseURL},
		{"$RUNBOX_DATA_DIR", cfg.DataDir},
	} {
		if v.value != "" {
			msg = strings.ReplaceAll(msg, v.value, v.name)
		}
	}
	// A path derived from them (a parent directory that is a file).
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path != "" {
		msg = strings.ReplaceAll(msg, pe.Path, "a path")
	}
	return fmt.Errorf("%s: %s", vars, msg)
}
