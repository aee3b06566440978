package api

import (
	"bytes"
	"encoding/json"
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
