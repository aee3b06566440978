// Package telemetry sets up runbox's structured logs and Prometheus metrics.
// Metric labels are bounded sets (route patterns, languages, statuses):
// never ids, which would grow without limit.
package telemetry

import (
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// NewLogger returns a JSON (or text) logger at the given level.
func NewLogger(w io.Writer, format, level string) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lvl}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// Metrics are every runbox metric, registered on their own registry so that
// tests can start several servers in one process.
type Metrics struct {
	Registry *prometheus.Registry

	HTTPRequests    *prometheus.CounterVec
	HTTPDuration    *prometheus.HistogramVec
	Executions      *prometheus.CounterVec
	QueueWait       *prometheus.HistogramVec
	RunDuration     *prometheus.HistogramVec
	Running         prometheus.Gauge
	Retries         prometheus.Counter
	Rescues         prometheus.Counter
	SandboxFailures prometheus.Counter
	Prestarted      *prometheus.CounterVec
	CompileCache    *prometheus.CounterVec
	Rejections      *prometheus.CounterVec
}

// NewMetrics creates and registers every metric, with Go runtime and process metrics.
func NewMetrics() *Metrics {
	buckets := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runbox_http_requests_total", Help: "HTTP requests by route pattern, method and status.",
		}, []string{"route", "method", "status"}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "runbox_http_request_duration_seconds", Help: "HTTP request latency by route pattern and method.", Buckets: buckets,
		}, []string{"route", "method"}),
		Executions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runbox_executions_total", Help: "Executions finished, by language, final status and error code.",
		}, []string{"language", "status", "error_code"}),
		QueueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "runbox_execution_queue_wait_seconds", Help: "Time from QUEUED to RUNNING.", Buckets: buckets,
		}, []string{"language"}),
		RunDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "runbox_execution_run_seconds", Help: "Time from RUNNING to terminal (compile and run in the sandbox).", Buckets: buckets,
		}, []string{"language"}),
		Running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "runbox_executions_running", Help: "Executions running in this process's workers.",
		}),
		Retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "runbox_execution_retries_total", Help: "Attempts that failed for a transient reason and will be retried.",
		}),
		Rescues: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "runbox_execution_rescues_total", Help: "Attempts that restarted an execution left RUNNING by a previous attempt.",
		}),
		SandboxFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "runbox_sandbox_failures_total", Help: "Sandbox set-up failures (internal, not the program's).",
		}),
		Prestarted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runbox_prestarted_runs_total", Help: "Runs forked from a jail's template interpreter instead of starting one, by language.",
		}, []string{"language"}),
		CompileCache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runbox_compile_cache_total", Help: "Runs of compiled languages by whether their build was cached (hit) or compiled (miss), by language.",
		}, []string{"language", "result"}),
		Rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runbox_rejections_total", Help: "Requests refused by backpressure, by code.",
		}, []string{"code"}),
	}
	m.Registry.MustRegister(
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.HTTPRequests, m.HTTPDuration, m.Executions, m.QueueWait, m.RunDuration,
		m.Running, m.Retries, m.Rescues, m.SandboxFailures, m.Prestarted, m.CompileCache, m.Rejections,
	)
	return m
}

// ObserveQueueDepth registers the queue-depth gauge, read from depth at
// scrape time so that it is current even when no run is being submitted.
func (m *Metrics) ObserveQueueDepth(depth func() (int64, error)) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "runbox_queue_depth", Help: "Executions QUEUED, across all processes (the last count, refreshed every 250 ms to 10 s).",
	}, func() float64 {
		n, err := depth()
		if err != nil {
			return -1
		}
		return float64(n)
	}))
}
