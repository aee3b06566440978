// Package config reads runbox's configuration from RUNBOX_* environment
// variables. Every variable, its default and meaning is listed in Vars, which
// the README's table and every subcommand's --help are checked against.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Limits bound one step (compile or run) of an execution.
type Limits struct {
	WallTime    time.Duration
	CPUTime     time.Duration
	MemoryBytes int64
	Pids        int
}

// Config is everything runbox reads from its environment.
type Config struct {
	DatabaseURL          string
	DataDir              string
	HTTPAddr             string
	MetricsAddr          string
	WorkerConcurrency    int
	APIKeys              []string
	AllowUnauthenticated bool
	LanguagesFile        string
	LogLevel             string
	LogFormat            string

	Run, Compile    Limits
	OutputBytes     int64
	OutputKillBytes int64
	ScratchBytes    int64
	SandboxMemory   int64 // all jails together; 0: half the host's RAM
	// CompileCacheBytes bounds a worker's cache of compiled programs; 0: none.
	CompileCacheBytes int64
	MaxSourceBytes    int64
	MaxStdinBytes     int64

	MaxQueueDepth         int64
	MaxInflightPerSession int
	MaxInflightPerClient  int     // 0: no bound
	MaxWaitsPerClient     int     // long-polls held at once per client; 0: no bound
	RunRate               float64 // runs per second per client
	RunBurst              int
	AutosaveRate          float64 // autosaves per second per client
	AutosaveBurst         int
	SessionRate           float64 // sessions created per second per client
	SessionBurst          int

	MaxAttempts       int
	ShutdownGrace     time.Duration
	RequestTimeout    time.Duration
	Retention         time.Duration
	IdleSessionTTL    time.Duration
	FetchPollInterval time.Duration // 0: the driver's default
	// RescueAfter is how long a RUNNING job may go without finishing before
	// it is presumed orphaned (its worker died) and run again; 0 = derived.
	RescueAfter time.Duration
}

// Var documents one environment variable.
type Var struct {
	Name, Default, Meaning string
	Roles                  []string // subcommands that read it: serve, api, worker, migrate
}

var (
	all    = []string{"serve", "api", "worker", "migrate"}
	apiSrv = []string{"serve", "api"}
	worker = []string{"serve", "worker"}
	server = []string{"serve", "api", "worker"}
)

