package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/runbox/runbox/internal/config"
	"github.com/runbox/runbox/internal/execution"
	"github.com/runbox/runbox/internal/session"
)

// problem is an RFC 9457 problem detail with runbox's stable code.
type problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Code     string `json:"code"`
	Instance string `json:"instance,omitempty"`
}

// apiError is an error that knows its HTTP answer.
type apiError struct {
	status     int
	code       string
	detail     string
	retryAfter int // seconds; 0 = no header
}

func (e *apiError) Error() string { return e.code + ": " + e.detail }

func errorf(status int, code, detail string) *apiError {
	return &apiError{status: status, code: code, detail: detail}
}

var titles = map[string]string{
	"invalid_request":        "Invalid request",
	"unsupported_language":   "Unsupported language",
	"unauthorized":           "Unauthorized",
	"session_not_found":      "Session not found",
	"execution_not_found":    "Execution not found",
	"not_found":              "Not found",
	"method_not_allowed":     "Method not allowed",
	"session_closed":         "Session closed",
	"version_conflict":       "Version conflict",
	"source_too_large":       "Source too large",
	"stdin_too_large":        "Stdin too large",
	"body_too_large":         "Body too large",
	"idempotency_key_reused": "Idempotency key reused",
	"rate_limited":           "Rate limited",
	"too_many_inflight":      "Too many executions in flight",
	"internal_error":         "Internal error",
	"overloaded":             "Overloaded",
	"unavailable":            "Service unavailable",
}

// writeProblem answers with a problem+json body.
func writeProblem(w http.ResponseWriter, e *apiError) {
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", itoa(e.retryAfter))
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(problem{
		Type:   "https://runbox.dev/problems/" + strings.ReplaceAll(e.code, "_", "-"),
		Title:  titles[e.code],
		Status: e.status,
		Detail: e.detail,
		Code:   e.code,
	})
}

// writeJSON answers with a JSON body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

var errBodyTooLarge = errorf(http.StatusRequestEntityTooLarge, "body_too_large", "request bodies are limited to 1 MiB")

// decode reads a JSON body strictly: one object, each field named exactly
// as documented and at most once, no unknown fields, at most
// config.MaxBodyBytes. An empty body is allowed only when emptyOK.
func decode(w http.ResponseWriter, r *http.Request, v any, emptyOK bool) *apiError {
	if r.ContentLength > config.MaxBodyBytes {
		// Refused before the first read, so that a client that sent
		// "Expect: 100-continue" is not invited to send it.
		return errBodyTooLarge
	}
	data, err := readBody(http.MaxBytesReader(w, r.Body, config.MaxBodyBytes), r.ContentLength)
	if err == nil {
		if len(bytes.Trim(data, jsonSpace)) == 0 {
			if emptyOK {
				return nil
			}
			return errorf(http.StatusBadRequest, "invalid_request", "request body is required")
		}
		// The names first: json.Unmarshal ignores case and takes the last
		// of a repeated field. Every top-level name is then known, and the
		// request types are flat, so no unknown field is left to refuse;
		// Unmarshal refuses trailing data.
		if e := checkFieldNames(data, v); e != nil {
			return e
		}
		err = json.Unmarshal(data, v)
	}
	if err == nil {
		return nil
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return errBodyTooLarge
	}
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field == "":
		return errorf(http.StatusBadRequest, "invalid_request", "request body must be a JSON object")
	case errors.As(err, &typeErr):
		return errorf(http.StatusBadRequest, "invalid_request", "field "+typeErr.Field+" has the wrong type")
	default:
		return errorf(http.StatusBadRequest, "invalid_request", "body is not valid JSON")
	}
}

// readBody reads a whole body into one buffer of the announced size when
// there is one (io.ReadAll would grow its way there, copying), but reserves
// no more than a source's worth before the bytes arrive: a client announcing
// 1 MiB and sending nothing must not hold 1 MiB of ours.
func readBody(body io.Reader, contentLength int64) ([]byte, error) {
	b := make([]byte, 0, min(max(contentLength, 0), 64<<10)+512)
	for {
		n, err := body.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
		if len(b) == cap(b) {
			b = slices.Grow(b, len(b))
		}
	}
}

// checkFieldNames refuses what encoding/json would quietly accept in a
// body's top-level object: a field given twice (the last would win, so two
// layers reading the same body could disagree on what was sent) and a name
// that matches a field only when case is ignored ("Source_Code"). v is a
// pointer to the request struct. A body that is not an object is refused
// here; one that is not valid JSON is left for the decoder to refuse.
func checkFieldNames(data []byte, v any) *apiError {
	keys, ok := topLevelKeys(data)
	if !ok {
		if i := skipSpace(data, 0); i < len(data) && data[i] != '{' {
			// json.Unmarshal would take null as an empty request.
			return errorf(http.StatusBadRequest, "invalid_request", "request body must be a JSON object")
		}
		return nil
	}
	known := jsonNames(reflect.TypeOf(v).Elem())
	for i, name := range keys {
		if !slices.Contains(known, name) {
			if len(name) > 40 { // a detail never echoes a client's input at length
				name = strings.ToValidUTF8(name[:40], "") + "…"
			}
			return errorf(http.StatusBadRequest, "invalid_request", "unknown field "+strconv.Quote(name))
		}
		if slices.Contains(keys[:i], name) {
			return errorf(http.StatusBadRequest, "invalid_request", "field "+strconv.Quote(name)+" appears more than once")
		}
	}
	return nil
}

