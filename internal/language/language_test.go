package language

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runbox/runbox/internal/config"
)

func TestEmbeddedRegistryHasEveryRequiredLanguage(t *testing.T) {
	r, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]*Language{}
	for _, l := range r.all {
		ids[l.ID] = l
	}
	for _, id := range []string{"python", "javascript", "c", "cpp", "go", "java", "rust", "bash"} {
		l, ok := ids[id]
		if !ok {
			t.Errorf("%s missing", id)
			continue
		}
		if !strings.Contains(l.Template, "Hello, world!") {
			t.Errorf("%s template does not greet", id)
		}
	}
}

func TestLoadRefusesBadFiles(t *testing.T) {
	cases := map[string]string{
		"not yaml":            "languages: [",
		"unknown field":       "languages:\n  - {id: x, name: X, version_command: [/bin/true], source_file: a, run: [/bin/true], colour: red}\n",
		"relative run":        "languages:\n  - {id: x, name: X, version_command: [/bin/true], source_file: a, run: [python3]}\n",
		"path in file name":   "languages:\n  - {id: x, name: X, version_command: [/bin/true], source_file: ../a, run: [/bin/true]}\n",
		"bad id":              "languages:\n  - {id: X Y, name: X, version_command: [/bin/true], source_file: a, run: [/bin/true]}\n",
		"duplicate":           "languages:\n  - {id: x, name: X, version_command: [/bin/true], source_file: a, run: [/bin/true]}\n  - {id: x, name: X, version_command: [/bin/true], source_file: a, run: [/bin/true]}\n",
		"bad memory":          "languages:\n  - {id: x, name: X, version_command: [/bin/true], source_file: a, run: [/bin/true], limits: {run: {memory: lots}}}\n",
		"empty":               "languages: []\n",
		"unknown prestart":    "languages:\n  - {id: x, name: X, version_command: [/bin/true], source_file: a, run: [/bin/node, a], prestart: node}\n",
		"prestart, no script": "languages:\n  - {id: x, name: X, version_command: [/bin/true], source_file: a, run: [/usr/bin/python3], prestart: python}\n",
		"prestart, a flag":    "languages:\n  - {id: x, name: X, version_command: [/bin/true], source_file: a, run: [/usr/bin/python3, -u, a], prestart: python}\n",
		"prestart, compile":   "languages:\n  - {id: x, name: X, version_command: [/bin/true], source_file: a, compile: [/bin/true], run: [/usr/bin/python3, a], prestart: python}\n",
		"a list, not a map":   "- id: x\n",
	}
	for name, body := range cases {
		path := filepath.Join(t.TempDir(), "l.yaml")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "struct") || strings.Contains(err.Error(), "language.") {
			t.Errorf("%s: the error names Go types: %v", name, err)
		}
	}
	if _, err := Load("/nonexistent/languages.yaml"); err == nil {
		t.Error("missing file accepted")
	}
}

func TestProbeKeepsOnlyWorkingToolchains(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.yaml")
	body := "languages:\n" +
		"  - {id: sh, name: Shell, version_command: [/bin/sh, -c, 'echo sh 1.0'], source_file: main.sh, run: [/bin/sh, main.sh]}\n" +
		"  - {id: ghost, name: Ghost, version_command: [/nonexistent/ghost, --version], source_file: g, run: [/nonexistent/ghost]}\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Available()) != 0 {
		t.Fatal("available before probing")
	}
	r.Probe(context.Background())
	if ids := strings.Join(r.IDs(), ","); ids != "sh" {
		t.Fatalf("available: %s", ids)
	}
	if l, ok := r.Lookup("sh"); !ok || l.Version != "sh 1.0" {
		t.Fatalf("lookup: %+v", l)
	}
	if _, ok := r.Lookup("ghost"); ok {
		t.Fatal("ghost available")
	}
}

func TestRequestAppliesLimitsAndOverrides(t *testing.T) {
	r, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	d := StepLimits{
		Run:         config.Limits{WallTime: 5 * time.Second, CPUTime: 5 * time.Second, MemoryBytes: 256 << 20, Pids: 64},
		Compile:     config.Limits{WallTime: 15 * time.Second, CPUTime: 15 * time.Second, MemoryBytes: 1 << 30, Pids: 256},
		OutputBytes: 64 << 10, OutputKill: 1 << 20, Scratch: 32 << 20,
	}
	for _, l := range r.all {
		req := l.Request("src", "in", d)
		if len(req.Files) != 1 || req.Files[0].Name != l.SourceFile || string(req.Files[0].Content) != "src" || string(req.Run.Stdin) != "in" {
			t.Errorf("%s: files/stdin %+v", l.ID, req)
		}
		if (req.Compile != nil) != (len(l.Compile) > 0) {
			t.Errorf("%s: compile step %v", l.ID, req.Compile)
		}
		for _, e := range req.Env {
			if strings.HasPrefix(e, "RUNBOX_") || strings.HasPrefix(e, "PGPASSWORD") {
				t.Errorf("%s: worker variable in env: %s", l.ID, e)
			}
		}
		if req.Run.Limits.OutputBytes != 64<<10 || req.Run.Limits.OutputKill != 1<<20 || req.Run.Limits.ScratchBytes != 32<<20 {
			t.Errorf("%s: output/scratch limits %+v", l.ID, req.Run.Limits)
		}
	}
	java, _ := findAll(r, "java")
	if got := java.Request("", "", d).Run.Limits; got.MemoryBytes != 512<<20 || got.Pids != 128 || got.WallTime != 5*time.Second {
		t.Errorf("java run override not applied: %+v", got)
	}
	py, _ := findAll(r, "python")
	if got := py.Request("", "", d).Run.Limits; got.MemoryBytes != 256<<20 || got.Pids != 64 {
		t.Errorf("python defaults changed: %+v", got)
	}
}

func findAll(r *Registry, id string) (*Language, bool) {
	for _, l := range r.all {
		if l.ID == id {
			return l, true
		}
	}
	return nil, false
}
