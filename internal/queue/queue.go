// Package queue wires River, the durable job queue, to runbox's database: an
// execution's job is inserted in the same transaction as its row. A worker
// records the result in a transaction of its own and River completes the
// job after it (the fencing of internal/store makes a re-run after a crash
// in between a no-op).
package queue

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverdatabasesql"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"

	"github.com/runbox/runbox/internal/store"
)

// ExecuteArgs is the job that runs one execution. It carries only the id:
// the snapshot of the code lives in the execution row.
type ExecuteArgs struct {
	ExecutionID uuid.UUID `json:"execution_id"`
}

// Kind is River's name for the job type.
func (ExecuteArgs) Kind() string { return "execute" }

// Options configure the River client.
type Options struct {
	Store       store.Store
	DatabaseURL string // needed on PostgreSQL for the LISTEN connection
	// Workers is nil for an insert-only client (the API process).
	Workers     *river.Workers
	Concurrency int
	// MaxAttempts is River's attempt budget for a job. The worker spends the
	// last one only to record FAILED INTERNAL_ERROR, so that an execution
	// whose worker keeps dying is never left RUNNING when River gives up.
	MaxAttempts       int
	JobTimeout        time.Duration
	RescueAfter       time.Duration
	FetchPollInterval time.Duration
	PeriodicJobs      []*river.PeriodicJob
	Logger            *slog.Logger
}

// Queue is runbox's River client.
type Queue struct {
	client *river.Client[*sql.Tx]
	pool   *pgxpool.Pool
	max    int
	wake   chan struct{}  // SQLite only: see wake.go
	notify *notifyLimiter // PostgreSQL only: see notify.go
}

// New builds the client; Start it when Options.Workers is set.
func New(ctx context.Context, o Options) (*Queue, error) {
	q := &Queue{max: o.MaxAttempts}
	var driver riverdriver.Driver[*sql.Tx]
	switch o.Store.Driver() {
	case "sqlite":
		q.wake = make(chan struct{}, 1)
		driver = &wakingSQLiteDriver{Driver: riversqlite.New(o.Store.DB()), wake: q.wake}
	case "postgres":
		pool, err := pgxpool.New(ctx, o.DatabaseURL)
		if err != nil {
			return nil, fmt.Errorf("queue: listener pool: %w", err)
		}
		q.pool = pool
		q.notify = &notifyLimiter{now: time.Now, log: cmp.Or(o.Logger, slog.Default()), send: func(ctx context.Context) error {
			_, err := pool.Exec(ctx, notifyPostgres)
			return err
		}}
		driver = riverdatabasesql.NewWithPgxListener(o.Store.QueueDB(), pool)
	default:
		return nil, fmt.Errorf("queue: unknown driver %q", o.Store.Driver())
	}
	cfg := &river.Config{
		Logger:               o.Logger,
		MaxAttempts:          o.MaxAttempts,
		JobTimeout:           o.JobTimeout,
		RescueStuckJobsAfter: o.RescueAfter,
		RetryPolicy:          backoff{},
		// A fetch right after an insert matters more than batching fetches:
		// a learner is waiting on every run.
		FetchCooldown:     time.Millisecond,
		FetchPollInterval: o.FetchPollInterval,
		PeriodicJobs:      o.PeriodicJobs,
	}
	if o.Workers != nil {
		cfg.Workers = o.Workers
		cfg.Queues = map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: o.Concurrency}}
	}
	client, err := river.NewClient(driver, cfg)
	if err != nil {
		q.Close()
		return nil, fmt.Errorf("queue: %w", err)
	}
	q.client = client
	return q, nil
}

// Committed tells the queue that the transaction that ran job (a JobOf
// statement) has committed. On SQLite it wakes this process's workers, so
// that they fetch the job now rather than at their next poll (wake.go); on
// PostgreSQL, where LISTEN/NOTIFY wakes them, it makes sure a notification
// follows a job whose statement carried none (notify.go). It never blocks.
func (q *Queue) Committed(job store.Statement) {
	switch {
	case q.wake != nil:
		wakeSignal(q.wake)
	case job.SQL == jobPostgresSilent:
		q.notify.committedSilently()
	}
}

// Start begins fetching and working jobs.
func (q *Queue) Start(ctx context.Context) error { return q.client.Start(ctx) }

// Stop stops fetching and waits for running jobs until ctx ends; then it
// cancels what is still running (those jobs are rescued later).
func (q *Queue) Stop(ctx context.Context) error {
	err := q.client.Stop(ctx)
	if ctx.Err() != nil {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = q.client.StopAndCancel(cctx)
	}
	return err
}

// Close releases the PostgreSQL listener pool.
func (q *Queue) Close() {
	if q.pool != nil {
		q.pool.Close()
	}
}

// backoff retries transient failures exponentially (1 s, 2 s, 4 s … capped
// at 60 s) with jitter, so that a fleet of workers does not retry in step.
type backoff struct{}

func (backoff) NextRetry(job *rivertype.JobRow) time.Time {
	d := time.Second << min(max(job.Attempt-1, 0), 6)
	d = d/2 + rand.N(d/2+1)
	return time.Now().UTC().Add(d)
}
