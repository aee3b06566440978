package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// client talks to runbox's API.
type client struct {
	base string
	key  string
	hc   *http.Client
}

func newClient(base, key string) *client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
	}
	return &client{base: base, key: key, hc: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

// problem is an RFC 9457 error body.
type problem struct {
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

// do sends body as JSON and decodes a 2xx answer into out; it returns the
// status and, for a problem answer, its code.
func (c *client) do(ctx context.Context, method, path string, body, out any) (int, string, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, "", err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, "", err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, "", err
	}
	if resp.StatusCode >= 300 {
		var p problem
		_ = json.Unmarshal(raw, &p)
		if p.Code == "" {
			p.Code = fmt.Sprint("http_", resp.StatusCode)
		}
		return resp.StatusCode, p.Code, nil
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, "", fmt.Errorf("%s %s: decoding answer: %w", method, path, err)
		}
	}
	return resp.StatusCode, "", nil
}

type sessionJSON struct {
	SessionID string `json:"session_id"`
	Version   int64  `json:"version"`
}

type executionJSON struct {
	ExecutionID string     `json:"execution_id"`
	Status      string     `json:"status"`
	QueuedAt    *time.Time `json:"queued_at"`
	StartedAt   *time.Time `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at"`
	Stdout      *string    `json:"stdout"`
	Stderr      *string    `json:"stderr"`
	Error       *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func terminal(status string) bool {
	switch status {
	case "COMPLETED", "FAILED", "TIMEOUT", "CANCELLED":
		return true
	}
	return false
}

func (c *client) createSession(ctx context.Context, lang, src string) (string, error) {
	var s sessionJSON
	st, code, err := c.do(ctx, "POST", "/code-sessions", map[string]any{"language": lang, "source_code": src}, &s)
	if err != nil {
		return "", err
	}
	if st != 201 {
		return "", fmt.Errorf("POST /code-sessions: %d %s", st, code)
	}
	return s.SessionID, nil
}

// save autosaves src into the session.
func (c *client) save(ctx context.Context, sessionID, src string) (int, string, error) {
	var out sessionJSON
	return c.do(ctx, "PATCH", "/code-sessions/"+sessionID, map[string]any{"source_code": src}, &out)
}

// submit posts a run; a non-202 answer is returned as status and code.
func (c *client) submit(ctx context.Context, sessionID string) (string, int, string, error) {
	var e executionJSON
	st, code, err := c.do(ctx, "POST", "/code-sessions/"+sessionID+"/run", map[string]any{}, &e)
	return e.ExecutionID, st, code, err
}

// wait long-polls until the execution is terminal.
func (c *client) wait(ctx context.Context, id string) (*executionJSON, error) {
	for {
		var e executionJSON
		st, code, err := c.do(ctx, "GET", "/executions/"+id+"?wait=30", nil, &e)
		if err != nil {
			return nil, err
		}
		if st != 200 {
			return nil, fmt.Errorf("GET /executions/%s: %d %s", id, st, code)
		}
		if terminal(e.Status) {
			return &e, nil
		}
	}
}

// runAndWait submits a run and waits for its result, which must be
// COMPLETED with stdout "hello\n".
func (c *client) runAndWait(ctx context.Context, sessionID string) (*executionJSON, error) {
	id, st, code, err := c.submit(ctx, sessionID)
	if err != nil {
		return nil, err
	}
	if st != 202 {
		return nil, fmt.Errorf("POST run: %d %s", st, code)
	}
	e, err := c.wait(ctx, id)
	if err != nil {
		return nil, err
	}
	if e.Status != "COMPLETED" || e.Stdout == nil || *e.Stdout != "hello\n" {
		msg := ""
		if e.Error != nil {
			msg = e.Error.Code + ": " + e.Error.Message
		}
		return nil, fmt.Errorf("execution %s ended %s %s", id, e.Status, msg)
	}
	return e, nil
}
