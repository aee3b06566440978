package store

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// ListenFinished, on PostgreSQL, holds a dedicated connection (outside the
// pool) doing LISTEN on the channel FinishAttempt notifies, and calls fn for
// every finished execution id, reconnecting with backoff (up to 5 s) until
// ctx ends; it then returns nil. Notifications sent while it reconnects are
// lost, so waiters must still re-read the row on a timer. On SQLite it
// returns nil at once: every writer is in this process.
func (s *sqlStore) ListenFinished(ctx context.Context, fn func(uuid.UUID)) error {
	if !s.d.postgres {
		return nil
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		connected := s.listenOnce(ctx, fn)
		if ctx.Err() != nil {
			break
		}
		if connected {
			backoff = 100 * time.Millisecond
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	return nil
}

// listenOnce listens until the connection fails or ctx ends, and reports
// whether it got as far as LISTEN.
func (s *sqlStore) listenOnce(ctx context.Context, fn func(uuid.UUID)) bool {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.Connect(dctx, s.url)
	cancel()
	if err != nil {
		return false
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return false
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true
		}
		if id, err := uuid.Parse(n.Payload); err == nil {
			fn(id)
		}
	}
}
