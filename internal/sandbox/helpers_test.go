package sandbox

import (
	"log/slog"
	"os"
	"testing"
	"time"
)

func defLimits() Limits {
	return Limits{WallTime: 5 * time.Second, CPUTime: 5 * time.Second, MemoryBytes: 256 << 20,
		Pids: 64, OutputBytes: 64 << 10, OutputKill: 1 << 20, ScratchBytes: 32 << 20, OpenFiles: 256, FileBytes: 16 << 20}
}

func newTestSandbox(t *testing.T) *Sandbox {
	t.Helper()
	var log *slog.Logger
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := New(Config{Dir: t.TempDir(), Logger: log})
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return s
}
