package api

import "net/http"

// routes maps the whole API. Every route is wrapped by s.handle, which adds
// authentication, metrics by route pattern and problem+json errors.
func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, h http.Handler, public bool) {
		mux.Handle(pattern, s.instrument(pattern, s.authenticate(h, public)))
	}

	handle("POST /code-sessions", s.createSession(), false)
	handle("GET /code-sessions/{id}", s.getSession(), false)
	handle("PATCH /code-sessions/{id}", s.autosave(), false)
	handle("DELETE /code-sessions/{id}", s.closeSession(), false)
	handle("POST /code-sessions/{id}/run", s.run(), false)
	handle("GET /code-sessions/{id}/executions", s.listExecutions(), false)
	handle("GET /executions/{id}", s.getExecution(), false)
	handle("GET /languages", s.languages(), false)
	handle("GET /openapi.yaml", s.openAPI(), false)
	s.handleOps(handle)

	return s.outermost(s.unmatched(mux))
}

// opsRoutes is the operational subset, for processes without the API.
func (s *server) opsRoutes() http.Handler {
	mux := http.NewServeMux()
	s.handleOps(func(pattern string, h http.Handler, _ bool) { mux.Handle(pattern, s.instrument(pattern, h)) })
	return s.outermost(s.unmatched(mux))
}

func (s *server) handleOps(handle func(pattern string, h http.Handler, public bool)) {
	handle("GET /healthz", s.healthz(), true)
	handle("GET /readyz", s.readyz(), true)
	handle("GET /metrics", s.metrics(), true)
}
