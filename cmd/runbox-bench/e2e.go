package main

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// measureE2E is phase 3: one session, then for each sample POST run and
// long-poll until terminal, as a client sees it. Besides the client's
// latency it splits each run with the server's own timestamps (millisecond
// resolution): waiting in the queue, executing, and the rest (HTTP, wake-up
// of the long-poll, recording the result). With alongside, each sample is
// preceded by a timed bare run of the same program (see interleaved). With
// edit, each sample first saves edit(n) (untimed), a new source each time:
// a worker keeps the build of unchanged source, and this measures compiles.
func measureE2E(ctx context.Context, c *client, o *Options, lang, src string, bare Summary, bareWhat, name string, target string,
	alongside func() error, edit func(n int) string) ([]Row, error) {
	sid, err := c.createSession(ctx, lang, src)
	if err != nil {
		return nil, err
	}
	var queued, executing, rest []float64
	warm := false // sequential and interleaved warm up with one untimed call
	edits := 0
	sample := func() error {
		if edit != nil {
			edits++
			if st, code, err := c.save(ctx, sid, edit(edits)); err != nil || st != 200 {
				return fmt.Errorf("PATCH: %d %s %v", st, code, err)
			}
		}
		t0 := time.Now()
		e, err := c.runAndWait(ctx, sid)
		if err != nil {
			return err
		}
		d := msSince(t0)
		if !warm {
			warm = true
			return nil
		}
		if e.QueuedAt != nil && e.StartedAt != nil && e.FinishedAt != nil {
			q := float64(e.StartedAt.Sub(*e.QueuedAt)) / float64(time.Millisecond)
			x := float64(e.FinishedAt.Sub(*e.StartedAt)) / float64(time.Millisecond)
			queued, executing, rest = append(queued, q), append(executing, x), append(rest, d-q-x)
		}
		return nil
	}
	var (
		st, paired Summary
		note       string
	)
	if alongside != nil {
		st, paired, err = interleaved(ctx, o.N, alongside, sample)
		note = interleavedNote(st, paired)
	} else {
		st, err = sequential(ctx, o.N, sample)
	}
	if err != nil {
		return nil, err
	}
	sq, sx, sr := SummarizeMS(queued), SummarizeMS(executing), SummarizeMS(rest)
	return []Row{
		over(Row{Section: "e2e", Name: name + ", sequential", Latency: &st, Target: target, Note: note}, bare, bareWhat),
		{Section: "e2e", Name: "  of which queued (started−queued)", Latency: &sq},
		{Section: "e2e", Name: "  of which executing (finished−started)", Latency: &sx},
		{Section: "e2e", Name: "  of which the rest (HTTP, wake-up, record)", Latency: &sr},
	}, nil
}

func msSince(t time.Time) float64 { return float64(time.Since(t)) / float64(time.Millisecond) }

// measureThroughput is phase 4: clients concurrent clients, each with its
// own session, run and wait in a loop for o.Duration; runs completed within
// the window count. Each client finishes its last run before returning, so
// the queue is empty when the next phase starts.
func measureThroughput(ctx context.Context, c *client, o *Options, clients int, bare Baseline) (Row, error) {
	sids := make([]string, clients)
	for i := range sids {
		var err error
		if sids[i], err = c.createSession(ctx, "python", pythonHello); err != nil {
			return Row{}, err
		}
	}
	var (
		mu    sync.Mutex
		lat   []float64
		first error
		wg    sync.WaitGroup
	)
	runs := 0 // every run completed, within the window or after it
	meter := startCPU()
	start := time.Now()
	deadline := start.Add(o.Duration)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				t0 := time.Now()
				_, err := c.runAndWait(ctx, sids[i])
				mu.Lock()
				if err != nil {
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
				runs++
				if time.Now().Before(deadline) {
					lat = append(lat, msSince(t0))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	cpu := meter.stop(runs)
	if first != nil {
		return Row{}, first
	}
	s := SummarizeMS(lat)
	r := Row{Section: "throughput", Name: fmt.Sprintf("python hello, %d clients", clients), Latency: &s,
		Rate: float64(len(lat)) / o.Duration.Seconds(), Target: "≥ 0.85× bare"}
	return withCPU(ratio(r, bare.PythonRate, "bare parallel python"), cpu, bare.PythonCPU), nil
}