// Vars lists every variable runbox reads.
var Vars = []Var{
	{"RUNBOX_DATABASE_URL", "(empty: SQLite in RUNBOX_DATA_DIR)", "sqlite://PATH or postgres://… ; empty means the embedded SQLite file DATA_DIR/runbox.db", all},
	{"RUNBOX_DATA_DIR", "./data", "directory for the SQLite file and the jails' scratch mounts; created on first start", all},
	{"RUNBOX_HTTP_ADDR", "127.0.0.1:8080", "listen address of the API", apiSrv},
	{"RUNBOX_METRICS_ADDR", "(none)", "listen address of /healthz, /readyz and /metrics in a `runbox worker` process (serve and api expose them on RUNBOX_HTTP_ADDR)", []string{"worker"}},
	{"RUNBOX_WORKER_CONCURRENCY", "number of CPUs", "executions run at once by one worker process", worker},
	{"RUNBOX_API_KEYS", "(none)", "comma-separated API keys, each optionally prefixed `tenant:` (a bare key is its own tenant); enables Bearer authentication", apiSrv},
	{"RUNBOX_API_KEYS_FILE", "(none)", "file with one tenant:key per line, read instead of RUNBOX_API_KEYS (for secrets)", apiSrv},
	{"RUNBOX_ALLOW_UNAUTHENTICATED", "false", "allow listening on a non-loopback address without API keys", apiSrv},
	{"RUNBOX_LANGUAGES_FILE", "(embedded registry)", "YAML language registry replacing the embedded one", server},
	{"RUNBOX_LOG_LEVEL", "info", "debug, info, warn or error", all},
	{"RUNBOX_LOG_FORMAT", "json", "json or text", all},
	{"RUNBOX_RUN_WALL_TIME", "5s", "wall-clock limit of a run", worker},
	{"RUNBOX_RUN_CPU_TIME", "5s", "CPU-time limit of a run", worker},
	{"RUNBOX_RUN_MEMORY", "256MiB", "memory limit of a run (cgroup, swap off)", worker},
	{"RUNBOX_RUN_PIDS", "64", "processes and threads of a run", worker},
	{"RUNBOX_COMPILE_WALL_TIME", "15s", "wall-clock limit of a compile step", worker},
	{"RUNBOX_COMPILE_CPU_TIME", "15s", "CPU-time limit of a compile step", worker},
	{"RUNBOX_COMPILE_MEMORY", "1GiB", "memory limit of a compile step", worker},
	{"RUNBOX_COMPILE_PIDS", "256", "processes and threads of a compile step", worker},
	{"RUNBOX_OUTPUT_LIMIT", "64KiB", "stdout and stderr kept, each", worker},
	{"RUNBOX_OUTPUT_KILL_LIMIT", "1MiB", "a program writing more than this to one stream is killed (OUTPUT_LIMIT_EXCEEDED)", worker},
	{"RUNBOX_SCRATCH_SIZE", "32MiB", "writable scratch space of a run: `/box`, `/tmp` and `/dev/shm` together", worker},
	{"RUNBOX_SANDBOX_MEMORY", "half the host's RAM", "memory of all jails on the host together (the limit of the `runbox` parent cgroup they share): it bounds memory a run pins past its end, which no run's own limit then covers", worker},
	{"RUNBOX_COMPILE_CACHE", "64MiB", "memory a worker process keeps compiled programs in, so that a run of unchanged source in the same session skips its compile step (the compiler's output is still shown); 0 = no cache", worker},
	{"RUNBOX_MAX_SOURCE_BYTES", "64KiB", "largest source_code accepted", apiSrv},
	{"RUNBOX_MAX_STDIN_BYTES", "64KiB", "largest stdin accepted", apiSrv},
	{"RUNBOX_MAX_QUEUE_DEPTH", "10000", "queued executions beyond which runs are refused with 503 overloaded", apiSrv},
	{"RUNBOX_MAX_INFLIGHT_PER_SESSION", "2", "queued or running executions allowed per session", apiSrv},
	{"RUNBOX_MAX_WAITS_PER_CLIENT", "256", "long-polls (`?wait=`) one client may hold at once (same keying as the rate limits); past it a GET answers at once with the execution as it is; 0 = no bound", apiSrv},
	{"RUNBOX_MAX_INFLIGHT_PER_CLIENT", "1000", "queued or running executions allowed per client, over all its sessions (same keying as the rate limits), so that one client cannot fill the backlog for everyone; 0 = no bound", apiSrv},
	{"RUNBOX_RUN_RATE", "20", "runs per second per client: the tenant when API keys are on (size it for everyone behind one key), else the client address (token bucket refill)", apiSrv},
	{"RUNBOX_RUN_BURST", "100", "run token bucket size", apiSrv},
	{"RUNBOX_AUTOSAVE_RATE", "200", "autosaves per second per client (same keying as runs)", apiSrv},
	{"RUNBOX_AUTOSAVE_BURST", "400", "autosave token bucket size", apiSrv},
	{"RUNBOX_SESSION_RATE", "RUNBOX_RUN_RATE", "sessions created per second per client (same keying as runs): a session is kept until it is closed or idle and then purged, so its creation is what a stranger could fill the disk with; a session is made to be run, so by default it follows the run rate", apiSrv},
	{"RUNBOX_SESSION_BURST", "5 × RUNBOX_RUN_BURST", "session creation token bucket size", apiSrv},
	{"RUNBOX_MAX_ATTEMPTS", "3", "attempts of an execution whose failure is not the program's (sandbox or infrastructure) before FAILED INTERNAL_ERROR", worker},
	{"RUNBOX_SHUTDOWN_GRACE", "30s", "time in-flight requests and runs get to finish on SIGTERM", server},
	{"RUNBOX_REQUEST_TIMEOUT", "35s", "upper bound of one HTTP request (long-polls included)", apiSrv},
	{"RUNBOX_RETENTION", "168h", "executions finished and sessions closed longer ago are purged (by the workers)", worker},
	{"RUNBOX_IDLE_SESSION_TTL", "720h", "ACTIVE sessions neither saved nor run (no run queued or ended) for this long, with no run in flight, are purged with their executions (they then answer 404; by the workers)", worker},
	{"RUNBOX_RESCUE_AFTER", "compile + run wall time + 35s", "a run still RUNNING this long is presumed orphaned by a dead worker and re-queued (it must exceed the longest allowed run)", worker},
	{"RUNBOX_FETCH_POLL_INTERVAL", "5ms for a `runbox worker` on SQLite, else 1s", "how often idle workers look for new jobs; PostgreSQL wakes them on insert (LISTEN/NOTIFY), and so does `serve` on SQLite (the API wakes its own workers when a run commits); a SQLite worker in another process relies on this poll of the local file (about 3 % of a core while idle; raise it to trade latency for idle CPU)", worker},
}

