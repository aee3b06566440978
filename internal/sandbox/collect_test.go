package sandbox

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"
)

// compileBy is a request whose compile step is a shell script (standing
// in for a compiler, or for one made to run arbitrary code) and whose run
// prints "ok".
func compileBy(script string) Request {
	l := compileLimits()
	l.FileBytes = 64 << 20 // room for the oversized (sparse) file below
	return Request{
		Files:        []File{{Name: "src.txt", Content: []byte("source\n"), Mode: 0o644}},
		Compile:      &Step{Argv: []string{"/bin/sh", "-c", script}, Limits: l},
		Run:          Step{Argv: []string{"/bin/echo", "ok"}, Limits: defLimits()},
		Env:          testEnv,
		KeepCompiled: true,
	}
}

// TestKeepCompiled: the box as the compile step left it comes back, and a
// request built from it runs the same program without compiling.
func TestKeepCompiled(t *testing.T) {
	s := newTestSandbox(t)
	ctx := context.Background()
	req := compileBy(`printf '#!/bin/sh\necho built from $(cat src.txt)\n' > prog && chmod 750 prog`)
	req.Run.Argv = []string{"/box/prog"}
	rep, err := s.Execute(ctx, req)
	if err != nil || rep.Run == nil || rep.Run.Outcome != OutcomeOK {
		t.Fatalf("Execute: %v %+v", err, rep)
	}
	slices.SortFunc(rep.Compiled, func(a, b File) int { return bytes.Compare([]byte(a.Name), []byte(b.Name)) })
	want := []File{
		{Name: "prog", Content: []byte("#!/bin/sh\necho built from $(cat src.txt)\n"), Mode: 0o750},
		{Name: "src.txt", Content: []byte("source\n"), Mode: 0o644},
	}
	if len(rep.Compiled) != len(want) {
		t.Fatalf("Compiled = %+v, want %+v", rep.Compiled, want)
	}
	for i, f := range rep.Compiled {
		if f.Name != want[i].Name || f.Mode != want[i].Mode || !bytes.Equal(f.Content, want[i].Content) {
			t.Errorf("Compiled[%d] = %q %o %q, want %q %o %q", i, f.Name, f.Mode, f.Content, want[i].Name, want[i].Mode, want[i].Content)
		}
	}

	again := req
	again.Compile, again.Files, again.KeepCompiled = nil, rep.Compiled, false
	rep2, err := s.Execute(ctx, again)
	if err != nil || rep2.Compile != nil || rep2.Run == nil || string(rep2.Run.Stdout) != "built from source\n" {
		t.Fatalf("run of the kept build: %v %+v", err, rep2)
	}

	req.KeepCompiled = false
	if rep, err := s.Execute(ctx, req); err != nil || rep.Compiled != nil {
		t.Errorf("without KeepCompiled: %v, Compiled = %+v", err, rep.Compiled)
	}
}

// TestKeepCompiledRefusesAnythingButFiles: what a compile step leaves is
// hostile input to the host. Links out of the jail, special files and
// oversized boxes are never read: the build is not kept, and the run
// itself is unaffected.
func TestKeepCompiledRefusesAnythingButFiles(t *testing.T) {
	s := newTestSandbox(t)
	for _, tc := range []struct{ name, script string }{
		{"symlink to a host file", `ln -s /etc/shadow shadow`},
		{"symlink through the init's root", `ln -s /proc/1/root/etc/hostname h`},
		{"symlink to a directory", `ln -s / root`},
		{"directory", `mkdir d && echo x > d/f`},
		{"fifo, which must not block the host", `mkfifo fifo`},
		{"unix socket", `python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind("sock")'`},
		{"too many files", `for i in $(seq 65); do echo $i > f$i; done`},
		{"too many bytes", `truncate -s 33M big`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			rep, err := s.Execute(ctx, compileBy(tc.script))
			if err != nil || rep.Compile.Outcome != OutcomeOK {
				t.Fatalf("Execute: %v %+v", err, rep)
			}
			if rep.Compiled != nil {
				t.Errorf("kept %d files", len(rep.Compiled))
			}
			if rep.Run == nil || rep.Run.Outcome != OutcomeOK || string(rep.Run.Stdout) != "ok\n" {
				t.Errorf("run: %+v", rep.Run)
			}
		})
	}
}
