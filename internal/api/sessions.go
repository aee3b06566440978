package api

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/runbox/runbox/internal/session"
)

// pathID parses the {id} of a route; a malformed UUID is an unknown id, and
// so is the nil UUID, which no session or execution ever has (the store
// refuses to write it).
func pathID(r *http.Request, notFound *apiError) (uuid.UUID, *apiError) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil || len(r.PathValue("id")) != 36 || id == uuid.Nil {
		return uuid.Nil, notFound
	}
	return id, nil
}

var errSessionNotFound = errorf(http.StatusNotFound, "session_not_found", "no such session")

// checkLanguage refuses an id the deployment does not offer. The answer
// does not echo the id: it may be a megabyte long.
func (s *server) checkLanguage(id string) *apiError {
	if _, ok := s.Languages.Lookup(id); !ok {
		return errorf(http.StatusBadRequest, "unsupported_language",
			"this language is not offered; supported: "+strings.Join(s.Languages.IDs(), ", "))
	}
	return nil
}

func (s *server) checkSource(src string) *apiError {
	if int64(len(src)) > s.Config.MaxSourceBytes {
		return errorf(http.StatusRequestEntityTooLarge, "source_too_large",
			"source_code is larger than this server accepts")
	}
	return nil
}

func (s *server) createSession() http.Handler {
	type request struct {
		Language   *string `json:"language"`
		SourceCode *string `json:"source_code"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e := s.rateLimit(r, s.newLimit); e != nil {
			s.reject(w, e)
			return
		}
		var req request
		if e := decode(w, r, &req, false); e != nil {
			writeProblem(w, e)
			return
		}
		if req.Language == nil {
			writeProblem(w, errorf(http.StatusBadRequest, "invalid_request", "language is required"))
			return
		}
		if e := s.checkLanguage(*req.Language); e != nil {
			writeProblem(w, e)
			return
		}
		lang, _ := s.Languages.Lookup(*req.Language)
		src := lang.Template
		if req.SourceCode != nil {
			src = *req.SourceCode
		}
		if e := s.checkSource(src); e != nil {
			writeProblem(w, e)
			return
		}
		now := s.Now().UTC()
		sess := &session.Session{ID: uuid.New(), Tenant: tenant(r), Status: session.Active, Language: lang.ID,
			SourceCode: src, Version: 1, CreatedAt: now, UpdatedAt: now}
		if err := s.Store.CreateSession(r.Context(), sess); err != nil {
			writeProblem(w, s.storeError(r, err))
			return
		}
		w.Header().Set("Location", "/code-sessions/"+sess.ID.String())
		setETag(w, sess.Version)
		writeJSON(w, http.StatusCreated, sessionBody(sess))
	})
}

func (s *server) getSession() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, e := pathID(r, errSessionNotFound)
		if e != nil {
			writeProblem(w, e)
			return
		}
		sess, err := s.Store.GetSession(r.Context(), tenant(r), id)
		if err != nil {
			writeProblem(w, s.storeError(r, err))
			return
		}
		setETag(w, sess.Version)
		writeJSON(w, http.StatusOK, sessionBody(sess))
	})
}

func (s *server) autosave() http.Handler {
	type request struct {
		Language   *string `json:"language"`
		SourceCode *string `json:"source_code"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, e := pathID(r, errSessionNotFound)
		if e != nil {
			writeProblem(w, e)
			return
		}
		if e := s.rateLimit(r, s.saveLim); e != nil {
			s.reject(w, e)
			return
		}
		var req request
		if e := decode(w, r, &req, false); e != nil {
			writeProblem(w, e)
			return
		}
		if req.Language == nil && req.SourceCode == nil {
			writeProblem(w, errorf(http.StatusBadRequest, "invalid_request", "source_code or language is required"))
			return
		}
		if req.Language != nil {
			if e := s.checkLanguage(*req.Language); e != nil {
				writeProblem(w, e)
				return
			}
		}
		if req.SourceCode != nil {
			if e := s.checkSource(*req.SourceCode); e != nil {
				writeProblem(w, e)
				return
			}
		}
		versions, e := ifMatch(r)
		if e != nil {
			writeProblem(w, e)
			return
		}
		patch := session.Patch{Language: req.Language, SourceCode: req.SourceCode, IfMatch: versions}
		sess, err := s.Store.UpdateSession(r.Context(), tenant(r), id, patch, s.Now().UTC())
		if err != nil {
			writeProblem(w, s.storeError(r, err))
			return
		}
		setETag(w, sess.Version)
		writeJSON(w, http.StatusOK, autosaveBody(sess))
	})
}

// ifMatch reads If-Match (RFC 9110 §13.1.1): "*" or a list of entity
// tags, of which any may match. A tag is "<version>"; a bare number is
// accepted too, and so is a weak tag (W/"3"), although If-Match compares
// strongly, because proxies that compress responses weaken the ETags they
// pass on. A header that names no version can never match: 412.
func ifMatch(r *http.Request) ([]int64, *apiError) {
	h := strings.TrimSpace(r.Header.Get("If-Match"))
	if h == "" {
		return nil, nil
	}
	versions := []int64{}
	for _, tag := range strings.Split(h, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" {
			return nil, nil
		}
		if v, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(tag, "W/"), `"`), 10, 64); err == nil && v >= 1 {
			versions = append(versions, v)
		}
	}
	if len(versions) == 0 {
		return nil, errorf(http.StatusPreconditionFailed, "version_conflict", "If-Match does not name a version of this session")
	}
	return versions, nil
}

func setETag(w http.ResponseWriter, version int64) {
	w.Header().Set("ETag", `"`+strconv.FormatInt(version, 10)+`"`)
}

func (s *server) closeSession() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, e := pathID(r, errSessionNotFound)
		if e != nil {
			writeProblem(w, e)
			return
		}
		if err := s.Store.CloseSession(r.Context(), tenant(r), id, s.Now().UTC()); err != nil {
			writeProblem(w, s.storeError(r, err))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