// VarsFor returns the variables the given subcommand reads.
func VarsFor(role string) []Var {
	var out []Var
	for _, v := range Vars {
		for _, r := range v.Roles {
			if r == role {
				out = append(out, v)
				break
			}
		}
	}
	return out
}

// Load reads the configuration; getenv is os.Getenv outside tests.
func Load(getenv func(string) string) (*Config, error) {
	p := parser{getenv: getenv}
	c := &Config{
		DatabaseURL:          getenv("RUNBOX_DATABASE_URL"),
		DataDir:              p.str("RUNBOX_DATA_DIR", "./data"),
		HTTPAddr:             p.addr("RUNBOX_HTTP_ADDR", "127.0.0.1:8080"),
		MetricsAddr:          p.addr("RUNBOX_METRICS_ADDR", ""),
		WorkerConcurrency:    p.int("RUNBOX_WORKER_CONCURRENCY", runtime.NumCPU(), 1, 1024),
		AllowUnauthenticated: p.bool("RUNBOX_ALLOW_UNAUTHENTICATED"),
		LanguagesFile:        getenv("RUNBOX_LANGUAGES_FILE"),
		LogLevel:             p.oneOf("RUNBOX_LOG_LEVEL", "info", "debug", "info", "warn", "error"),
		LogFormat:            p.oneOf("RUNBOX_LOG_FORMAT", "json", "json", "text"),
		Run: Limits{
			WallTime:    p.duration("RUNBOX_RUN_WALL_TIME", 5*time.Second, time.Millisecond, maxStepTime),
			CPUTime:     p.duration("RUNBOX_RUN_CPU_TIME", 5*time.Second, time.Millisecond, maxStepTime),
			MemoryBytes: p.bytes("RUNBOX_RUN_MEMORY", 256<<20),
			Pids:        p.int("RUNBOX_RUN_PIDS", 64, 1, 1<<15),
		},
		Compile: Limits{
			WallTime:    p.duration("RUNBOX_COMPILE_WALL_TIME", 15*time.Second, time.Millisecond, maxStepTime),
			CPUTime:     p.duration("RUNBOX_COMPILE_CPU_TIME", 15*time.Second, time.Millisecond, maxStepTime),
			MemoryBytes: p.bytes("RUNBOX_COMPILE_MEMORY", 1<<30),
			Pids:        p.int("RUNBOX_COMPILE_PIDS", 256, 1, 1<<15),
		},
		OutputBytes:           p.bytes("RUNBOX_OUTPUT_LIMIT", 64<<10),
		OutputKillBytes:       p.bytes("RUNBOX_OUTPUT_KILL_LIMIT", 1<<20),
		ScratchBytes:          p.bytes("RUNBOX_SCRATCH_SIZE", 32<<20),
		SandboxMemory:         p.bytes("RUNBOX_SANDBOX_MEMORY", 0),
		CompileCacheBytes:     p.bytesOrNone("RUNBOX_COMPILE_CACHE", 64<<20),
		MaxSourceBytes:        p.bytes("RUNBOX_MAX_SOURCE_BYTES", 64<<10),
		MaxStdinBytes:         p.bytes("RUNBOX_MAX_STDIN_BYTES", 64<<10),
		MaxQueueDepth:         int64(p.int("RUNBOX_MAX_QUEUE_DEPTH", 10000, 1, 1<<40)),
		MaxInflightPerSession: p.int("RUNBOX_MAX_INFLIGHT_PER_SESSION", 2, 1, 1000),
		MaxInflightPerClient:  p.int("RUNBOX_MAX_INFLIGHT_PER_CLIENT", 1000, 0, 1<<30),
		MaxWaitsPerClient:     p.int("RUNBOX_MAX_WAITS_PER_CLIENT", 256, 0, 1<<30),
		RunRate:               p.rate("RUNBOX_RUN_RATE", 20),
		RunBurst:              p.int("RUNBOX_RUN_BURST", 100, 1, 1<<20),
		AutosaveRate:          p.rate("RUNBOX_AUTOSAVE_RATE", 200),
		AutosaveBurst:         p.int("RUNBOX_AUTOSAVE_BURST", 400, 1, 1<<20),
		MaxAttempts:           p.int("RUNBOX_MAX_ATTEMPTS", 3, 1, 100),
		ShutdownGrace:         p.duration("RUNBOX_SHUTDOWN_GRACE", 30*time.Second, time.Millisecond, 24*time.Hour),
		RequestTimeout:        p.duration("RUNBOX_REQUEST_TIMEOUT", 35*time.Second, time.Millisecond, 24*time.Hour),
		Retention:             p.duration("RUNBOX_RETENTION", 7*24*time.Hour, time.Millisecond, 100*365*24*time.Hour),
		IdleSessionTTL:        p.duration("RUNBOX_IDLE_SESSION_TTL", 30*24*time.Hour, time.Millisecond, 100*365*24*time.Hour),
		FetchPollInterval:     p.duration("RUNBOX_FETCH_POLL_INTERVAL", 0, time.Millisecond, time.Hour),
	}
	c.SessionRate = p.rate("RUNBOX_SESSION_RATE", c.RunRate)
	c.SessionBurst = p.int("RUNBOX_SESSION_BURST", min(5*c.RunBurst, 1<<20), 1, 1<<20)
	c.RescueAfter = p.duration("RUNBOX_RESCUE_AFTER", c.JobTimeout()+30*time.Second, time.Millisecond, 7*24*time.Hour)
	if c.RescueAfter <= c.JobTimeout() {
		p.add(errors.New("RUNBOX_RESCUE_AFTER must exceed the compile and run wall times plus 5s"))
	}
	if c.SandboxMemory > 0 && c.SandboxMemory < max(c.Run.MemoryBytes, c.Compile.MemoryBytes) {
		p.add(errors.New("RUNBOX_SANDBOX_MEMORY must be at least the compile and run memory limits"))
	}
	// Absolute, so that the jails (mounted under it) and the SQLite file do
	// not depend on where a later step of the process looks from.
	if abs, err := filepath.Abs(c.DataDir); err == nil {
		c.DataDir = abs
	}
	keys, err := loadKeys(getenv)
	p.add(err)
	c.APIKeys = keys
	// SPEC §2: a request body over 1 MiB is refused before its fields are
	// read, so larger source or stdin limits could never be reached.
	for _, v := range []struct {
		name  string
		value int64
	}{{"RUNBOX_MAX_SOURCE_BYTES", c.MaxSourceBytes}, {"RUNBOX_MAX_STDIN_BYTES", c.MaxStdinBytes}} {
		if v.value > MaxBodyBytes {
			p.add(fmt.Errorf("%s must be at most 1MiB, the limit of a request body", v.name))
		}
	}
	if c.OutputKillBytes < c.OutputBytes {
		p.add(errors.New("RUNBOX_OUTPUT_KILL_LIMIT must be at least RUNBOX_OUTPUT_LIMIT"))
	}
	if c.RequestTimeout < 31*time.Second {
		p.add(errors.New("RUNBOX_REQUEST_TIMEOUT must exceed the longest ?wait= (30s)"))
	}
	return c, errors.Join(p.errs...)
}

