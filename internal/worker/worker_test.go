package worker

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/runbox/runbox/internal/execution"
	"github.com/runbox/runbox/internal/queue"
	"github.com/runbox/runbox/internal/sandbox"
	"github.com/runbox/runbox/internal/store/storetest"
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
	if err := st.FinishAttempt(ctx, e.ID, 1, &execution.Result{Status: execution.Completed, Stdout: "first\n"}, time.Now()); err != nil {
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
