package queue

import (
	"context"

	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riversqlite"
)

// On SQLite, River learns of a committed insert from its listener, which
// polls a notification table every 50 ms (not configurable), so a learner's
// run used to wait for the next job poll instead: FetchPollInterval plus
// River's jitter of up to 10 ms, 6-7 ms at the median. When the API and the
// workers share a process (`runbox serve`, the SQLite default), the API
// knows the moment a run's transaction commits: Wake makes the listener
// read the table at once, and River fetches the job through its normal
// path (notification, fetch limiter, fetch). Workers in other processes
// still see the same notification at their listener's next poll.

// wakingSQLiteDriver is River's SQLite driver with a wakeable listener.
type wakingSQLiteDriver struct {
	*riversqlite.Driver
	wake chan struct{}
}

func (d *wakingSQLiteDriver) GetListener(params *riverdriver.GetListenenerParams) riverdriver.Listener {
	return &wakingListener{Listener: d.Driver.GetListener(params), wake: d.wake}
}

// wakingListener cuts its listener's wait for the next poll short when
// woken; the poll itself (and so what is delivered) is the listener's own.
type wakingListener struct {
	riverdriver.Listener
	wake <-chan struct{}
}

func (l *wakingListener) WaitForNotification(ctx context.Context) (*riverdriver.Notification, error) {
	for {
		wctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-l.wake:
				cancel()
			case <-wctx.Done():
			}
		}()
		n, err := l.Listener.WaitForNotification(wctx)
		woken := wctx.Err() != nil && ctx.Err() == nil
		cancel()
		if err != nil && woken {
			continue // poll again now
		}
		return n, err
	}
}

// wakeSignal sends to a channel that holds at most one pending wake-up:
// wake-ups that arrive while one is pending add nothing.
func wakeSignal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
