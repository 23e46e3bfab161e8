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