// MaxBodyBytes bounds every request body (SPEC §2: over 1 MiB → 413).
const MaxBodyBytes = 1 << 20

// JobTimeout bounds one attempt of an execution: both steps' wall time plus
// a margin for jail set-up and recording the result. The sandbox enforces
// the steps' own limits; this is the queue's backstop.
func (c *Config) JobTimeout() time.Duration {
	return c.Compile.WallTime + c.Run.WallTime + 5*time.Second
}

// LoopbackOnly reports whether addr listens only on a loopback address.
func LoopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func loadKeys(getenv func(string) string) ([]string, error) {
	raw := getenv("RUNBOX_API_KEYS")
	if f := getenv("RUNBOX_API_KEYS_FILE"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, errors.New("RUNBOX_API_KEYS_FILE cannot be read")
		}
		raw = strings.ReplaceAll(string(b), "\n", ",")
	}
	var keys []string
	seen := map[string]bool{}
	for _, k := range strings.Split(raw, ",") {
		if k = strings.TrimSpace(k); k == "" || strings.HasPrefix(k, "#") {
			continue
		}
		_, key, _ := SplitKey(k)
		switch {
		case key == "" || strings.ContainsAny(key, " \t"):
			return nil, errors.New("RUNBOX_API_KEYS: every key must be non-empty, without spaces")
		case seen[key]:
			return nil, errors.New("RUNBOX_API_KEYS: a key is given twice")
		}
		seen[key] = true
		keys = append(keys, k)
	}
	if raw != "" && len(keys) == 0 {
		// Set, yet no key: authentication would silently be off.
		return nil, errors.New("RUNBOX_API_KEYS is set but holds no key")
	}
	return keys, nil
}

