// Package execution holds the execution record and its lifecycle: the one
// place that says which status may follow which. Stores build their
// conditional updates from Predecessors, so an illegal transition cannot be
// written, whatever the caller does.
package execution

import (
	"time"

	"github.com/google/uuid"
)

// Status is where an execution stands in its lifecycle.
type Status string

const (
	Queued    Status = "QUEUED"
	Running   Status = "RUNNING"
	Completed Status = "COMPLETED"
	Failed    Status = "FAILED"
	Timeout   Status = "TIMEOUT"
)

// transitions lists, for each status, the statuses it may be entered from.
// RUNNING may follow RUNNING: a rescued attempt restarts a run whose worker
// died (the attempt number fences the old one out).
var transitions = map[Status][]Status{
	Queued:    nil,
	Running:   {Queued, Running},
	Completed: {Running},
	Failed:    {Queued, Running}, // QUEUED → FAILED only when the retry budget is spent before a start
	Timeout:   {Running},
}

// Predecessors returns the statuses from which next may be entered.
func Predecessors(next Status) []Status { return transitions[next] }

// CanTransition reports whether from → to is a legal step.
func CanTransition(from, to Status) bool {
	for _, s := range transitions[to] {
		if s == from {
			return true
		}
	}
	return false
}

// Terminal reports whether no transition leaves s.
func (s Status) Terminal() bool { return s == Completed || s == Failed || s == Timeout }

// ErrorCode is the stable verdict code of a FAILED or TIMEOUT execution.
type ErrorCode string

const (
	CompilationError    ErrorCode = "COMPILATION_ERROR"
	RuntimeError        ErrorCode = "RUNTIME_ERROR"
	MemoryLimitExceeded ErrorCode = "MEMORY_LIMIT_EXCEEDED"
	OutputLimitExceeded ErrorCode = "OUTPUT_LIMIT_EXCEEDED"
	InternalError       ErrorCode = "INTERNAL_ERROR"
	TimeLimitExceeded   ErrorCode = "TIME_LIMIT_EXCEEDED"
)

// Error explains a FAILED or TIMEOUT execution.
type Error struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message"`
}

// Execution is one run of a snapshot of a session's code.
type Execution struct {
	ID         uuid.UUID
	SessionID  uuid.UUID
	Tenant     string // "" when authentication is off
	Client     string // who asked for the run (tenant or address): its backlog is capped
	Language   string
	SourceCode string // snapshot taken when Run was pressed
	Stdin      string
	Status     Status
	QueuedAt   time.Time
	StartedAt  *time.Time
	FinishedAt *time.Time
	Attempts   int // the attempt that last entered RUNNING; fences late results

	IdempotencyKey string // "" when none was sent
	RequestHash    string // hash of the run request body, for idempotency_key_reused

	Result *Result // nil until terminal
}

// Result is what a terminal execution reports.
type Result struct {
	Status          Status // COMPLETED, FAILED or TIMEOUT
	Stdout          string
	Stderr          string
	StdoutTruncated bool
	StderrTruncated bool
	CompileOutput   *string
	ExitCode        *int
	Signal          *string
	ExecutionTimeMS *int64
	CPUTimeMS       *int64
	MemoryKB        *int64
	Error           *Error
}
