package main

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/runbox/runbox/internal/testenv"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runbox/runbox/internal/sandbox"
)

func TestMain(m *testing.M) {
	sandbox.Init()
	os.Exit(m.Run())
}

// TestQuickSQLite runs the whole benchmark with -quick against an embedded
// SQLite server. It checks that every phase reports, never how fast.
func TestQuickSQLite(t *testing.T) {
	testenv.RequireRoot(t)
	if testing.Short() {
		t.Skip("-short")
	}
	out := filepath.Join(t.TempDir(), "bench.json")
	var stderr bytes.Buffer
	o, err := parseFlags([]string{"-quick", "-drivers", "sqlite", "-clients", "2,8", "-json", out}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var stdout bytes.Buffer
	if err := run(ctx, o, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 1 || rep.Results[0].Driver != "sqlite" || rep.Results[0].Error != "" {
		t.Fatalf("results %+v", rep.Results)
	}
	sections := map[string]int{}
	for _, r := range rep.Results[0].Rows {
		sections[r.Section]++
		// Every python rate is charged its CPU a run, and runbox's rates
		// are compared with bare's in CPU too.
		if r.Rate > 0 && strings.Contains(r.Name, "python") {
			if r.CPU == nil || r.CPU.PerRunMS <= 0 || r.CPU.SelfPerRunMS <= 0 {
				t.Errorf("row %q: CPU a run %+v", r.Name, r.CPU)
			}
			if r.Section != "bare" && r.CPURatio == nil {
				t.Errorf("row %q: no CPU ratio to bare", r.Name)
			}
		}
		if r.Latency != nil && r.Latency.N == 0 && r.Section != "saturation" {
			t.Errorf("row %q has no samples", r.Name)
		}
	}
	for _, s := range []string{"bare", "sandbox", "e2e", "throughput", "saturation"} {
		if sections[s] == 0 {
			t.Errorf("no %s rows in %v", s, sections)
		}
	}
	if rep.Machine.CPUs == 0 || rep.Machine.Kernel == "" || rep.Machine.CgroupVersion == 0 {
		t.Errorf("machine %+v", rep.Machine)
	}
	if !strings.Contains(stdout.String(), "== driver: sqlite") {
		t.Errorf("no table on stdout:\n%s", stdout.String())
	}
}

func TestParsePhases(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string // nil: an error
	}{
		{nil, allPhases},
		{[]string{"-phases", "saturation"}, []string{"saturation"}},
		{[]string{"-phases", "e2e, throughput"}, []string{"e2e", "throughput"}},
		{[]string{"-phases", "bare"}, nil},
		{[]string{"-phases", "saturation,nope"}, nil},
	} {
		var stderr bytes.Buffer
		o, err := parseFlags(tc.args, &stderr)
		if tc.want == nil {
			if err == nil {
				t.Errorf("%v: accepted", tc.args)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tc.args, err)
			continue
		}
		if len(o.Phases) != len(tc.want) {
			t.Errorf("%v: phases %v, want %v", tc.args, o.Phases, tc.want)
		}
		for _, p := range tc.want {
			if !o.Phases[p] {
				t.Errorf("%v: phases %v, want %v", tc.args, o.Phases, tc.want)
			}
		}
	}
}
