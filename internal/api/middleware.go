package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime/debug"
	"time"
)

type ctxKey int

const (
	requestIDKey ctxKey = iota
	tenantKey
)

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func requestID(r *http.Request) string {
	id, _ := r.Context().Value(requestIDKey).(string)
	return id
}

func tenant(r *http.Request) string {
	t, _ := r.Context().Value(tenantKey).(string)
	return t
}

// outermost gives every request an id (returned in X-Request-ID), a log line,
// and turns a panic into a 500 with an incident id instead of a dropped
// connection or a stack trace.
func (s *server) outermost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-ID")
		if !requestIDPattern.MatchString(id) {
			var b [8]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		w.Header().Set("X-Request-ID", id)
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey, id))
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		start := time.Now()
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				e := s.internal(r, fmt.Errorf("panic: %v\n%s", v, debug.Stack()))
				if !rec.wrote {
					writeProblem(rec, e)
				}
			}
			s.Logger.Info("request", "request_id", id, "method", r.Method, "path", r.URL.Path,
				"status", rec.status, "duration_ms", time.Since(start).Milliseconds())
		}()
		next.ServeHTTP(rec, r)
	})
}

// unmatched answers unknown routes and wrong methods with problem+json
// (ServeMux's own answers are plain text).
func (s *server) unmatched(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		probe := httptest.NewRecorder()
		h.ServeHTTP(probe, r)
		if probe.Code == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", probe.Header().Get("Allow"))
			writeProblem(w, errorf(http.StatusMethodNotAllowed, "method_not_allowed", "method "+r.Method+" is not allowed here"))
			return
		}
		writeProblem(w, errorf(http.StatusNotFound, "not_found", "no such route"))
	})
}

// statusClientClosed is the status recorded for a request its client
// abandoned.
const statusClientClosed = 499

// instrument counts requests and their latency by route pattern.
func (s *server) instrument(pattern string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec, ok := w.(*statusRecorder)
		if !ok {
			rec = &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		}
		next.ServeHTTP(rec, r)
		status := rec.status
		if errors.Is(r.Context().Err(), context.Canceled) {
			// The client hung up before its answer: whatever was written
			// went nowhere. Counted apart (nginx's 499), so that a client
			// closing its sockets cannot raise the server error rate.
			status = statusClientClosed
		}
		s.Metrics.HTTPDuration.WithLabelValues(pattern, r.Method).Observe(time.Since(start).Seconds())
		s.Metrics.HTTPRequests.WithLabelValues(pattern, r.Method, itoa(status)).Inc()
	})
}

// authenticate requires a valid Bearer key when keys are configured and
// puts the caller's tenant in the context.
func (s *server) authenticate(next http.Handler, public bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if public {
			next.ServeHTTP(w, r)
			return
		}
		t, ok := s.tenantOf(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="runbox"`)
			writeProblem(w, errorf(http.StatusUnauthorized, "unauthorized", "a valid API key is required"))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tenantKey, t)))
	})
}

// clientKey is what rate limits count against: the tenant when keys are on,
// else the client's address.
func clientKey(r *http.Request) string {
	if t := tenant(r); t != "" {
		return "t:" + t
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "a:" + host
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
