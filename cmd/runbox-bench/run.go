package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
)

// run is the whole benchmark: the suite once per driver (or once against
// -url), a table per driver on stdout, progress on stderr, and -json.
func run(ctx context.Context, o *Options, stdout, stderr io.Writer) error {
	started := time.Now()
	logf := func(format string, args ...any) {
		fmt.Fprintf(stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	m := describeMachine()
	rep := Report{Machine: m, Command: strings.Join(os.Args, " "), Started: started.UTC(),
		Options: map[string]any{"n": o.N, "duration": o.Duration.String(), "backlog": o.Backlog, "clients": o.Clients,
			"posters": o.Posters, "post_rate": o.PostRate, "autosavers": o.Autosavers, "url": o.URL, "quick": o.Quick, "env": o.ServerEnv}}

	pgAdmin := o.PGAdminURL
	if strings.HasPrefix(o.DatabaseURL, "postgres://") || strings.HasPrefix(o.DatabaseURL, "postgresql://") {
		pgAdmin = o.DatabaseURL
	}
	drivers := o.Drivers
	switch {
	case o.URL != "":
		drivers = []string{"url"}
	case len(drivers) == 0 && o.DatabaseURL != "":
		drivers = []string{"postgres"}
	case len(drivers) == 0:
		drivers = []string{"sqlite"}
		if postgresReachable(ctx, pgAdmin) {
			drivers = append(drivers, "postgres")
		} else {
			logf("PostgreSQL not reachable: benchmarking SQLite only")
		}
	}
	rep.Options["drivers"] = drivers

	fmt.Fprintln(stdout, "runbox-bench  "+started.UTC().Format(time.RFC3339))
	for _, l := range m.lines() {
		fmt.Fprintln(stdout, l)
	}
	fmt.Fprintf(stdout, "options: n=%d duration=%s backlog=%d clients=%v drivers=%v\n", o.N, o.Duration, o.Backlog, o.Clients, drivers)

	var errs []error
	for _, d := range drivers {
		t0 := time.Now()
		logf("=== %s ===", d)
		rows, err := suite(ctx, o, d, pgAdmin, logf)
		res := DriverResult{Driver: d, Rows: rows, ElapsedSeconds: time.Since(t0).Seconds()}
		if err != nil {
			res.Error = err.Error()
			errs = append(errs, fmt.Errorf("%s: %w", d, err))
		}
		rep.Results = append(rep.Results, res)
		printDriver(stdout, res)
		if ctx.Err() != nil {
			break
		}
	}
	rep.ElapsedSeconds = time.Since(started).Seconds()
	fmt.Fprintf(stdout, "\ntotal: %.0f s\n", rep.ElapsedSeconds)
	if o.JSON != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.JSON, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

// suite runs every phase for one driver and returns the rows it got, even
// when a later phase fails.
func suite(ctx context.Context, o *Options, driver, pgAdmin string, logf func(string, ...any)) (rows []Row, err error) {
	bare, r, err := measureBare(ctx, o, logf)
	rows = append(rows, r...)
	if err != nil {
		return rows, fmt.Errorf("bare: %w", err)
	}
	if o.Phases["sandbox"] && (driver != "url" || os.Geteuid() == 0) {
		r, err = measureSandbox(ctx, o, bare, logf)
		rows = append(rows, r...)
		if err != nil {
			return rows, fmt.Errorf("sandbox: %w", err)
		}
	}

	// Phases 3 and 4 on one server.
	c := newClient(o.URL, o.APIKey)
	var srv *embedded
	if driver != "url" && (o.Phases["e2e"] || o.Phases["throughput"]) {
		logf("starting an embedded runbox serve (%s)", driver)
		if srv, err = startEmbedded(ctx, driver, pgAdmin, o.ServerEnv); err != nil {
			return rows, err
		}
		c = newClient(srv.base, "")
	}
	r, err = serverPhases(ctx, c, o, bare, logf)
	rows = append(rows, r...)
	if srv != nil {
		if serr := srv.stop(); serr != nil {
			err = errors.Join(err, serr)
		}
	}
	if err != nil {
		return rows, err
	}

	// Phase 5 on a fresh server whose workers the sleepers can hold.
	var sr []Row
	switch {
	case !o.Phases["saturation"]:
	case driver != "url":
		logf("starting an embedded runbox serve for the saturation phase (%s)", driver)
		if srv, err = startEmbedded(ctx, driver, pgAdmin, o.ServerEnv, saturationEnv()); err != nil {
			return rows, err
		}
		c = newClient(srv.base, "")
		sr, err = measureSaturation(ctx, c, o, srv.cfg.WorkerConcurrency, srv.cfg.MaxInflightPerSession,
			func() error { return insertBacklog(ctx, srv, o.Backlog) }, logf)
		logf("stopping the saturation server (discards the backlog)")
		if serr := srv.stop(); serr != nil {
			err = errors.Join(err, serr)
		}
	case o.Saturate:
		workers := o.Workers
		if workers == 0 {
			workers = runtime.NumCPU()
		}
		sr, err = measureSaturation(ctx, c, o, workers, o.Inflight,
			func() error { return backlogViaAPI(ctx, c, o.Backlog, o.Inflight) }, logf)
		if err == nil {
			sr[0].Note = "backlog inserted through the API; those runs stay queued on that server"
		}
	default:
		logf("saturation phase skipped against -url (it would leave %d runs queued there); -saturate runs it", o.Backlog)
	}
	for i := range sr {
		if sr[i].Latency != nil && sr[i].Latency.N > 0 && bare.Python.N > 0 {
			sr[i].VsBare = fmt.Sprintf("p50 = %.3f× bare python p50", sr[i].Latency.P50/bare.Python.P50)
		}
		if strings.HasPrefix(sr[i].Name, "PATCH") && bare.PythonRate > 0 {
			sr[i].VsBare += fmt.Sprintf("; %.0f× bare python runs/s", sr[i].Rate/bare.PythonRate)
		}
	}
	rows = append(rows, sr...)
	return rows, err
}

// serverPhases are phases 3 (end to end, sequential) and 4 (throughput).
func serverPhases(ctx context.Context, c *client, o *Options, bare Baseline, logf func(string, ...any)) ([]Row, error) {
	var rows []Row
	if o.Phases["e2e"] {
		r, err := e2ePhase(ctx, c, o, bare, logf)
		rows = append(rows, r...)
		if err != nil {
			return rows, err
		}
	}
	if !o.Phases["throughput"] {
		return rows, nil
	}
	for _, n := range o.Clients {
		// The host's speed drifts over minutes (bare parallel python moved
		// by 15-25 % between runs on a paravirtualised host): a baseline
		// measured right before each row tells the drift from the service.
		logf("throughput: bare python parallel alongside, %s", o.Duration/2)
		alongside, err := bareParallelPython(ctx, o.Duration/2)
		if err != nil {
			return rows, fmt.Errorf("bare alongside: %w", err)
		}
		logf("throughput: %d clients, %s", n, o.Duration)
		row, err := measureThroughput(ctx, c, o, n, bare)
		if err != nil {
			return rows, fmt.Errorf("throughput %d: %w", n, err)
		}
		if alongside.Rate > 0 {
			just := fmt.Sprintf("%.2f× bare parallel python measured just before it (%.1f runs/s", row.Rate/alongside.Rate, alongside.Rate)
			if alongside.CPU != nil && row.CPU != nil {
				just += fmt.Sprintf("; its CPU a run %.1f ms, %.2f× this row's", alongside.CPU.PerRunMS, alongside.CPU.PerRunMS/row.CPU.PerRunMS)
			}
			row.Note = joinNotes(just+")", row.Note)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// e2ePhase is phase 3: python and C, sequential, through the API.
func e2ePhase(ctx context.Context, c *client, o *Options, bare Baseline, logf func(string, ...any)) ([]Row, error) {
	var rows []Row
	logf("e2e: python sequential (n=%d)", o.N)
	r, err := measureE2E(ctx, c, o, "python", pythonHello, bare.Python, "bare python", "python hello", "≤ +10 ms p50",
		func() error { return barePython(ctx) }, nil)
	rows = append(rows, r...)
	if err != nil {
		return rows, fmt.Errorf("e2e python: %w", err)
	}
	logf("e2e: C compile + run sequential, source edited before each run")
	r, err = measureE2E(ctx, c, o, "c", cHello, bare.CCompile, "bare C compile+exec", "C compile + run (edited)", "", nil,
		func(n int) string { return fmt.Sprintf("%s// edit %d\n", cHello, n) })
	rows = append(rows, r...)
	if err != nil {
		return rows, fmt.Errorf("e2e c: %w", err)
	}
	logf("e2e: C run again, unchanged source (the worker's build)")
	r, err = measureE2E(ctx, c, o, "c", cHello, bare.CPrebuilt, "bare C prebuilt exec", "C run again (unchanged)", "", nil, nil)
	rows = append(rows, r...)
	if err != nil {
		return rows, fmt.Errorf("e2e c again: %w", err)
	}
	return rows, nil
}
