package store

import (
	"testing"
	"time"
)

func TestCheckpointPeriod(t *testing.T) {
	for _, c := range []struct {
		name              string
		ok                bool
		frames, lastFrame int
		want              time.Duration
	}{
		{"failed", false, 5000, 0, checkpointIdle},
		{"first, empty WAL", true, 0, -1, checkpointGrowing},
		{"no growth", true, 120, 120, checkpointIdle},
		{"slow growth", true, 300, 120, checkpointGrowing},
		{"restarted", true, 40, 900, checkpointGrowing},
		{"flood", true, checkpointBacklog, 10, checkpointBusy},
		{"flood goes on", true, 8000, 6000, checkpointBusy},
		{"flood over, WAL left long", true, 8000, 8000, checkpointIdle},
	} {
		if got := checkpointPeriod(c.ok, c.frames, c.lastFrame); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