// SplitKey reads one entry of RUNBOX_API_KEYS: "tenant:key", or a bare key
// (named false), whose tenant the API derives from the key.
func SplitKey(entry string) (tenant, key string, named bool) {
	tenant, key, named = strings.Cut(entry, ":")
	if !named {
		return "", entry, false
	}
	return tenant, key, true
}

// ParseBytes reads a size such as 65536, 64KiB, 256MiB or 1GiB.
func ParseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 || n > (1<<50)/mult {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	return n * mult, nil
}

type parser struct {
	getenv func(string) string
	errs   []error
}

func (p *parser) add(err error) {
	if err != nil {
		p.errs = append(p.errs, err)
	}
}

func (p *parser) str(name, def string) string {
	if v := p.getenv(name); v != "" {
		return v
	}
	return def
}

func (p *parser) oneOf(name, def string, allowed ...string) string {
	v := p.str(name, def)
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	p.add(fmt.Errorf("%s must be one of %s", name, strings.Join(allowed, ", ")))
	return def
}

func (p *parser) int(name string, def, min, max int) int {
	v := p.getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		p.add(fmt.Errorf("%s must be an integer between %d and %d", name, min, max))
		return def
	}
	return n
}

// Rates, in events per second: below minRate a token takes longer than a
// day to come back (and the limiter's arithmetic would overflow); above
// maxRate there is no limit worth the name.
const (
	minRate = 0.001
	maxRate = 1e9
)

func (p *parser) rate(name string, def float64) float64 {
	v := p.getenv(name)
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	// NaN fails both comparisons.
	if err != nil || !(f >= minRate && f <= maxRate) {
		p.add(fmt.Errorf("%s must be a number of events per second from %g to %g", name, minRate, maxRate))
		return def
	}
	return f
}

// addr reads a listen address: host:port, the host possibly empty (every
// interface), the port a number (0: any free port).
func (p *parser) addr(name, def string) string {
	v := p.str(name, def)
	if v == "" {
		return v
	}
	_, port, err := net.SplitHostPort(v)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
		p.add(fmt.Errorf("%s must be a listen address such as 127.0.0.1:8080", name))
		return def
	}
	return v
}

func (p *parser) bool(name string) bool {
	v := p.getenv(name)
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.add(fmt.Errorf("%s must be true or false", name))
	}
	return b
}

// maxStepTime bounds the time limits of a step: the sum of a run's limits
// and margins must stay far from overflowing a time.Duration.
const maxStepTime = 24 * time.Hour

func (p *parser) duration(name string, def, min, max time.Duration) time.Duration {
	v := p.getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < min || d > max {
		p.add(fmt.Errorf("%s must be a duration from %v to %v", name, min, max))
		return def
	}
	return d
}

// bytesOrNone is bytes where 0 turns the thing off.
func (p *parser) bytesOrNone(name string, def int64) int64 {
	if strings.TrimSpace(p.getenv(name)) == "0" {
		return 0
	}
	return p.bytes(name, def)
}

func (p *parser) bytes(name string, def int64) int64 {
	v := p.getenv(name)
	if v == "" {
		return def
	}
	n, err := ParseBytes(v)
	if err != nil {
		p.add(fmt.Errorf("%s must be a size such as 64KiB or 256MiB", name))
		return def
	}
	return n
}
