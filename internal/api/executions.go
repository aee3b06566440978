package api

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/runbox/runbox/internal/execution"
	"github.com/runbox/runbox/internal/store"
)

var errExecutionNotFound = errorf(http.StatusNotFound, "execution_not_found", "no such execution")

const maxIdempotencyKey = 255

// rateLimit takes a token of the client's bucket in l, or says how long to
// wait for one.
func (s *server) rateLimit(r *http.Request, l *limiter) *apiError {
	ok, wait := l.allow(clientKey(r), time.Now())
	if ok {
		return nil
	}
	return &apiError{http.StatusTooManyRequests, "rate_limited", "too many requests; retry later", max(wait, 1)}
}

// reject answers with a refusal the client may retry (rate limit, overload)
// and counts it.
func (s *server) reject(w http.ResponseWriter, e *apiError) {
	s.Metrics.Rejections.WithLabelValues(e.code).Inc()
	writeProblem(w, e)
}

func (s *server) run() http.Handler {
	type request struct {
		Stdin *string `json:"stdin"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, e := pathID(r, errSessionNotFound)
		if e != nil {
			writeProblem(w, e)
			return
		}
		key := r.Header.Get("Idempotency-Key")
		if len(key) > maxIdempotencyKey {
			writeProblem(w, errorf(http.StatusBadRequest, "invalid_request", "Idempotency-Key is limited to 255 characters"))
			return
		}
		var req request
		if e := decode(w, r, &req, true); e != nil {
			writeProblem(w, e)
			return
		}
		stdin := ""
		if req.Stdin != nil {
			stdin = *req.Stdin
		}
		if int64(len(stdin)) > s.Config.MaxStdinBytes {
			writeProblem(w, errorf(http.StatusRequestEntityTooLarge, "stdin_too_large",
				"stdin is larger than this server accepts"))
			return
		}
		sum := sha256.Sum256([]byte(stdin))
		hash := hex.EncodeToString(sum[:])
		// A replay of an accepted run is answered with that run even when
		// a new one would be refused now (a client retrying after a lost
		// answer must learn its run's id, not a 429 or 503).
		refuse := func(e *apiError) {
			if key != "" {
				prev, err := s.Store.ExecutionByKey(r.Context(), tenant(r), id, key)
				if err == nil && prev.RequestHash == hash {
					writeAccepted(w, prev)
					return
				}
			}
			s.reject(w, e)
		}
		if e := s.rateLimit(r, s.runLimit); e != nil {
			refuse(e)
			return
		}
		count, accepted, err := s.queueDepth(r.Context())
		if err != nil {
			writeProblem(w, s.storeError(r, err))
			return
		}
		if count+accepted >= s.Config.MaxQueueDepth {
			refuse(&apiError{http.StatusServiceUnavailable, "overloaded", "too many runs are waiting; retry later", 5})
			return
		}
		e0 := &execution.Execution{ID: uuid.New(), SessionID: id, Tenant: tenant(r), Client: clientKey(r), Stdin: stdin,
			QueuedAt: s.Now().UTC(), IdempotencyKey: key, RequestHash: hash}
		caps := store.InflightCaps{Session: s.Config.MaxInflightPerSession, Client: s.Config.MaxInflightPerClient}
		job := s.Queue.JobOf(e0.ID)
		stored, created, err := s.Store.CreateExecution(r.Context(), e0, caps, job)
		if err != nil {
			writeProblem(w, s.storeError(r, err))
			return
		}
		if created {
			s.acceptedRun()
			// Logged before the wake, so that in `serve` it precedes the
			// worker's "execution running".
			s.Logger.Info("execution queued", "execution_id", stored.ID, "session_id", stored.SessionID,
				"language", stored.Language, "status", stored.Status, "attempt", 0, "request_id", requestID(r))
			s.Queue.Committed(job)
		}
		writeAccepted(w, stored)
	})
}

// writeAccepted answers a run request with its execution: 202 and where to
// find it.
func writeAccepted(w http.ResponseWriter, e *execution.Execution) {
	w.Header().Set("Location", "/executions/"+e.ID.String())
	writeJSON(w, http.StatusAccepted, acceptedJSON{ExecutionID: e.ID.String(), SessionID: e.SessionID.String(),
		Status: e.Status, QueuedAt: stamp(e.QueuedAt)})
}

func (s *server) getExecution() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, e := pathID(r, errExecutionNotFound)
		if e != nil {
			writeProblem(w, e)
			return
		}
		wait := time.Duration(0)
		if v := r.URL.Query().Get("wait"); v != "" {
			n, err := strconv.ParseFloat(v, 64)
			// Plain decimals only: ParseFloat also takes NaN, Inf, hex
			// floats and digit separators.
			if err != nil || strings.Trim(v, "0123456789.") != "" || n < 0 || n > 30 {
				writeProblem(w, errorf(http.StatusBadRequest, "invalid_request", "wait must be a number of seconds from 0 to 30"))
				return
			}
			wait = time.Duration(n * float64(time.Second))
		}
		// A client that already holds its share of long-polls is answered
		// at once, with the execution as it is: it may poll again.
		if wait > 0 {
			if client := clientKey(r); s.waits.acquire(client) {
				defer s.waits.release(client)
			} else {
				wait = 0
			}
		}
		var ex *execution.Execution
		var err error
		if wait > 0 {
			ex, err = s.waitTerminal(r, id, wait)
		} else {
			ex, err = s.Store.GetExecution(r.Context(), tenant(r), id)
		}
		if err != nil {
			writeProblem(w, s.storeError(r, err))
			return
		}
		writeJSON(w, http.StatusOK, executionBody(ex))
	})
}

// crossProcessRecheck bounds how late a waiter learns of a result recorded
// by a worker in another process when no notification reaches it (SQLite
// has no LISTEN/NOTIFY); in-process workers and PostgreSQL wake it at once.
const crossProcessRecheck = time.Second

// waitTerminal reads execution id and, until it is terminal, holds the
// request until the hub says it is or the wait is over. A worker of this
// process hands the hub the row it stored, which is the answer; otherwise
// the execution is read again.
func (s *server) waitTerminal(r *http.Request, id uuid.UUID, wait time.Duration) (*execution.Execution, error) {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		done, release := s.Hub.Subscribe(id)
		// Read after subscribing, so a result recorded in between is not missed.
		cur, err := s.Store.GetExecution(r.Context(), tenant(r), id)
		if err != nil || cur.Status.Terminal() {
			release()
			return cur, err
		}
		recheck := time.NewTimer(crossProcessRecheck)
		var finished *execution.Execution
		select {
		case finished = <-done:
		case <-recheck.C:
		case <-deadline.C:
			release()
			recheck.Stop()
			return s.Store.GetExecution(r.Context(), tenant(r), id)
		case <-r.Context().Done():
			release()
			recheck.Stop()
			return cur, nil
		case <-s.Draining:
			release()
			recheck.Stop()
			return cur, nil
		}
		release()
		recheck.Stop()
		// The tenant was checked by the read above; the row is the same
		// execution's.
		if finished != nil {
			return finished, nil
		}
	}
}

func (s *server) listExecutions() http.Handler {
	type page struct {
		Items      []executionJSON `json:"items"`
		NextCursor *string         `json:"next_cursor"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, e := pathID(r, errSessionNotFound)
		if e != nil {
			writeProblem(w, e)
			return
		}
		limit := 20
		if v := r.URL.Query().Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 100 {
				writeProblem(w, errorf(http.StatusBadRequest, "invalid_request", "limit must be an integer from 1 to 100"))
				return
			}
			limit = n
		}
		if _, err := s.Store.GetSession(r.Context(), tenant(r), id); err != nil {
			writeProblem(w, s.storeError(r, err))
			return
		}
		items, next, err := s.Store.ListExecutions(r.Context(), tenant(r), id, limit, r.URL.Query().Get("cursor"))
		if err != nil {
			writeProblem(w, s.storeError(r, err))
			return
		}
		out := page{Items: make([]executionJSON, 0, len(items))}
		for _, it := range items {
			out.Items = append(out.Items, executionBody(it))
		}
		if next != "" {
			out.NextCursor = &next
		}
		writeJSON(w, http.StatusOK, out)
	})
}
