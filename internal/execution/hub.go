package execution

import (
	"sync"

	"github.com/google/uuid"
)

// Hub wakes long-polling readers (GET /executions/{id}?wait=N) the moment an
// execution becomes terminal, instead of each reader polling the database.
// Workers of this process call Notify directly; results recorded by other
// processes arrive through the store's ListenFinished.
type Hub struct {
	mu      sync.Mutex
	waiters map[uuid.UUID][]chan struct{}
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{waiters: map[uuid.UUID][]chan struct{}{}} }

// Subscribe returns a channel closed when id is notified, and a release
// function the caller must call when it stops waiting.
func (h *Hub) Subscribe(id uuid.UUID) (<-chan struct{}, func()) {
	ch := make(chan struct{})
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

// Notify wakes every waiter of id.
func (h *Hub) Notify(id uuid.UUID) {
	h.mu.Lock()
	list := h.waiters[id]
	delete(h.waiters, id)
	h.mu.Unlock()
	for _, ch := range list {
		close(ch)
	}
}
