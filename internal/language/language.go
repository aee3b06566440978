// Package language is the registry of languages runbox offers (SPEC §3): how
// to compile and run each, its template, its limits, and whether its
// toolchain is present on this machine.
package language

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/runbox/runbox/internal/config"
	"github.com/runbox/runbox/internal/sandbox"
)

//go:embed languages.yaml
var embedded []byte

// BaseEnv is the whole environment of every step, before a language's own
// additions. Fixed: a program never sees the worker's environment.
var BaseEnv = []string{
	"PATH=/usr/local/bin:/usr/bin:/bin",
	"HOME=/box",
	"TMPDIR=/tmp",
	"LANG=C.UTF-8",
	"LC_ALL=C.UTF-8",
}

// Override replaces some limits of one step for one language.
type Override struct {
	WallTime time.Duration `yaml:"wall_time"`
	CPUTime  time.Duration `yaml:"cpu_time"`
	Memory   string        `yaml:"memory"`
	Pids     int           `yaml:"pids"`
}

// Language is one entry of the registry.
type Language struct {
	ID             string   `yaml:"id"`
	Name           string   `yaml:"name"`
	VersionCommand []string `yaml:"version_command"`
	SourceFile     string   `yaml:"source_file"`
	Compile        []string `yaml:"compile"`
	Run            []string `yaml:"run"`
	// Prestart "python" says that run is a python interpreter followed by
	// the script: a pooled jail keeps that interpreter started, as a
	// template that each run is a fork of (see the sandbox's template).
	Prestart string `yaml:"prestart"`
	// MemoryError is what the runtime prints to stderr when it exhausts a
	// memory bound of its own that stands for the memory limit (the JVM's
	// -Xmx): a run that exits non-zero with it is MEMORY_LIMIT_EXCEEDED.
	MemoryError string   `yaml:"memory_error"`
	Template    string   `yaml:"template"`
	Paths       []string `yaml:"paths"`
	Env         []string `yaml:"env"`
	Limits      struct {
		Compile Override `yaml:"compile"`
		Run     Override `yaml:"run"`
	} `yaml:"limits"`

	// Version is the first line the version command printed, set by Probe.
	Version string `yaml:"-"`
}

// Registry holds every configured language and knows which are available.
type Registry struct {
	all []*Language

	mu        sync.RWMutex
	available []*Language
}

var (
	// goTypes is the " into <Go type>" or " in type <Go type>" of a YAML
	// decoding error.
	goTypes     = regexp.MustCompile(`(?: into| in type) [^\n]*`)
	idPattern   = regexp.MustCompile(`^[a-z][a-z0-9_+-]{0,31}$`)
	filePattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$`)
)

// Load reads the registry from path, or the embedded one when path is "".
func Load(path string) (*Registry, error) {
	data := embedded
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("languages file: %w", err)
		}
		data = b
	}
	var file struct {
		Languages []*Language `yaml:"languages"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		// The decoder names Go types ("into struct { Languages … }"); the
		// operator needs the line and what is wrong there.
		return nil, fmt.Errorf("languages file: %s", goTypes.ReplaceAllString(err.Error(), ""))
	}
	seen := map[string]bool{}
	for _, l := range file.Languages {
		if err := l.validate(); err != nil {
			return nil, fmt.Errorf("languages file: %s: %w", l.ID, err)
		}
		if seen[l.ID] {
			return nil, fmt.Errorf("languages file: duplicate id %q", l.ID)
		}
		seen[l.ID] = true
	}
	if len(file.Languages) == 0 {
		return nil, errors.New("languages file: no languages")
	}
	return &Registry{all: file.Languages}, nil
}

