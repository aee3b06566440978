// Command runbox-bench measures runbox against a bare fork/exec baseline:
// the sandbox alone, end-to-end latency through the API, throughput under
// concurrent clients, and the API's latency under a saturated queue with a
// large backlog. It only reports; it asserts nothing about time.
//
// By default it starts a fresh embedded `runbox serve` in this process (root
// needed) for each database driver; with -url it measures a running runbox.
//
//	go run ./cmd/runbox-bench -json bench.json
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/runbox/runbox/internal/sandbox"
)

func main() {
	// The binary re-executes itself as the init process of each jail (for
	// the sandbox phase and the embedded server); in that role Init never returns.
	sandbox.Init()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "runbox-bench:", err)
		os.Exit(2)
	}
	if err := run(ctx, opts, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "runbox-bench:", err)
		os.Exit(1)
	}
}

// Options are the benchmark's flags.
type Options struct {
	URL         string // existing runbox; "" = embedded server
	APIKey      string
	DatabaseURL string // embedded server: "" = SQLite, postgres://… = fresh database on that server
	PGAdminURL  string // where PostgreSQL databases are created when -drivers includes postgres
	Drivers     []string
	N           int
	Duration    time.Duration
	Backlog     int
	Clients     []int
	Posters     int     // concurrent POST /run clients in the saturation phase
	PostRate    float64 // POST /run per second of the paced (open-loop) measurement
	Autosavers  int     // concurrent autosave clients in the saturation phase
	Workers     int     // -url: the server's worker count (to occupy them all)
	Inflight    int     // -url: the server's RUNBOX_MAX_INFLIGHT_PER_SESSION
	Saturate    bool
	Phases      map[string]bool // of allPhases; the bare baseline always runs
	Quick       bool
	JSON        string
	ServerEnv   map[string]string // extra RUNBOX_* for the embedded server
}

// allPhases are the phases after the bare baseline, in the order they run.
var allPhases = []string{"sandbox", "e2e", "throughput", "saturation"}

type envFlag map[string]string

func (e envFlag) String() string { return "" }
func (e envFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || !strings.HasPrefix(k, "RUNBOX_") {
		return errors.New("want RUNBOX_NAME=value")
	}
	e[k] = v
	return nil
}

func parseFlags(args []string, stderr io.Writer) (*Options, error) {
	fs := flag.NewFlagSet("runbox-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &Options{ServerEnv: map[string]string{}}
	var drivers, clients, phases string
	fs.StringVar(&o.URL, "url", "", "benchmark the runbox at this URL instead of an embedded server")
	fs.StringVar(&o.APIKey, "api-key", "", "with -url: Bearer key")
	fs.StringVar(&o.DatabaseURL, "database-url", "", `embedded server: "" = SQLite, postgres://… = a fresh database created on that server (dropped afterwards)`)
	fs.StringVar(&o.PGAdminURL, "pg-url", "postgres://root@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL server for -drivers postgres (when -database-url is not a postgres URL)")
	fs.StringVar(&drivers, "drivers", "", "comma-separated embedded drivers: sqlite,postgres (default: both when PostgreSQL is reachable; only -database-url's when set)")
	fs.IntVar(&o.N, "n", 50, "samples per sequential measurement")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "duration of each throughput or saturation phase")
	fs.IntVar(&o.Backlog, "backlog", 100000, "queued runs during the saturation phase")
	fs.StringVar(&clients, "clients", "2,8,32", "concurrent clients of the throughput phases")
	fs.StringVar(&phases, "phases", strings.Join(allPhases, ","), "comma-separated phases to run after the bare baseline")
	fs.IntVar(&o.Posters, "posters", 4, "concurrent POST /run clients sending back to back in the saturation phase")
	fs.Float64Var(&o.PostRate, "post-rate", 100, "POST /run per second of the saturation phase's paced (open-loop) measurement")
	fs.IntVar(&o.Autosavers, "autosavers", 16, "concurrent autosave clients (one session each) in the saturation phase")
	fs.IntVar(&o.Workers, "workers", 0, "with -url: the server's worker count (default: CPUs of this machine)")
	fs.IntVar(&o.Inflight, "inflight", 2, "with -url: the server's RUNBOX_MAX_INFLIGHT_PER_SESSION")
	fs.BoolVar(&o.Saturate, "saturate", false, "with -url: run the saturation phase (it leaves -backlog runs queued on that server, all from this one client: set its RUNBOX_MAX_INFLIGHT_PER_CLIENT to 0 or above -backlog)")
	fs.BoolVar(&o.Quick, "quick", false, "small numbers, for a smoke test")
	fs.StringVar(&o.JSON, "json", "", "write all results to this file")
	fs.Var(envFlag(o.ServerEnv), "env", "RUNBOX_NAME=value for the embedded server (repeatable)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, d := range strings.Split(drivers, ",") {
		if d = strings.TrimSpace(d); d != "" {
			if d != "sqlite" && d != "postgres" {
				return nil, fmt.Errorf("unknown driver %q", d)
			}
			o.Drivers = append(o.Drivers, d)
		}
	}
	o.Phases = map[string]bool{}
	for _, p := range strings.Split(phases, ",") {
		if p = strings.TrimSpace(p); p != "" {
			if !slices.Contains(allPhases, p) {
				return nil, fmt.Errorf("unknown phase %q (want some of %s)", p, strings.Join(allPhases, ","))
			}
			o.Phases[p] = true
		}
	}
	for _, c := range strings.Split(clients, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(c), &n); err != nil || n < 1 {
			return nil, fmt.Errorf("bad -clients %q", clients)
		}
		o.Clients = append(o.Clients, n)
	}
	if o.Quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["n"] {
			o.N = 5
		}
		if !set["duration"] {
			o.Duration = time.Second
		}
		if !set["backlog"] {
			o.Backlog = 500
		}
	}
	if o.N < 1 || o.Duration <= 0 || o.Backlog < 0 || o.Posters < 1 || o.PostRate <= 0 || o.Autosavers < 1 || o.Inflight < 1 {
		return nil, errors.New("-n, -duration, -posters, -post-rate, -autosavers and -inflight must be positive, -backlog not negative")
	}
	return o, nil
}
