// Command runbox is the live code execution service: see README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/runbox/runbox/internal/app"
	"github.com/runbox/runbox/internal/config"
	"github.com/runbox/runbox/internal/sandbox"
)

func main() {
	// The binary re-executes itself as the init process of each jail; in
	// that role Init never returns.
	sandbox.Init()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "runbox:", err)
		}
		os.Exit(2)
	}
}

// subcommand describes one verb of the CLI.
type subcommand struct {
	name, summary string
	role          string // which configuration variables it reads (config.VarsFor)
	flags         func(*flag.FlagSet) *options
	run           func(ctx context.Context, env *environment) error
}

// options are the few things a flag can override for one invocation.
type options struct {
	httpAddr    *string
	databaseURL *string
}

// environment is what a subcommand runs with.
type environment struct {
	cfg            *config.Config
	stdout, stderr io.Writer
}

func serverFlags(fs *flag.FlagSet) *options {
	return &options{
		httpAddr:    fs.String("http-addr", "", "listen address (overrides RUNBOX_HTTP_ADDR)"),
		databaseURL: fs.String("database-url", "", "database URL (overrides RUNBOX_DATABASE_URL)"),
	}
}

func dbFlags(fs *flag.FlagSet) *options {
	return &options{databaseURL: fs.String("database-url", "", "database URL (overrides RUNBOX_DATABASE_URL)")}
}

func noFlags(*flag.FlagSet) *options { return &options{} }

var subcommands = []subcommand{
	{"serve", "API and workers in one process (the embedded default)", "serve", serverFlags, func(ctx context.Context, e *environment) error {
		return app.Run(ctx, e.cfg, app.RoleAPI|app.RoleWorker, e.stderr)
	}},
	{"api", "the HTTP API only", "api", serverFlags, func(ctx context.Context, e *environment) error {
		return app.Run(ctx, e.cfg, app.RoleAPI, e.stderr)
	}},
	{"worker", "workers only: fetch queued runs and execute them in the sandbox", "worker", dbFlags, func(ctx context.Context, e *environment) error {
		return app.Run(ctx, e.cfg, app.RoleWorker, e.stderr)
	}},
	{"migrate", "apply database schema migrations and exit", "migrate", dbFlags, func(ctx context.Context, e *environment) error {
		return app.Migrate(ctx, e.cfg, e.stderr)
	}},
	{"version", "print the version and exit", "", noFlags, func(_ context.Context, e *environment) error {
		fmt.Fprintln(e.stdout, "runbox", version())
		return nil
	}},
}

// run is the whole program; main only supplies the process's environment.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) < 2 || args[1] == "help" || args[1] == "-h" || args[1] == "--help" {
		usage(stdout)
		if len(args) < 2 {
			return errors.New("a subcommand is required")
		}
		return nil
	}
	for _, sc := range subcommands {
		if sc.name != args[1] {
			continue
		}
		fs := flag.NewFlagSet("runbox "+sc.name, flag.ContinueOnError)
		fs.SetOutput(stdout)
		opts := sc.flags(fs)
		fs.Usage = func() { subcommandUsage(stdout, sc, fs) }
		if err := fs.Parse(args[2:]); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return err
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("%s takes no arguments", sc.name)
		}
		cfg, err := config.Load(getenv)
		if err != nil {
			return fmt.Errorf("configuration: %w", err)
		}
		if opts.httpAddr != nil && *opts.httpAddr != "" {
			cfg.HTTPAddr = *opts.httpAddr
		}
		if opts.databaseURL != nil && *opts.databaseURL != "" {
			cfg.DatabaseURL = *opts.databaseURL
		}
		return sc.run(ctx, &environment{cfg: cfg, stdout: stdout, stderr: stderr})
	}
	usage(stdout)
	return fmt.Errorf("unknown subcommand %q", args[1])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: runbox <subcommand> [flags]\n\nSubcommands:")
	for _, sc := range subcommands {
		fmt.Fprintf(w, "  %-8s %s\n", sc.name, sc.summary)
	}
	fmt.Fprintln(w, "\nRun 'runbox <subcommand> --help' for its flags and environment variables.")
}

func subcommandUsage(w io.Writer, sc subcommand, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: runbox %s [flags]\n\n%s.\n\nFlags:\n", sc.name, sc.summary)
	fs.PrintDefaults()
	fmt.Fprintln(w, "  -h, --help\n    \tshow this help")
	if vars := config.VarsFor(sc.role); len(vars) > 0 {
		fmt.Fprintln(w, "\nEnvironment variables:")
		for _, v := range vars {
			fmt.Fprintf(w, "  %s (default: %s)\n    \t%s\n", v.Name, v.Default, v.Meaning)
		}
	}
}

func version() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return info.Main.Version + " (" + s.Value[:12] + ")"
			}
		}
		return info.Main.Version
	}
	return "(unknown)"
}
