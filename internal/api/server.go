// Package api is runbox's HTTP API (SPEC §2). routes.go maps every endpoint;
// handlers are functions returning http.Handler; encode.go holds the one
// place where bodies are decoded, validated and encoded.
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/runbox/runbox/internal/config"
	"github.com/runbox/runbox/internal/execution"
	"github.com/runbox/runbox/internal/language"
	"github.com/runbox/runbox/internal/store"
	"github.com/runbox/runbox/internal/telemetry"
)

// Enqueuer gives the statement that inserts an execution's job, which the
// store runs in the execution's transaction, and is told when that
// transaction has committed (it wakes workers).
type Enqueuer interface {
	JobOf(executionID uuid.UUID) store.Statement
	Committed(job store.Statement)
}

// Deps are everything the API needs; cmd/runbox builds them.
type Deps struct {
	Config    *config.Config
	Store     store.Store
	Queue     Enqueuer
	Languages *language.Registry
	Hub       *execution.Hub
	Metrics   *telemetry.Metrics
	Logger    *slog.Logger
	// Checks are readiness checks besides the database (the sandbox
	// self-check in serve mode); each returns "" when healthy, else a reason.
	Checks  map[string]func(context.Context) string
	OpenAPI []byte
	Now     func() time.Time
	// Draining is closed when the server begins a graceful shutdown: long
	// polls answer at once instead of holding the shutdown up to 30 s.
	Draining <-chan struct{}
}

// server holds the per-process state the handlers share.
type server struct {
	Deps
	keys     []apiKey
	runLimit *limiter
	saveLim  *limiter
	newLimit *limiter // session creation: each new session is a row kept until it is closed and purged
	waits    *holds   // long-polls held per client
	depth    depthCache
}

type apiKey struct {
	digest [32]byte
	tenant string
}

// NewHandler returns the whole API as one http.Handler.
func NewHandler(d Deps) http.Handler { return newServer(d).routes() }

// NewOpsHandler serves only /healthz, /readyz and /metrics: what a worker
// process without the API exposes to its orchestrator and to Prometheus.
func NewOpsHandler(d Deps) http.Handler { return newServer(d).opsRoutes() }

func newServer(d Deps) *server {
	if d.Now == nil {
		d.Now = time.Now
	}
	s := &server{
		Deps:     d,
		keys:     parseKeys(d.Config.APIKeys),
		runLimit: newLimiter(d.Config.RunRate, d.Config.RunBurst),
		saveLim:  newLimiter(d.Config.AutosaveRate, d.Config.AutosaveBurst),
		newLimit: newLimiter(d.Config.SessionRate, d.Config.SessionBurst),
		waits:    newHolds(d.Config.MaxWaitsPerClient),
	}
	s.Metrics.ObserveQueueDepth(func() (int64, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		count, _, err := s.queueDepth(ctx)
		return count, err
	})
	return s
}

// parseKeys reads "tenant:key" or bare "key" entries. A bare key's tenant is
// derived from its digest, so it is stable and reveals nothing of the key.
func parseKeys(entries []string) []apiKey {
	var keys []apiKey
	for _, e := range entries {
		tenant, key, named := config.SplitKey(e)
		if !named {
			sum := sha256.Sum256([]byte(key))
			tenant = "t-" + hex.EncodeToString(sum[:6])
		}
		keys = append(keys, apiKey{digest: sha256.Sum256([]byte(key)), tenant: tenant})
	}
	return keys
}

// tenantOf returns the caller's tenant, comparing digests in constant time
// against every key so that timing reveals neither which key nor how much matched.
func (s *server) tenantOf(r *http.Request) (string, bool) {
	if len(s.keys) == 0 {
		return "", true
	}
	// The scheme is case-insensitive (RFC 9110 §11.1).
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	got := sha256.Sum256([]byte(token))
	tenant, found := "", 0
	for _, k := range s.keys {
		if subtle.ConstantTimeCompare(got[:], k.digest[:]) == 1 {
			tenant, found = k.tenant, 1
		}
	}
	return tenant, found == 1
}

// storeError maps a store failure to its answer; unexpected ones are logged
// under an incident id and answered without details.
func (s *server) storeError(r *http.Request, err error) *apiError {
	switch {
	case errors.Is(err, store.ErrSessionNotFound):
		return errorf(http.StatusNotFound, "session_not_found", "no such session")
	case errors.Is(err, store.ErrExecutionNotFound):
		return errorf(http.StatusNotFound, "execution_not_found", "no such execution")
	case errors.Is(err, store.ErrSessionClosed):
		return errorf(http.StatusConflict, "session_closed", "the session is closed")
	case errors.Is(err, store.ErrVersionConflict):
		return errorf(http.StatusPreconditionFailed, "version_conflict", "the session has changed since that version")
	case errors.Is(err, store.ErrTooManyInflight):
		s.Metrics.Rejections.WithLabelValues("too_many_inflight").Inc()
		return &apiError{http.StatusTooManyRequests, "too_many_inflight", "this session already has the maximum of executions queued or running", 1}
	case errors.Is(err, store.ErrClientBacklog):
		s.Metrics.Rejections.WithLabelValues("too_many_inflight").Inc()
		return &apiError{http.StatusTooManyRequests, "too_many_inflight", "you already have the maximum of executions queued or running", 5}
	case errors.Is(err, store.ErrIdempotencyReused):
		return errorf(http.StatusUnprocessableEntity, "idempotency_key_reused", "this Idempotency-Key was used with a different request")
	case errors.Is(err, store.ErrInvalidCursor):
		return errorf(http.StatusBadRequest, "invalid_request", "cursor is not valid")
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		s.Logger.Warn("database unavailable", "request_id", requestID(r), "error", err.Error())
		return &apiError{http.StatusServiceUnavailable, "unavailable", "the service is temporarily unavailable", 2}
	}
	return s.internal(r, err)
}

