package queue

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// On PostgreSQL a run's job statement also sends River's insert
// notification, which every listening backend wakes for and River's
// listener in every worker process reads and passes to its producer. With
// the workers busy and runs arriving faster than one a millisecond, those
// notifications were about a third of the machine's CPU per accepted run
// (4 clients posting back to back, 100,000 queued: 1,199 runs/s at p99
// 9.8 ms with them, 1,693/s at 6.6 ms without), and a producer with no
// free slot does nothing with them: it fetches again when a slot frees.
//
// So, like River's own inserts (at most one notification per queue per
// FetchCooldown), a process sends at most one a notifyWindow: a job
// statement carries the notification when none was handed out within the
// window, and one that carries none is followed, once it has committed,
// by a notification of its own at the end of the window. River's limiter
// has no such follow-up, and a job inserted just after a notified one
// waits for the next poll when the fetch the notification caused missed
// it; here it waits at most notifyWindow.

// notifyWindow is the longest a job committed without a notification waits
// for one.
const notifyWindow = 5 * time.Millisecond

// notifyLimiter hands out the right to notify in a job's statement, and
// sends the notifications that follow jobs that did not.
type notifyLimiter struct {
	send func(ctx context.Context) error // sends River's insert notification
	log  *slog.Logger
	now  func() time.Time

	mu       sync.Mutex
	last     time.Time // when a notification was last sent or handed out
	followUp bool      // a follow-up notification is due and not yet sent
}

// claim says whether the job statement being built should notify.
func (l *notifyLimiter) claim() bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.last) < notifyWindow {
		return false
	}
	l.last = now
	return true
}

// committedSilently is called once a job inserted without a notification
// has committed: a notification follows at the end of the window, unless
// one is already due (it will be sent after this commit too).
func (l *notifyLimiter) committedSilently() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.followUp {
		return
	}
	l.followUp = true
	time.AfterFunc(max(l.last.Add(notifyWindow).Sub(l.now()), 0), l.sendFollowUp)
}

func (l *notifyLimiter) sendFollowUp() {
	l.mu.Lock()
	l.followUp = false
	l.last = l.now()
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.send(ctx); err != nil {
		// The producers' poll picks the job up instead.
		l.log.Warn("queue: insert notification failed", "error", err.Error())
	}
}
