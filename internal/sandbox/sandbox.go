// Package sandbox runs untrusted programs in a fresh, measured jail.
//
// It knows nothing about sessions, queues or HTTP: a caller hands it the
// files of a program and one or two steps (an optional compile and a run),
// and gets back, per step, what the program printed, how it ended and what
// it cost. Everything a program can do to escape or exhaust the host is
// stopped here; see DESIGN.md, "Sandbox threat model".
package sandbox

import "time"

// Limits bound one step of a run. Zero values are invalid: the caller
// (the language registry) always supplies every limit.
type Limits struct {
	WallTime     time.Duration // killed after this much real time
	CPUTime      time.Duration // killed after this much CPU time (all processes)
	MemoryBytes  int64         // cgroup memory limit, swap off
	Pids         int           // cgroup pids limit (processes and threads)
	OutputBytes  int64         // bytes of stdout and of stderr kept, each
	OutputKill   int64         // a stream writing past this is killed: OutputLimit
	ScratchBytes int64         // writable space: /box, /tmp and /dev/shm together
	OpenFiles    int           // RLIMIT_NOFILE
	FileBytes    int64         // RLIMIT_FSIZE
}

// Step is one program started inside the jail.
type Step struct {
	Argv   []string // argv[0] is an absolute path inside the jail
	Stdin  []byte
	Limits Limits
	// PythonScript says that Argv is a python interpreter, a script in the
	// working directory and its arguments: a pooled jail whose last run was
	// the same interpreter with the same environment keeps it started as a
	// template, and the step is a fork of it (see template_linux.go). Only
	// a run with no compile step uses it.
	PythonScript bool
}

// File is written into the jail's working directory before the first step.
type File struct {
	Name    string // a plain file name, no directories
	Content []byte
	Mode    uint32 // e.g. 0o644
}

// Request describes one run. Compile, when set, runs first in the same
// working directory; Run happens only if Compile ends with OutcomeOK.
type Request struct {
	Files         []File
	Compile       *Step
	Run           Step
	ReadOnlyPaths []string // host paths mounted read-only at the same place (besides the base set)
	Env           []string // the whole environment of every step; never the worker's
	// KeepCompiled asks for the files of the working directory once the
	// compile step has succeeded (Report.Compiled): a later Request with
	// those Files and no Compile runs the same program without compiling.
	KeepCompiled bool
}

// Outcome classifies how a step ended.
type Outcome string

const (
	OutcomeOK          Outcome = "ok"           // exited 0
	OutcomeNonZeroExit Outcome = "exit"         // exited with a non-zero status
	OutcomeSignaled    Outcome = "signal"       // killed by a signal it did not get from us
	OutcomeMemoryLimit Outcome = "memory_limit" // the cgroup's OOM killer fired
	OutcomeTimeLimit   Outcome = "time_limit"   // wall or CPU limit reached
	OutcomeOutputLimit Outcome = "output_limit" // wrote past Limits.OutputKill
)

// StepReport is what one step did and cost.
type StepReport struct {
	Outcome         Outcome
	ExitCode        int    // valid when the program exited
	Signal          string // e.g. "SIGSEGV", when Outcome is OutcomeSignaled
	Stdout, Stderr  []byte // at most Limits.OutputBytes each
	StdoutTruncated bool
	StderrTruncated bool
	WallTime        time.Duration
	CPUTime         time.Duration
	MemoryBytes     int64 // peak, from the cgroup
	// Forked: the program was a fork of the jail's template interpreter
	// (see Step.PythonScript); CPUTime and MemoryBytes count from the
	// fork, and the pages it shares with the template are not in them.
	Forked bool
}

// Report is the result of a Request. Run is nil when compilation failed.
type Report struct {
	Compile *StepReport
	Run     *StepReport
	// Compiled (with Request.KeepCompiled, after a successful compile) is
	// every file of the working directory as the compile step left it;
	// nil when it held anything but regular files, or more than a few
	// dozen files or megabytes.
	Compiled []File
}
