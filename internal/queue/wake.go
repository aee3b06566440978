package queue

import (
	"context"
	"sync"

	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riversqlite"
)

// On SQLite, River learns of a committed insert from its listener, which
// polls a notification table every 50 ms (not configurable), so a learner's
// run used to wait for the next job poll instead: FetchPollInterval plus
// River's jitter of up to 10 ms, 6-7 ms at the median. When the API and the
// workers share a process (`runbox serve`, the SQLite default), the API
// knows the moment a run's transaction commits: Committed makes the listener
// hand River the insert notification at once, and River fetches the job
// through its normal path (notification, fetch limiter, fetch).
//
// Our inserts write no notification row (see insert.go): in `serve` the
// wake is the notification, and a `runbox worker` on SQLite, in another
// process, finds new jobs by its own poll every 5 ms. The rows cost a
// tenth of the rate of accepted runs and a few ms of their p99 (4 clients
// posting back to back with the workers busy: 1,235-1,334 runs/s, p99
// 11.9-13.9 ms with them; 1,499-1,527/s, p99 11.0-11.2 ms without), since
// SQLite's one writer also serves the listener that reads and trims them.

// wakingSQLiteDriver is River's SQLite driver with a wakeable listener.
type wakingSQLiteDriver struct {
	*riversqlite.Driver
	wake chan struct{}
}

func (d *wakingSQLiteDriver) GetListener(params *riverdriver.GetListenenerParams) riverdriver.Listener {
	return &wakingListener{Listener: d.Driver.GetListener(params), wake: d.wake}
}

// insertNotification is the notification River's producers fetch on, as
// River's own inserts write it (topic and payload).
var insertNotification = riverdriver.Notification{Topic: "river_insert", Payload: `{"queue": "default"}`}

// wakingListener returns an insert notification as soon as it is woken,
// cutting short its listener's wait for the next poll; what the poll finds
// is passed on as it is. A wake-up that comes as the wait ends anyway is
// left pending for the next wait rather than lost.
type wakingListener struct {
	riverdriver.Listener
	wake chan struct{}
}

func (l *wakingListener) WaitForNotification(ctx context.Context) (*riverdriver.Notification, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu           sync.Mutex
		waiting      = true
		woken        bool
		watcherEnded = make(chan struct{})
	)
	go func() {
		defer close(watcherEnded)
		select {
		case <-l.wake:
			mu.Lock()
			defer mu.Unlock()
			if !waiting {
				wakeSignal(l.wake)
				return
			}
			woken = true
			cancel()
		case <-wctx.Done():
		}
	}()
	n, err := l.Listener.WaitForNotification(wctx)
	mu.Lock()
	waiting = false
	wasWoken := woken
	mu.Unlock()
	cancel()
	<-watcherEnded
	switch {
	case wasWoken && err != nil && ctx.Err() == nil:
		n := insertNotification
		return &n, nil
	case wasWoken && err == nil:
		wakeSignal(l.wake) // the poll found something first: wake the next wait
	}
	return n, err
}

// wakeSignal sends to a channel that holds at most one pending wake-up:
// wake-ups that arrive while one is pending add nothing.
func wakeSignal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
