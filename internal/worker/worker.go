// Package worker drives an execution through its lifecycle: it is the only
// code that moves an execution from QUEUED to RUNNING and on to a terminal
// status. Each attempt is fenced by River's attempt number, so a late result
// from an attempt presumed dead can never overwrite a newer one.
package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/riverqueue/river"

	"github.com/runbox/runbox/internal/buildcache"
	"github.com/runbox/runbox/internal/execution"
	"github.com/runbox/runbox/internal/language"
	"github.com/runbox/runbox/internal/queue"
	"github.com/runbox/runbox/internal/sandbox"
	"github.com/runbox/runbox/internal/store"
	"github.com/runbox/runbox/internal/telemetry"
)

// Executor is what runs a request in a jail; *sandbox.Sandbox implements it.
type Executor interface {
	Execute(ctx context.Context, req sandbox.Request) (*sandbox.Report, error)
}

// Worker is River's worker for queue.ExecuteArgs.
type Worker struct {
	river.WorkerDefaults[queue.ExecuteArgs]

	Store     store.Store
	Sandbox   Executor
	Languages *language.Registry
	Limits    language.StepLimits
	Hub       *execution.Hub
	// Builds, when set, keeps compiled programs so that a run of unchanged
	// source in the same session skips its compile step.
	Builds  *buildcache.Cache
	Metrics *telemetry.Metrics
	Logger  *slog.Logger
	// Attempts is the number of attempts that may run the program; River's
	// budget is one more (see queue.Options.MaxAttempts).
	Attempts int
	Now      func() time.Time
}

// Work runs one attempt of an execution. A returned error makes River retry
// the attempt later (transient failures only); a program's own failure is a
// recorded result and returns nil.
func (w *Worker) Work(ctx context.Context, job *river.Job[queue.ExecuteArgs]) error {
	id, attempt := job.Args.ExecutionID, job.Attempt
	log := w.Logger.With("execution_id", id, "attempt", attempt)

	if attempt > w.Attempts {
		// Every attempt that could run the program failed or died.
		r := internalError(log, "retry budget exhausted")
		return w.finish(ctx, log, job, nil, r)
	}

	e, err := w.Store.StartAttempt(ctx, id, attempt, w.Now())
	if errors.Is(err, store.ErrFenced) || errors.Is(err, store.ErrExecutionNotFound) {
		log.Info("execution already settled; nothing to do")
		return nil
	}
	if err != nil {
		w.Metrics.Retries.Inc()
		return fmt.Errorf("start attempt: %w", err)
	}
	// The row this attempt records goes to this process's long-polls
	// (finish), which need not wait for PostgreSQL's notification of it.
	w.Hub.Expect(id)
	defer w.Hub.Done(id)
	log = log.With("session_id", e.SessionID, "language", e.Language)
	wait := e.StartedAt.Sub(e.QueuedAt)
	if attempt > 1 {
		w.Metrics.Rescues.Inc()
		log.Warn("execution restarted", "status", execution.Running)
	} else {
		w.Metrics.QueueWait.WithLabelValues(e.Language).Observe(wait.Seconds())
	}
	log.Info("execution running", "status", execution.Running, "queue_wait_ms", wait.Milliseconds())

	lang, ok := w.Languages.Lookup(e.Language)
	if !ok {
		// The API accepted it, so another worker may have the toolchain.
		return w.retry(ctx, log, job, e, errors.New("language not available on this worker"))
	}
	w.Metrics.Running.Inc()
	report, err := w.execute(ctx, e, lang)
	w.Metrics.Running.Dec()
	if err != nil {
		w.Metrics.SandboxFailures.Inc()
		return w.retry(ctx, log, job, e, err)
	}
	if report.Run != nil && report.Run.Forked {
		w.Metrics.Prestarted.WithLabelValues(e.Language).Inc()
	}
	return w.finish(ctx, log, job, e, Verdict(report, lang.MemoryError))
}

