package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"flightdeck/engine"
)

// BenchmarkJournalAppend measures journaled events per second with fsync on,
// one fsync per event and with group commit.
func BenchmarkJournalAppend(b *testing.B) {
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			j, err := engine.OpenJournal(b.TempDir(), "bench")
			if err != nil {
				b.Fatal(err)
			}
			defer j.Close()
			evs := make([]engine.Event, batch)
			for i := range evs {
				evs[i] = engine.Event{Seq: uint64(i), Run: "bench", Type: engine.EvHostPhase, Host: "web-1", Phase: engine.PhasePreparing,
					Progress: &engine.Progress{FilesDone: i, FilesTotal: 1000}, Time: time.Now()}
			}
			b.ResetTimer()
			for b.Loop() {
				if err := j.Append(evs...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkRunSlowSubscriber runs a whole rolling deploy of 8 local hosts
// with no subscriber and with one that never reads: the run time must not
// change, because publishing never waits for subscribers.
func BenchmarkRunSlowSubscriber(b *testing.B) {
	for _, mode := range []string{"none", "stalled", "slow"} {
		b.Run("subscriber="+mode, func(b *testing.B) {
			f := newFleet(b, 8, "")
			art := func(i int) *engine.Artifact {
				a, _, err := engine.Build(context.Background(), f.plan, fmt.Sprintf("r%d", i), nil)
				if err != nil {
					b.Fatal(err)
				}
				return a
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			switch mode {
			case "stalled":
				f.hub.Subscribe(64) // never drained
			case "slow":
				sub := f.hub.Subscribe(64)
				go func() {
					for {
						if _, _, err := sub.Next(ctx); err != nil {
							return
						}
						time.Sleep(20 * time.Millisecond) // a deliberately slow reader
					}
				}()
			}
			i := 0
			for b.Loop() {
				i++
				st, err := f.engine().Deploy(context.Background(), owner, art(i), "bench")
				if err != nil || st.Outcome != engine.OutcomeSucceeded {
					b.Fatalf("deploy: %v %+v", err, st)
				}
			}
		})
	}
}

// BenchmarkListRuns summarises a state directory holding 300 finished
// runs of 120 events each (a year of deploys): every deploy lists the
// runs several times (the last good release, the 3-2-1 check, the
// checklist's history).
func BenchmarkListRuns(b *testing.B) {
	dir := b.TempDir()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for r := range 300 {
		run := fmt.Sprintf("production-%s-%06x", t0.Add(time.Duration(r)*time.Hour).Format("20060102T150405"), r)
		j, err := engine.OpenJournal(dir, run)
		if err != nil {
			b.Fatal(err)
		}
		evs := []engine.Event{{Seq: 1, Run: run, Type: engine.EvRunStarted, Time: t0, Start: &engine.RunInfo{Kind: engine.KindDeploy, Env: "production", Release: fmt.Sprintf("r%d", r)}}}
		for i := 2; i < 120; i++ {
			evs = append(evs, engine.Event{Seq: uint64(i), Run: run, Type: engine.EvHostPhase, Host: fmt.Sprintf("web-%d", i%20), Phase: engine.PhaseLive, Release: fmt.Sprintf("r%d", r), Time: t0})
		}
		evs = append(evs, engine.Event{Seq: 120, Run: run, Type: engine.EvRunFinished, Outcome: engine.OutcomeSucceeded, Time: t0.Add(time.Second)})
		if err := j.Append(evs...); err != nil {
			b.Fatal(err)
		}
		j.Close()
	}
	if _, err := engine.ListRuns(dir); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		runs, err := engine.ListRuns(dir)
		if err != nil || len(runs) != 300 || runs[299].Outcome != engine.OutcomeSucceeded {
			b.Fatalf("ListRuns: %d runs, %v", len(runs), err)
		}
	}
}
