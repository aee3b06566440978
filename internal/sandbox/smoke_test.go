package sandbox

import (
	"context"
	"testing"
)

func TestSmoke(t *testing.T) {
	s := newTestSandbox(t)
	rep, err := s.Execute(context.Background(), Request{
		Run: Step{Argv: []string{"/bin/sh", "-c", "echo hi; id; ls -la / /dev; cat /proc/self/status | grep -E 'Cap|NoNew|Seccomp'; ls /proc; ls -l /proc/self/fd; env"}, Limits: defLimits()},
		Env: []string{"PATH=/usr/bin:/bin", "HOME=/box"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v\nstdout:\n%s\nstderr:\n%s", rep.Run, rep.Run.Stdout, rep.Run.Stderr)
}
