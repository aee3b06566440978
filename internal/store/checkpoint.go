package store

import (
	"database/sql"
	"time"
)

// SQLite copies the WAL back into the database file (a checkpoint) on the
// commit that takes the WAL past wal_autocheckpoint pages, inline on the
// writer connection: every request queued behind that commit waits for the
// copy and its fsyncs. Under a deep backlog that was the whole tail of
// POST /run (p99 18.7 ms with inline checkpoints, 9.4 ms with none, on a
// 2-vCPU host). The checkpointer does them from a connection of its own, in
// PASSIVE mode, which never blocks the writer or the readers; the writer's
// auto-checkpoint stays as a bound on the WAL (sqliteAutoCheckpointPages) in
// case the checkpointer falls behind.
//
// Measured in runbox-bench's saturation phase (100,000 runs queued): POST
// /run p99 18.7 ms → 9.5 ms, autosave p99 11.4 ms → 7.0 ms, autosaves 10,400/s
// → 8,600/s. A checkpoint every 50 ms helped less (p99 14.2 ms). The day
// before, on a faster host, a checkpoint every 100 ms with no inline bound
// cost 40 % of the autosave rate: the WAL grew without bound under writes.

const (
	// sqliteAutoCheckpointPages is the writer's own bound on the WAL
	// (about 40 MiB with 4 KiB pages; SQLite's default is 1000).
	sqliteAutoCheckpointPages = 10000
	// The checkpointer's period: checkpointBusy while the WAL holds
	// checkpointBacklog frames or more (a write flood: keep the WAL short),
	// checkpointGrowing while it grows more slowly, checkpointIdle while it
	// does not grow, so that an idle server does little. Every checkpoint
	// fsyncs, and a thread blocked in fsync makes the Go runtime's monitor
	// thread hand its P away and then poll every 20 µs for the next
	// millisecond or more: at one checkpoint per 10 ms under a steady run
	// load that monitor never slept (11 % of the process's CPU).
	checkpointBacklog = 1000
	checkpointBusy    = 10 * time.Millisecond
	checkpointGrowing = 100 * time.Millisecond
	checkpointIdle    = 200 * time.Millisecond
)

type checkpointer struct {
	db   *sql.DB
	stop chan struct{}
	done chan struct{}
}

// startCheckpointer checkpoints the SQLite database at path until stopped.
func startCheckpointer(path string) (*checkpointer, error) {
	// busy_timeout(0): a checkpoint that finds another one running (another
	// runbox process on the same file) skips its turn.
	db, err := openSQLiteConn("file:" + path + "?_pragma=busy_timeout(0)")
	if err != nil {
		return nil, err
	}
	c := &checkpointer{db: db, stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c, nil
}

func (c *checkpointer) run() {
	defer close(c.done)
	t := time.NewTimer(checkpointIdle)
	defer t.Stop()
	lastFrames := -1
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		// The result is (busy, frames in the WAL, frames checkpointed).
		var busy, frames, done int
		err := c.db.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &done)
		t.Reset(checkpointPeriod(err == nil, frames, lastFrames))
		if err == nil {
			lastFrames = frames
		}
	}
}

// checkpointPeriod is the wait before the next checkpoint, given the frames
// in the WAL after this one (when it succeeded) and after the previous one.
func checkpointPeriod(ok bool, frames, lastFrames int) time.Duration {
	switch {
	case !ok || frames == lastFrames:
		return checkpointIdle
	case frames >= checkpointBacklog:
		return checkpointBusy
	default:
		return checkpointGrowing // grew (or restarted) a little
	}
}

// Close stops the checkpointer and waits for it.
func (c *checkpointer) Close() error {
	close(c.stop)
	<-c.done
	return c.db.Close()
}