// execute runs e's program, from this worker's build of the same source
// of the same session when it has one.
func (w *Worker) execute(ctx context.Context, e *execution.Execution, lang *language.Language) (*sandbox.Report, error) {
	req := lang.Request(e.SourceCode, e.Stdin, w.Limits)
	if req.Compile == nil || w.Builds == nil {
		return w.Sandbox.Execute(ctx, req)
	}
	key := buildcache.KeyOf(e.SessionID.String(), lang.Version, &req)
	if b, ok := w.Builds.Get(key); ok {
		w.Metrics.CompileCache.WithLabelValues(lang.ID, "hit").Inc()
		req.Compile, req.Files = nil, b.Files
		rep, err := w.Sandbox.Execute(ctx, req)
		if err != nil {
			return nil, err
		}
		compile := b.Compile // the compiler's output, shown as if it had run
		rep.Compile = &compile
		return rep, nil
	}
	w.Metrics.CompileCache.WithLabelValues(lang.ID, "miss").Inc()
	req.KeepCompiled = true
	rep, err := w.Sandbox.Execute(ctx, req)
	if err == nil && rep.Compiled != nil {
		w.Builds.Put(key, &buildcache.Build{Files: rep.Compiled, Compile: *rep.Compile})
	}
	return rep, err
}

// retry gives up on this attempt: River runs the job again after a backoff,
// or, on the last attempt that may run the program, the execution fails.
func (w *Worker) retry(ctx context.Context, log *slog.Logger, job *river.Job[queue.ExecuteArgs], e *execution.Execution, cause error) error {
	if job.Attempt >= w.Attempts {
		return w.finish(ctx, log, job, e, internalError(log, cause.Error()))
	}
	w.Metrics.Retries.Inc()
	log.Warn("transient failure; will retry", "reason", cause.Error())
	return cause
}

// finish records the result. River completes the job once Work returns;
// should this process die before that, the job's next attempt finds the
// execution settled and does nothing.
func (w *Worker) finish(ctx context.Context, log *slog.Logger, job *river.Job[queue.ExecuteArgs], e *execution.Execution, r *execution.Result) error {
	id := job.Args.ExecutionID
	// The result must land even if the job's context is being cancelled by
	// a shutdown: the program has already run.
	// A database blip is waited out here rather than re-running the program.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordBudget)
	defer cancel()
	now := w.Now()
	var (
		stored *execution.Execution
		err    error
	)
	for pause := 100 * time.Millisecond; ; pause = min(2*pause, 2*time.Second) {
		if e == nil {
			stored, err = w.Store.FailUnstarted(ctx, id, r, now)
		} else {
			stored, err = w.Store.FinishAttempt(ctx, id, job.Attempt, r, now)
		}
		if !errors.Is(err, store.ErrUnavailable) {
			break
		}
		log.Warn("database unavailable; retrying to record the result", "error", err.Error())
		select {
		case <-ctx.Done():
		case <-time.After(pause):
			continue
		}
		break
	}
	if errors.Is(err, store.ErrFenced) || errors.Is(err, store.ErrExecutionNotFound) {
		log.Warn("result dropped: a newer attempt owns the execution")
		return nil
	}
	if errors.Is(err, store.ErrStartLost) {
		// Completing the job would leave the execution QUEUED for ever:
		// fail the attempt, and the next one runs the program again.
		w.Metrics.Retries.Inc()
		log.Warn("result dropped: the database lost this attempt's start; will retry")
	}
	if err != nil {
		return fmt.Errorf("record result: %w", err)
	}
	w.Hub.Notify(id, stored)
	attrs := []any{"status", r.Status}
	lang := ""
	if e != nil {
		lang = e.Language
		run := w.Now().Sub(*e.StartedAt)
		w.Metrics.RunDuration.WithLabelValues(lang).Observe(run.Seconds())
		attrs = append(attrs, "run_ms", run.Milliseconds())
	}
	code := ""
	if r.Error != nil {
		code = string(r.Error.Code)
		attrs = append(attrs, "error_code", code)
	}
	w.Metrics.Executions.WithLabelValues(lang, string(r.Status), code).Inc()
	log.Info("execution finished", attrs...)
	return nil
}