// topLevelKeys lists the keys of the JSON object in data, in order; ok is
// false where data is not an object this scan can follow, and the decoder
// then says what is wrong. It only skips over values, scanning strings
// with IndexAny, so that an autosave's source is not decoded twice (a
// json.Decoder token pass cost as much again as the decoding itself).
func topLevelKeys(data []byte) (keys []string, ok bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return nil, false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return nil, true
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return nil, false
		}
		end := stringEnd(data, i)
		if end < 0 {
			return nil, false
		}
		var key string
		if err := json.Unmarshal(data[i:end], &key); err != nil {
			return nil, false
		}
		keys = append(keys, key)
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return nil, false
		}
		if i = valueEnd(data, skipSpace(data, i+1)); i < 0 {
			return nil, false
		}
		i = skipSpace(data, i)
		switch {
		case i < len(data) && data[i] == ',':
			i = skipSpace(data, i+1)
		case i < len(data) && data[i] == '}':
			return keys, true
		default:
			return nil, false
		}
	}
}

// jsonSpace is what JSON allows between tokens (bytes.TrimSpace would also
// take Unicode spaces, which make a body invalid).
const jsonSpace = " \t\n\r"

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the string that starts at i, or -1.
// A quote ends it unless an odd number of backslashes precede it.
func stringEnd(data []byte, i int) int {
	for j := i + 1; j < len(data); {
		k := bytes.IndexByte(data[j:], '"')
		if k < 0 {
			return -1
		}
		q := j + k
		escaped := false
		for p := q - 1; p > i && data[p] == '\\'; p-- {
			escaped = !escaped
		}
		if !escaped {
			return q + 1
		}
		j = q + 1
	}
	return -1
}

// valueEnd returns the index just past the value that starts at i, or -1.
func valueEnd(data []byte, i int) int {
	if i >= len(data) {
		return -1
	}
	switch data[i] {
	case '"':
		return stringEnd(data, i)
	case '{', '[':
		depth := 0
		for i < len(data) {
			switch data[i] {
			case '"':
				if i = stringEnd(data, i); i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	}
	// A number, true, false or null.
	for i < len(data) && strings.IndexByte(",}] \t\r\n", data[i]) < 0 {
		i++
	}
	return i
}

// jsonNames lists the JSON field names of a request struct.
func jsonNames(t reflect.Type) []string {
	names := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		names = append(names, name)
	}
	return names
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func stampPtr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := stamp(*t)
	return &s
}

type sessionJSON struct {
	SessionID  string         `json:"session_id"`
	Status     session.Status `json:"status"`
	Language   string         `json:"language"`
	SourceCode *string        `json:"source_code,omitempty"`
	Version    int64          `json:"version"`
	CreatedAt  string         `json:"created_at,omitempty"`
	UpdatedAt  string         `json:"updated_at"`
}

func sessionBody(s *session.Session) sessionJSON {
	return sessionJSON{
		SessionID: s.ID.String(), Status: s.Status, Language: s.Language, SourceCode: &s.SourceCode,
		Version: s.Version, CreatedAt: stamp(s.CreatedAt), UpdatedAt: stamp(s.UpdatedAt),
	}
}

// autosaveBody is the short answer to PATCH: no source echo, autosave is hot.
func autosaveBody(s *session.Session) sessionJSON {
	return sessionJSON{SessionID: s.ID.String(), Status: s.Status, Language: s.Language, Version: s.Version, UpdatedAt: stamp(s.UpdatedAt)}
}

type executionJSON struct {
	ExecutionID     string           `json:"execution_id"`
	SessionID       string           `json:"session_id"`
	Language        string           `json:"language"`
	Status          execution.Status `json:"status"`
	QueuedAt        string           `json:"queued_at"`
	StartedAt       *string          `json:"started_at"`
	FinishedAt      *string          `json:"finished_at"`
	Attempts        int              `json:"attempts"`
	Stdout          *string          `json:"stdout"`
	Stderr          *string          `json:"stderr"`
	StdoutTruncated *bool            `json:"stdout_truncated"`
	StderrTruncated *bool            `json:"stderr_truncated"`
	CompileOutput   *string          `json:"compile_output"`
	ExitCode        *int             `json:"exit_code"`
	Signal          *string          `json:"signal"`
	ExecutionTimeMS *int64           `json:"execution_time_ms"`
	CPUTimeMS       *int64           `json:"cpu_time_ms"`
	MemoryKB        *int64           `json:"memory_kb"`
	Error           *execution.Error `json:"error"`
}

func executionBody(e *execution.Execution) executionJSON {
	out := executionJSON{
		ExecutionID: e.ID.String(), SessionID: e.SessionID.String(), Language: e.Language, Status: e.Status,
		QueuedAt: stamp(e.QueuedAt), StartedAt: stampPtr(e.StartedAt), FinishedAt: stampPtr(e.FinishedAt),
		Attempts: e.Attempts,
	}
	if r := e.Result; r != nil && e.Status.Terminal() {
		// Output exists only where the program ran: a compilation error or
		// an internal error has no stdout to show, and "" would claim that
		// the program printed nothing. Every run step is timed, so the
		// wall time says whether it ran.
		if r.ExecutionTimeMS != nil {
			out.Stdout, out.Stderr = &r.Stdout, &r.Stderr
			out.StdoutTruncated, out.StderrTruncated = &r.StdoutTruncated, &r.StderrTruncated
		}
		out.CompileOutput, out.ExitCode, out.Signal = r.CompileOutput, r.ExitCode, r.Signal
		out.ExecutionTimeMS, out.CPUTimeMS, out.MemoryKB = r.ExecutionTimeMS, r.CPUTimeMS, r.MemoryKB
		out.Error = r.Error
	}
	return out
}

type acceptedJSON struct {
	ExecutionID string           `json:"execution_id"`
	SessionID   string           `json:"session_id"`
	Status      execution.Status `json:"status"`
	QueuedAt    string           `json:"queued_at"`
}
