package worker

import (
	"context"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/runbox/runbox/internal/store"
)

// PurgeArgs is the periodic job that enforces RUNBOX_RETENTION and
// RUNBOX_IDLE_SESSION_TTL.
type PurgeArgs struct{}

// Kind is River's name for the job type.
func (PurgeArgs) Kind() string { return "purge" }

// Purger deletes executions finished, and sessions closed, longer ago than
// the retention period, and sessions left ACTIVE but idle for longer than
// IdleSessionTTL: a learner who walks away never closes a session, and
// without it every session a client ever created would be kept. River runs
// it on the leader only, so one process purges at a time however many
// workers there are.
type Purger struct {
	river.WorkerDefaults[PurgeArgs]
	Store          store.Store
	Retention      time.Duration
	IdleSessionTTL time.Duration
	Logger         *slog.Logger
}

// Work purges once.
func (p *Purger) Work(ctx context.Context, _ *river.Job[PurgeArgs]) error {
	now := time.Now()
	n, err := p.Store.PurgeBefore(ctx, now.Add(-p.Retention), now.Add(-p.IdleSessionTTL))
	if err != nil {
		return err
	}
	if n > 0 {
		p.Logger.Info("purged expired records", "rows", n, "retention", p.Retention.String(), "idle_session_ttl", p.IdleSessionTTL.String())
	}
	return nil
}

// PurgeInterval is how often to purge: hourly, or more often when the
// retention itself is shorter than two hours, so that nothing outlives it
// by more than half of it (a short retention is a test's or a demo's).
func PurgeInterval(retention time.Duration) time.Duration {
	return max(min(time.Hour, retention/2), time.Second)
}

// PurgeEvery schedules the purge job.
func PurgeEvery(interval time.Duration) *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(interval),
		func() (river.JobArgs, *river.InsertOpts) { return PurgeArgs{}, nil },
		&river.PeriodicJobOpts{RunOnStart: true})
}
