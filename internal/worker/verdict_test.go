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
			r := Verdict(c.report, "")
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

// TestVerdictMemoryError: a runtime that reports exhausting its own memory
// bound (the JVM's heap) exceeded the memory limit; the same text on a
// run that exits 0, or without the language's marker, does not.
func TestVerdictMemoryError(t *testing.T) {
	const marker = "java.lang.OutOfMemoryError"
	stderr := []byte("Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space\n\tat Main.main(Main.java:5)\n")
	for _, c := range []struct {
		name    string
		outcome sandbox.Outcome
		marker  string
		code    execution.ErrorCode
	}{
		{"exit with the marker", sandbox.OutcomeNonZeroExit, marker, execution.MemoryLimitExceeded},
		{"no marker for the language", sandbox.OutcomeNonZeroExit, "", execution.RuntimeError},
		{"another language's marker", sandbox.OutcomeNonZeroExit, "MemoryError: out of memory", execution.RuntimeError},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := Verdict(&sandbox.Report{Run: &sandbox.StepReport{Outcome: c.outcome, ExitCode: 1, Stderr: stderr}}, c.marker)
			if r.Status != execution.Failed || r.Error == nil || r.Error.Code != c.code || *r.ExitCode != 1 || r.Stderr != string(stderr) {
				t.Fatalf("%+v, want %s with exit code and stderr", r, c.code)
			}
		})
	}
	if r := Verdict(&sandbox.Report{Run: &sandbox.StepReport{Outcome: sandbox.OutcomeOK, Stderr: stderr}}, marker); r.Status != execution.Completed {
		t.Fatalf("a run that caught the error and exited 0: %+v", r)
	}
}

func TestInvalidUTF8OutputIsKeptAsText(t *testing.T) {
	r := Verdict(&sandbox.Report{Run: &sandbox.StepReport{Outcome: sandbox.OutcomeOK, Stdout: []byte{'a', 0xff, 'b'}}}, "")
	if r.Stdout != "a\uFFFDb" {
		t.Fatalf("%q", r.Stdout)
	}
}
