package api

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func (s *server) languages() http.Handler {
	type lang struct {
		ID       string `json:"id"`
		Name     string `json:"name"`
		Version  string `json:"version"`
		Template string `json:"template"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := []lang{}
		for _, l := range s.Languages.Available() {
			out = append(out, lang{l.ID, l.Name, l.Version, l.Template})
		}
		writeJSON(w, http.StatusOK, out)
	})
}

func (s *server) healthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// readyz reports each check by name; reasons are short and generic (they
// are public: no hostnames, paths or configuration values).
func (s *server) readyz() http.Handler {
	type report struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		rep := report{Status: "ok", Checks: map[string]string{"database": "ok"}}
		if err := s.Store.Ping(ctx); err != nil {
			rep.Checks["database"] = "unreachable"
			rep.Status = "unavailable"
		}
		for name, check := range s.Checks {
			rep.Checks[name] = "ok"
			if reason := check(ctx); reason != "" {
				rep.Checks[name], rep.Status = reason, "unavailable"
			}
		}
		if rep.Status != "ok" {
			w.Header().Set("Retry-After", "5")
			writeJSON(w, http.StatusServiceUnavailable, rep)
			return
		}
		writeJSON(w, http.StatusOK, rep)
	})
}

func (s *server) metrics() http.Handler {
	return promhttp.HandlerFor(s.Metrics.Registry, promhttp.HandlerOpts{})
}

func (s *server) openAPI() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(s.OpenAPI)
	})
}
