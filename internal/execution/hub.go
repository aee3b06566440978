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
//
// On PostgreSQL a result recorded by this process's worker arrives both
// ways, and the notification often first: a worker Expects the execution it
// runs, and a notification without a row for it waits for the worker's row
// (or, should the worker have none, for its Done), so that the readers need
// not read what the worker is about to hand them.
type Hub struct {
	mu      sync.Mutex
	waiters map[uuid.UUID][]chan *Execution
	// running holds the executions this process's workers run.
	running map[uuid.UUID]*expectation
}

// expectation is what the hub knows of an execution its workers run.
type expectation struct {
	workers  int  // Expects not yet Done
	heldBack bool // a notification without a row came before the worker's row
}

// NewHub returns an empty hub.
func NewHub() *Hub {
	return &Hub{waiters: map[uuid.UUID][]chan *Execution{}, running: map[uuid.UUID]*expectation{}}
}

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
// not modify e: they share it. A nil notification of an execution a worker
// of this process Expects is held back until that worker's Notify or Done.
func (h *Hub) Notify(id uuid.UUID, e *Execution) {
	h.mu.Lock()
	if x := h.running[id]; x != nil {
		if x.heldBack = e == nil; x.heldBack {
			h.mu.Unlock()
			return
		}
	}
	h.wake(id, e)
}

// Expect tells the hub that a worker of this process runs id and will
// Notify its stored row; the worker must call Done when it stops, whether
// or not it had a row to give.
func (h *Hub) Expect(id uuid.UUID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	x := h.running[id]
	if x == nil {
		x = &expectation{}
		h.running[id] = x
	}
	x.workers++
}

// Done ends an Expect. A notification held back for it wakes the waiters
// now, without a row: they read it.
func (h *Hub) Done(id uuid.UUID) {
	h.mu.Lock()
	x := h.running[id]
	if x == nil {
		h.mu.Unlock()
		return
	}
	if x.workers--; x.workers > 0 {
		h.mu.Unlock()
		return
	}
	delete(h.running, id)
	if !x.heldBack {
		h.mu.Unlock()
		return
	}
	h.wake(id, nil)
}

// wake hands e to id's waiters; it is called with h.mu held and unlocks it.
func (h *Hub) wake(id uuid.UUID, e *Execution) {
	list := h.waiters[id]
	delete(h.waiters, id)
	h.mu.Unlock()
	for _, ch := range list {
		ch <- e // each channel is notified once, and holds one value
	}
}