// internalError is the generic INTERNAL_ERROR result; the reason goes to the
// log under an incident id, never to the client.
func internalError(log *slog.Logger, reason string) *execution.Result {
	incident := uuid.NewString()
	log.Error("execution failed internally", "incident_id", incident, "reason", reason)
	return &execution.Result{Status: execution.Failed, Error: &execution.Error{
		Code:    execution.InternalError,
		Message: "internal error; incident " + incident,
	}}
}

// recordBudget is how long a finished attempt keeps trying to record its
// result through a database outage before leaving the job to be rescued.
const recordBudget = 30 * time.Second

// Verdict maps a sandbox report onto the execution's terminal result;
// memoryError is the language's (see language.Language).
func Verdict(rep *sandbox.Report, memoryError string) *execution.Result {
	if c := rep.Compile; c != nil && c.Outcome != sandbox.OutcomeOK {
		out := text(append(append([]byte{}, c.Stdout...), c.Stderr...))
		msg := "compilation failed"
		if c.Outcome == sandbox.OutcomeTimeLimit {
			msg = "compilation exceeded its time limit"
		} else if c.Outcome == sandbox.OutcomeMemoryLimit {
			msg = "compilation exceeded its memory limit"
		}
		return &execution.Result{Status: execution.Failed, CompileOutput: &out,
			Error: &execution.Error{Code: execution.CompilationError, Message: msg}}
	}
	s := rep.Run
	r := &execution.Result{
		Stdout: text(s.Stdout), Stderr: text(s.Stderr),
		StdoutTruncated: s.StdoutTruncated, StderrTruncated: s.StderrTruncated,
		ExecutionTimeMS: ptr(s.WallTime.Milliseconds()),
		CPUTimeMS:       ptr(s.CPUTime.Milliseconds()),
		MemoryKB:        ptr(s.MemoryBytes / 1024),
	}
	if c := rep.Compile; c != nil {
		r.CompileOutput = ptr(text(append(append([]byte{}, c.Stdout...), c.Stderr...)))
	}
	switch s.Outcome {
	case sandbox.OutcomeOK:
		r.Status, r.ExitCode = execution.Completed, ptr(0)
	case sandbox.OutcomeNonZeroExit:
		r.Status, r.ExitCode = execution.Failed, ptr(s.ExitCode)
		r.Error = &execution.Error{Code: execution.RuntimeError, Message: fmt.Sprintf("exited with status %d", s.ExitCode)}
		if memoryError != "" && bytes.Contains(s.Stderr, []byte(memoryError)) {
			r.Error = &execution.Error{Code: execution.MemoryLimitExceeded, Message: "the program exceeded its memory limit"}
		}
	case sandbox.OutcomeSignaled:
		r.Status, r.Signal = execution.Failed, ptr(s.Signal)
		r.Error = &execution.Error{Code: execution.RuntimeError, Message: "killed by " + s.Signal}
	case sandbox.OutcomeMemoryLimit:
		r.Status = execution.Failed
		r.Error = &execution.Error{Code: execution.MemoryLimitExceeded, Message: "the program exceeded its memory limit"}
	case sandbox.OutcomeOutputLimit:
		r.Status = execution.Failed
		r.Error = &execution.Error{Code: execution.OutputLimitExceeded, Message: "the program wrote more output than allowed"}
	case sandbox.OutcomeTimeLimit:
		r.Status = execution.Timeout
		r.Error = &execution.Error{Code: execution.TimeLimitExceeded, Message: "the program exceeded its time limit"}
	default:
		r.Status = execution.Failed
		r.Error = &execution.Error{Code: execution.InternalError, Message: "unknown sandbox outcome"}
	}
	return r
}

// text makes program output valid UTF-8 for JSON without losing its length.
func text(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return string([]rune(string(b)))
}

func ptr[T any](v T) *T { return &v }
