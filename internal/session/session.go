// Package session holds the code session: the learner's current source,
// saved many times a minute and versioned so that concurrent saves never
// lose an update silently.
package session

import (
	"time"

	"github.com/google/uuid"
)

// Status of a session.
type Status string

const (
	Active Status = "ACTIVE"
	Closed Status = "CLOSED"
)

// Session is a learner's editor buffer.
type Session struct {
	ID         uuid.UUID
	Tenant     string
	Status     Status
	Language   string
	SourceCode string
	Version    int64 // 1 at creation, +1 per accepted save
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Patch is an autosave: nil fields are left as they are.
type Patch struct {
	Language   *string
	SourceCode *string
	// IfMatch, when not nil, lists the versions the save may apply to
	// (If-Match may name several); the save fails on any other.
	IfMatch []int64
}