func (s *server) internal(r *http.Request, err error) *apiError {
	if errors.Is(err, context.Canceled) && errors.Is(r.Context().Err(), context.Canceled) {
		// The client hung up mid-request: not a failure of ours, and its
		// answer goes nowhere (instrument counts it as 499).
		s.Logger.Debug("request abandoned by the client", "request_id", requestID(r))
		return errorf(http.StatusInternalServerError, "internal_error", "the request was abandoned")
	}
	incident := uuid.NewString()
	s.Logger.Error("internal error", "incident_id", incident, "request_id", requestID(r), "error", err.Error())
	return errorf(http.StatusInternalServerError, "internal_error", "internal error; incident "+incident)
}

// depthCache keeps the queue depth for a while: the overload check runs on
// every run request, and counting a backlog of 100,000 takes milliseconds
// (5 ms on PostgreSQL after a VACUUM, 20-60 ms on rows too fresh for its
// visibility map on a slow 2-vCPU host), during which the database has a
// core less for the requests themselves. A count older than its freshness
// is still served while one background refresh runs, so no request waits
// for it; only with no count younger than depthStale (at start, or while
// the database is down) does a request count by itself.
//
// Between counts the check adds the runs this process accepted since the
// last count began, so a single API process lets the queue past its bound
// by no more than the run requests it has in flight at once (the estimate
// over-counts by the runs started meanwhile, and by those accepted while a
// count ran: near the bound, runs are refused a little early rather than
// late). Runs accepted by other API
// processes are seen at the next count, which comes sooner the nearer the
// last one was to the bound.
type depthCache struct {
	mu         sync.Mutex
	count      int64     // QUEUED executions at the last count
	accepted   int64     // runs this process accepted since that count began
	at         time.Time // when the last count ended
	fresh      time.Duration
	refreshing bool
}

const (
	depthFresh = 250 * time.Millisecond
	// depthCostFactor spaces refreshes out to this many times what the last
	// count took (up to depthFreshMax), so that the count of a deep backlog
	// near the bound costs the database at most about 5% of a core.
	depthCostFactor = 20
	depthFreshMax   = time.Second
	// While the queue holds less than half its bound, counts are spaced out
	// ten times more (up to depthFarFreshMax): other API processes would
	// have to accept half the bound in that time to make the check wrong,
	// and a long count no longer slows one request in a hundred.
	depthFarCostFactor = 10 * depthCostFactor
	depthFarFreshMax   = 10 * time.Second
	depthStale         = depthFarFreshMax + 2*time.Second
)

// depthFreshness is how long a count that took cost is served; far says
// that it found less than half the bound.
func depthFreshness(cost time.Duration, far bool) time.Duration {
	if far {
		return min(max(depthFarCostFactor*cost, depthFresh), depthFarFreshMax)
	}
	return min(max(depthCostFactor*cost, depthFresh), depthFreshMax)
}

// queueDepth returns the last count of QUEUED executions, refreshed in the
// background when it is older than its freshness, and the runs this
// process accepted since that count began.
func (s *server) queueDepth(ctx context.Context) (count, accepted int64, err error) {
	s.depth.mu.Lock()
	age := time.Since(s.depth.at)
	count, accepted = s.depth.count, s.depth.accepted
	if age >= s.depth.fresh && age < depthStale && !s.depth.refreshing {
		s.depth.refreshing = true
		go s.refreshDepth()
	}
	s.depth.mu.Unlock()
	if age < depthStale {
		return count, accepted, nil
	}
	if _, err := s.countQueue(ctx); err != nil {
		return 0, 0, err
	}
	// What countQueue left: the runs accepted while it counted still count.
	s.depth.mu.Lock()
	defer s.depth.mu.Unlock()
	return s.depth.count, s.depth.accepted, nil
}

// acceptedRun counts a run this process accepted towards the queue depth.
func (s *server) acceptedRun() {
	s.depth.mu.Lock()
	s.depth.accepted++
	s.depth.mu.Unlock()
}

func (s *server) refreshDepth() {
	ctx, cancel := context.WithTimeout(context.Background(), depthStale)
	defer cancel()
	_, _ = s.countQueue(ctx)
	s.depth.mu.Lock()
	s.depth.refreshing = false
	s.depth.mu.Unlock()
}

func (s *server) countQueue(ctx context.Context) (int64, error) {
	s.depth.mu.Lock()
	before := s.depth.accepted
	s.depth.mu.Unlock()
	start := time.Now()
	n, err := s.Store.QueueDepth(ctx)
	if err != nil {
		return 0, err
	}
	s.depth.mu.Lock()
	// Runs accepted while the count ran may or may not be in it: keep them.
	s.depth.count, s.depth.accepted, s.depth.at = n, s.depth.accepted-before, time.Now()
	s.depth.fresh = depthFreshness(s.depth.at.Sub(start), 2*n < s.Config.MaxQueueDepth)
	s.depth.mu.Unlock()
	return n, nil
}

func itoa(n int) string { return strconv.Itoa(n) }