func (l *Language) validate() error {
	switch {
	case !idPattern.MatchString(l.ID):
		return errors.New("id must match " + idPattern.String())
	case l.Name == "":
		return errors.New("name is required")
	case !filePattern.MatchString(l.SourceFile):
		return errors.New("source_file must be a plain file name")
	case len(l.Run) == 0 || !strings.HasPrefix(l.Run[0], "/"):
		return errors.New("run must start with an absolute path")
	case len(l.Compile) > 0 && !strings.HasPrefix(l.Compile[0], "/"):
		return errors.New("compile must start with an absolute path")
	case len(l.VersionCommand) == 0 || !strings.HasPrefix(l.VersionCommand[0], "/"):
		return errors.New("version_command must start with an absolute path")
	case l.Prestart != "" && l.Prestart != "python":
		return errors.New(`prestart must be "python" or absent`)
	case l.Prestart != "" && (len(l.Compile) > 0 || len(l.Run) < 2 || !filePattern.MatchString(l.Run[1])):
		return errors.New("prestart needs a run of [interpreter, script, args...] and no compile")
	}
	for _, o := range []Override{l.Limits.Compile, l.Limits.Run} {
		if o.Memory != "" {
			if _, err := config.ParseBytes(o.Memory); err != nil {
				return err
			}
		}
	}
	return nil
}

// Probe runs every language's version command (trusted binaries, fixed
// arguments) and keeps as available those that answer. Called at start.
func (r *Registry) Probe(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	ok := make([]bool, len(r.all))
	for i, l := range r.all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.CommandContext(ctx, l.VersionCommand[0], l.VersionCommand[1:]...)
			cmd.Env = BaseEnv
			out, err := cmd.CombinedOutput()
			if err != nil {
				return
			}
			l.Version, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
			ok[i] = true
		}()
	}
	wg.Wait()
	var avail []*Language
	for i, l := range r.all {
		if ok[i] {
			avail = append(avail, l)
		}
	}
	r.mu.Lock()
	r.available = avail
	r.mu.Unlock()
}

// Available lists the languages whose toolchain answered Probe, in file order.
func (r *Registry) Available() []*Language {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Clone(r.available)
}

// Lookup returns an available language.
func (r *Registry) Lookup(id string) (*Language, bool) {
	for _, l := range r.Available() {
		if l.ID == id {
			return l, true
		}
	}
	return nil, false
}

// IDs lists the ids of the available languages.
func (r *Registry) IDs() []string {
	var ids []string
	for _, l := range r.Available() {
		ids = append(ids, l.ID)
	}
	return ids
}

// StepLimits are the configured defaults that Request turns into sandbox limits.
type StepLimits struct {
	Run, Compile                     config.Limits
	OutputBytes, OutputKill, Scratch int64
}

// Request builds the sandbox request that compiles (if needed) and runs source.
func (l *Language) Request(source, stdin string, d StepLimits) sandbox.Request {
	req := sandbox.Request{
		Files: []sandbox.File{{Name: l.SourceFile, Content: []byte(source), Mode: 0o644}},
		Run: sandbox.Step{Argv: l.Run, Stdin: []byte(stdin), Limits: d.limits(d.Run, l.Limits.Run),
			PythonScript: l.Prestart == "python"},
		ReadOnlyPaths: l.Paths,
		Env:           append(slices.Clone(BaseEnv), l.Env...),
	}
	if len(l.Compile) > 0 {
		req.Compile = &sandbox.Step{Argv: l.Compile, Limits: d.limits(d.Compile, l.Limits.Compile)}
	}
	return req
}

func (d StepLimits) limits(base config.Limits, o Override) sandbox.Limits {
	lim := sandbox.Limits{
		WallTime:     base.WallTime,
		CPUTime:      base.CPUTime,
		MemoryBytes:  base.MemoryBytes,
		Pids:         base.Pids,
		OutputBytes:  d.OutputBytes,
		OutputKill:   d.OutputKill,
		ScratchBytes: d.Scratch,
		OpenFiles:    256,
		FileBytes:    d.Scratch,
	}
	if o.WallTime > 0 {
		lim.WallTime = o.WallTime
	}
	if o.CPUTime > 0 {
		lim.CPUTime = o.CPUTime
	}
	if o.Memory != "" {
		lim.MemoryBytes, _ = config.ParseBytes(o.Memory) // validated by Load
	}
	if o.Pids > 0 {
		lim.Pids = o.Pids
	}
	return lim
}
