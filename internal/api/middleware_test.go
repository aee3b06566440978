package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/runbox/runbox/internal/telemetry"
)

// TestPanicBecomesAnIncident: a panic in a handler reaches the client as a
// 500 internal_error with an incident id and nothing else; the log has the
// same incident id and the panic value.
func TestPanicBecomesAnIncident(t *testing.T) {
	var logs bytes.Buffer
	s := &server{Deps: Deps{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Metrics: telemetry.NewMetrics()}}
	h := s.outermost(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("secret detail /etc/runbox at line 42")
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/code-sessions", nil))
	var p problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatalf("not a problem: %s", rec.Body)
	}
	if rec.Code != 500 || p.Code != "internal_error" || rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("%d %+v", rec.Code, p)
	}
	if strings.Contains(rec.Body.String(), "secret") || strings.Contains(rec.Body.String(), "/etc") {
		t.Fatalf("the panic leaked to the client: %s", rec.Body)
	}
	incident := strings.TrimPrefix(p.Detail, "internal error; incident ")
	if len(incident) != 36 || !strings.Contains(logs.String(), incident) || !strings.Contains(logs.String(), "secret detail") {
		t.Fatalf("incident %q not logged with the panic: %s", incident, logs.String())
	}
	if rec.Header().Get("X-Request-ID") == "" {
		t.Fatal("no request id")
	}
}

// TestAbandonedRequestIsNoIncident: a client that hangs up mid-request
// makes the store fail with context.Canceled; that is neither logged as an
// internal error nor counted as a 500.
func TestAbandonedRequestIsNoIncident(t *testing.T) {
	var logs bytes.Buffer
	metrics := telemetry.NewMetrics()
	s := &server{Deps: Deps{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Metrics: metrics}}
	h := s.instrument("GET /x", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // the store's query, cut short
		writeProblem(w, s.storeError(r, fmt.Errorf("query: %w", r.Context().Err())))
	}))
	ctx, hangUp := context.WithCancel(context.Background())
	hangUp()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil).WithContext(ctx))
	if strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Errorf("logged as an error: %s", logs.String())
	}
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var statuses []string
	for _, f := range families {
		if f.GetName() != "runbox_http_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "status" {
					statuses = append(statuses, fmt.Sprint(l.GetValue(), "=", m.GetCounter().GetValue()))
				}
			}
		}
	}
	if strings.Join(statuses, ",") != "499=1" {
		t.Errorf("requests counted by status: %v, want 499=1", statuses)
	}
}
