package worker

import (
	"testing"
	"time"
)

func TestPurgeInterval(t *testing.T) {
	for _, c := range []struct{ retention, want time.Duration }{
		{7 * 24 * time.Hour, time.Hour},
		{2 * time.Hour, time.Hour},
		{time.Hour, 30 * time.Minute},
		{10 * time.Second, 5 * time.Second},
		{time.Millisecond, time.Second},
	} {
		if got := PurgeInterval(c.retention); got != c.want {
			t.Errorf("retention %v: every %v, want %v", c.retention, got, c.want)
		}
	}
}
