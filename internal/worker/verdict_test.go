package worker

import (
	"testing"
	"time"

	"github.com/runbox/runbox/internal/execution"
	"github.com/runbox/runbox/internal/sandbox"
)

func TestVerdict(t *testing.T) {
	run := func(o sandbox.Outcome) *sandbox.StepReport {
		return &sandbox.StepReport{Outcome: o, ExitCode: 3, Signal: "SIGSEGV", Stdout: []byte("out"), Stderr: []byte("err"),
			WallTime: 1500 * time.Millisecond, CPUTime: time.Second, MemoryBytes: 2 << 20}
	}
	compileFailed := &sandbox.StepReport{Outcome: sandbox.OutcomeNonZeroExit, Stdout: []byte("warn\n"), Stderr: []byte("main.c:1: error\n")}
	cases := []struct {
		name   string
		report *sandbox.Report
		status execution.Status
		code   execution.ErrorCode
	}{
		{"ok", &sandbox.Report{Run: run(sandbox.OutcomeOK)}, execution.Completed, ""},
		{"exit", &sandbox.Report{Run: run(sandbox.OutcomeNonZeroExit)}, execution.Failed, execution.RuntimeError},
		{"signal", &sandbox.Report{Run: run(sandbox.OutcomeSignaled)}, execution.Failed, execution.RuntimeError},
		{"memory", &sandbox.Report{Run: run(sandbox.OutcomeMemoryLimit)}, execution.Failed, execution.MemoryLimitExceeded},
		{"output", &sandbox.Report{Run: run(sandbox.OutcomeOutputLimit)}, execution.Failed, execution.OutputLimitExceeded},
		{"time", &sandbox.Report{Run: run(sandbox.OutcomeTimeLimit)}, execution.Timeout, execution.TimeLimitExceeded},
		{"compile error", &sandbox.Report{Compile: compileFailed}, execution.Failed, execution.CompilationError},
		{"compile timeout", &sandbox.Report{Compile: &sandbox.StepReport{Outcome: sandbox.OutcomeTimeLimit}}, execution.Failed, execution.CompilationError},
		{"compiled and ran", &sandbox.Report{Compile: &sandbox.StepReport{Outcome: sandbox.OutcomeOK}, Run: run(sandbox.OutcomeOK)}, execution.Completed, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Verdict(c.report)
			if r.Status != c.status {
				t.Fatalf("status %s, want %s", r.Status, c.status)
			}
			if (r.Error == nil) != (c.code == "") || r.Error != nil && r.Error.Code != c.code {
				t.Fatalf("error %+v, want %s", r.Error, c.code)
			}
			if c.report.Run == nil {
				if r.CompileOutput == nil || *r.CompileOutput != "warn\nmain.c:1: error\n" && c.name == "compile error" {
					t.Fatalf("compile output %v", r.CompileOutput)
				}
				return
			}
			// The program ran: its output and measurements are reported, whatever the verdict.
			if r.Stdout != "out" || r.Stderr != "err" || *r.ExecutionTimeMS != 1500 || *r.CPUTimeMS != 1000 || *r.MemoryKB != 2048 {
				t.Fatalf("output/measurements lost: %+v", r)
			}
			switch c.report.Run.Outcome {
			case sandbox.OutcomeOK:
				if *r.ExitCode != 0 {
					t.Fatal("exit code")
				}
			case sandbox.OutcomeNonZeroExit:
				if *r.ExitCode != 3 || r.Signal != nil {
					t.Fatal("exit code")
				}
			case sandbox.OutcomeSignaled:
				if *r.Signal != "SIGSEGV" || r.ExitCode != nil {
					t.Fatal("signal")
				}
			}
		})
	}
}

func TestInvalidUTF8OutputIsKeptAsText(t *testing.T) {
	r := Verdict(&sandbox.Report{Run: &sandbox.StepReport{Outcome: sandbox.OutcomeOK, Stdout: []byte{'a', 0xff, 'b'}}})
	if r.Stdout != "a\uFFFDb" {
		t.Fatalf("%q", r.Stdout)
	}
}
