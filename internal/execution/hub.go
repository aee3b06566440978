package execution

import (
	"sync"

	"github.com/google/uuid"
)

// Hub wakes long-polling readers (GET /executions/{id}?wait=N) the moment an
// execution becomes terminal, instead of each reader polling the database.
// Workers of this process call Notify with the row they stored, which the
// readers answer with as it is; results recorded by other processes arrive
// through the store's ListenFinished, without a row, and the readers read it.
type Hub struct {
	mu      sync.Mutex
	waiters map[uuid.UUID][]chan *Execution
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{waiters: map[uuid.UUID][]chan *Execution{}} }

// Subscribe returns a channel that receives one value when id is notified
// (the terminal execution, or nil when the notifier did not have it), and a
// release function the caller must call when it stops waiting.
func (h *Hub) Subscribe(id uuid.UUID) (<-chan *Execution, func()) {
	ch := make(chan *Execution, 1)
	h.mu.Lock()
	h.waiters[id] = append(h.waiters[id], ch)
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		list := h.waiters[id]
		for i, c := range list {
			if c == ch {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(h.waiters, id)
		} else {
			h.waiters[id] = list
		}
	}
}

// Notify wakes every waiter of id with e, the execution as stored once
// terminal, or nil when the caller only knows that it finished. Waiters must
// not modify e: they share it.
func (h *Hub) Notify(id uuid.UUID, e *Execution) {
	h.mu.Lock()
	list := h.waiters[id]
	delete(h.waiters, id)
	h.mu.Unlock()
	for _, ch := range list {
		ch <- e // each channel is notified once, and holds one value
	}
}
