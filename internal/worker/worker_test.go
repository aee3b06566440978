package worker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/runbox/runbox/internal/buildcache"
	"github.com/runbox/runbox/internal/execution"
	"github.com/runbox/runbox/internal/language"
	"github.com/runbox/runbox/internal/queue"
	"github.com/runbox/runbox/internal/sandbox"
	"github.com/runbox/runbox/internal/session"
	"github.com/runbox/runbox/internal/store"
	"github.com/runbox/runbox/internal/store/storetest"
	"github.com/runbox/runbox/internal/telemetry"
	"github.com/runbox/runbox/internal/testenv"
)

type executorFunc func(ctx context.Context, req sandbox.Request) (*sandbox.Report, error)

func (f executorFunc) Execute(ctx context.Context, req sandbox.Request) (*sandbox.Report, error) {
	return f(ctx, req)
}

// TestSettledExecutionIsNotRunAgain: River completes a job after its result
// has committed, so a worker that dies in between leaves a job that is run
// again (rescued) for an execution already terminal. That attempt must end
// without running the program or touching the recorded result.
func TestSettledExecutionIsNotRunAgain(t *testing.T) {
	ctx := context.Background()
	st := storetest.OpenSQLite(t)
	e := storetest.NewExecution(t, st, storetest.NewSession(t, st, "t"))
	if _, err := st.StartAttempt(ctx, e.ID, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.FinishAttempt(ctx, e.ID, 1, &execution.Result{Status: execution.Completed, Stdout: "first\n"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	w := &Worker{
		Store: st, Attempts: 3, Now: time.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Sandbox: executorFunc(func(context.Context, sandbox.Request) (*sandbox.Report, error) {
			t.Error("the program ran again")
			return nil, context.Canceled
		}),
	}
	job := &river.Job[queue.ExecuteArgs]{JobRow: &rivertype.JobRow{Attempt: 2}, Args: queue.ExecuteArgs{ExecutionID: e.ID}}
	if err := w.Work(ctx, job); err != nil {
		t.Fatalf("Work: %v", err)
	}
	got, err := st.GetExecution(ctx, "t", e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != execution.Completed || got.Attempts != 1 || got.Result == nil || got.Result.Stdout != "first\n" {
		t.Fatalf("settled execution changed: %+v", got)
	}
}

// oneLanguage is a registry of the one language given in YAML, probed;
// its version command needs what.
func oneLanguage(t *testing.T, yaml, what string) *language.Registry {
	t.Helper()
	path := filepath.Join(t.TempDir(), "languages.yaml")
	if err := os.WriteFile(path, []byte("languages:\n  - "+yaml+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	langs, err := language.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	langs.Probe(context.Background())
	testenv.Require(t, len(langs.Available()) == 1, what)
	return langs
}

// TestPrestartedRunsCounted: a python language that opts in (prestart:
// python) asks the sandbox for a python script step, and a run the sandbox
// forked from a template interpreter is counted.
func TestPrestartedRunsCounted(t *testing.T) {
	ctx := context.Background()
	langs := oneLanguage(t, "{id: python, name: Python, version_command: [/usr/bin/python3, --version], source_file: main.py, run: [/usr/bin/python3, main.py], prestart: python}", "python3 at /usr/bin/python3")
	st := storetest.OpenSQLite(t)
	metrics := telemetry.NewMetrics()
	w := &Worker{
		Store: st, Languages: langs, Hub: execution.NewHub(), Metrics: metrics, Attempts: 3, Now: time.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Sandbox: executorFunc(func(_ context.Context, req sandbox.Request) (*sandbox.Report, error) {
			if !req.Run.PythonScript {
				t.Error("the python run was not asked as a python script")
			}
			return &sandbox.Report{Run: &sandbox.StepReport{Outcome: sandbox.OutcomeOK, Forked: true}}, nil
		}),
	}
	for range 2 {
		e := storetest.NewExecution(t, st, storetest.NewSession(t, st, "t"))
		job := &river.Job[queue.ExecuteArgs]{JobRow: &rivertype.JobRow{Attempt: 1}, Args: queue.ExecuteArgs{ExecutionID: e.ID}}
		if err := w.Work(ctx, job); err != nil {
			t.Fatalf("Work: %v", err)
		}
	}
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, f := range families {
		if f.GetName() == "runbox_prestarted_runs_total" {
			for _, m := range f.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	if n != 2 {
		t.Errorf("runbox_prestarted_runs_total = %v, want 2", n)
	}
}

// TestLostStartIsRetried: on PostgreSQL a start does not wait for the WAL
// flush, so a database crash can lose it while the job's fetch was kept.
// The attempt's result must then fail the attempt (River runs it again),
// not complete a job whose execution would stay QUEUED for ever.
func TestLostStartIsRetried(t *testing.T) {
	ctx := context.Background()
	langs, err := language.Load("")
	if err != nil {
		t.Fatal(err)
	}
	langs.Probe(ctx)
	_, ok := langs.Lookup("python")
	testenv.Require(t, ok, "python3 at /usr/bin/python3")
	st := storetest.OpenSQLite(t)
	e := storetest.NewExecution(t, st, storetest.NewSession(t, st, "t"))
	w := &Worker{
		Store: st, Languages: langs, Hub: execution.NewHub(), Metrics: telemetry.NewMetrics(), Attempts: 3, Now: time.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Sandbox: executorFunc(func(context.Context, sandbox.Request) (*sandbox.Report, error) {
			// The crash: the execution is back where it was before the start.
			if _, err := st.DB().ExecContext(ctx, `UPDATE executions SET status = 'QUEUED', attempts = 0, started_at = NULL WHERE id = $1`, e.ID); err != nil {
				t.Fatal(err)
			}
			return &sandbox.Report{Run: &sandbox.StepReport{Outcome: sandbox.OutcomeOK, Stdout: []byte("hi\n")}}, nil
		}),
	}
	job := &river.Job[queue.ExecuteArgs]{JobRow: &rivertype.JobRow{Attempt: 1}, Args: queue.ExecuteArgs{ExecutionID: e.ID}}
	if err := w.Work(ctx, job); !errors.Is(err, store.ErrStartLost) {
		t.Fatalf("Work = %v, want an error wrapping ErrStartLost", err)
	}
	got, err := st.GetExecution(ctx, "t", e.ID)
	if err != nil || got.Status != execution.Queued || got.Result != nil {
		t.Fatalf("after the lost start: %+v %v", got, err)
	}
}

// TestBuildsReused: a compiled language's run asks the sandbox to keep its
// build, and the next run of the same source in the same session runs that
// build without a compile step, showing the compiler's output again; other
// source, another session, or a build the sandbox did not keep compile.
func TestBuildsReused(t *testing.T) {
	ctx := context.Background()
	langs := oneLanguage(t, "{id: c, name: C, version_command: [/bin/echo, cc 1], source_file: main.c, compile: [/usr/bin/cc, main.c], run: [/box/a.out]}", "/bin/echo")
	st := storetest.OpenSQLite(t)
	built := []sandbox.File{{Name: "main.c", Content: []byte("v1"), Mode: 0o644}, {Name: "a.out", Content: []byte("binary"), Mode: 0o755}}
	keep := true // whether the fake sandbox hands the build back
	var got sandbox.Request
	w := &Worker{
		Store: st, Languages: langs, Hub: execution.NewHub(), Metrics: telemetry.NewMetrics(), Attempts: 3, Now: time.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Builds: buildcache.New(1 << 20),
		Sandbox: executorFunc(func(_ context.Context, req sandbox.Request) (*sandbox.Report, error) {
			got = req
			rep := &sandbox.Report{Run: &sandbox.StepReport{Outcome: sandbox.OutcomeOK, Stdout: []byte("ran\n")}}
			if req.Compile != nil {
				rep.Compile = &sandbox.StepReport{Outcome: sandbox.OutcomeOK, Stderr: []byte("warning: w\n")}
				if req.KeepCompiled && keep {
					rep.Compiled = built
				}
			}
			return rep, nil
		}),
	}
	newSession := func() *session.Session {
		ss := &session.Session{ID: uuid.New(), Tenant: "t", Status: session.Active, Language: "c", SourceCode: "v1",
			Version: 1, CreatedAt: time.Now(), UpdatedAt: time.Now()}
		if err := st.CreateSession(ctx, ss); err != nil {
			t.Fatal(err)
		}
		return ss
	}
	edit := func(ss *session.Session, src string) {
		if _, err := st.UpdateSession(ctx, "t", ss.ID, session.Patch{SourceCode: &src}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	a, b := newSession(), newSession()
	for _, step := range []struct {
		name     string
		before   func()
		ss       *session.Session
		compiled bool // the run compiled (else it ran the kept build)
	}{
		{name: "first run", ss: a, compiled: true},
		{name: "unchanged source", ss: a},
		{name: "again", ss: a},
		{name: "same source, another session", ss: b, compiled: true},
		{name: "edited source", before: func() { edit(a, "v2") }, ss: a, compiled: true},
		{name: "edited back", before: func() { edit(a, "v1") }, ss: a},
		{name: "build not kept", before: func() { keep = false; edit(a, "v3") }, ss: a, compiled: true},
		{name: "so compiled again", ss: a, compiled: true},
	} {
		if step.before != nil {
			step.before()
		}
		e := storetest.NewExecution(t, st, step.ss)
		job := &river.Job[queue.ExecuteArgs]{JobRow: &rivertype.JobRow{Attempt: 1}, Args: queue.ExecuteArgs{ExecutionID: e.ID}}
		if err := w.Work(ctx, job); err != nil {
			t.Fatalf("%s: Work: %v", step.name, err)
		}
		if compiled := got.Compile != nil; compiled != step.compiled {
			t.Errorf("%s: compiled = %v, want %v", step.name, compiled, step.compiled)
		}
		if step.compiled && !got.KeepCompiled {
			t.Errorf("%s: the build was not asked for", step.name)
		}
		if !step.compiled && (len(got.Files) != 2 || got.Files[1].Name != "a.out") {
			t.Errorf("%s: the kept build's files were not used: %+v", step.name, got.Files)
		}
		r, err := st.GetExecution(ctx, "t", e.ID)
		if err != nil || r.Status != execution.Completed || r.Result.CompileOutput == nil || *r.Result.CompileOutput != "warning: w\n" {
			t.Fatalf("%s: %+v %v", step.name, r, err)
		}
	}
}
