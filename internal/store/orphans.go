package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ClaimSQLiteWorker registers a worker process on a SQLite database and, if
// it is the only one, hands back to the queue the jobs a dead worker left
// running. Every worker process holds a shared flock on a file beside the
// database for its lifetime; one that can take it exclusively knows that no
// other worker is alive, so a job still marked running was orphaned by a
// crash and can run again at once (its next attempt fences the dead one out)
// instead of waiting for River's rescuer (RUNBOX_RESCUE_AFTER). On
// PostgreSQL, where workers live on many hosts, it does nothing: the rescuer
// handles them. The returned release unregisters the worker.
func ClaimSQLiteWorker(ctx context.Context, st Store) (release func(), requeued int64, err error) {
	s, ok := st.(*sqlStore)
	if !ok || s.d.name != "sqlite" {
		return func() {}, 0, nil
	}
	f, err := os.OpenFile(s.path+".workers", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, 0, fmt.Errorf("store: worker registry: %w", err)
	}
	fd := int(f.Fd())
	release = func() {
		_ = syscall.Flock(fd, syscall.LOCK_UN)
		f.Close()
	}
	err = syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
	if err == nil {
		// River's rescuer moves such jobs to "retryable" with an error
		// recorded; a plain "available" is enough here: the fetch that picks
		// the job up counts the attempt.
		var res interface{ RowsAffected() (int64, error) }
		res, err = s.db.ExecContext(ctx, `UPDATE river_job SET state = 'available' WHERE state = 'running'`)
		if err == nil {
			requeued, _ = res.RowsAffected()
		}
	} else if errors.Is(err, syscall.EWOULDBLOCK) {
		err = nil
	}
	if err == nil {
		// Downgrade (or wait for another worker's claim to finish).
		err = syscall.Flock(fd, syscall.LOCK_SH)
	}
	if err != nil {
		release()
		return nil, 0, wrapErr(ctx, fmt.Errorf("store: worker registry: %w", err))
	}
	return release, requeued, nil
}
