package etcdstate

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"flightdeck/engine"
	"flightdeck/targets/etcdstate/etcdtest"
)

// BenchmarkJournalCommit measures journal commits (one Append: one fsync
// for the file journal, one transaction for etcd) with one event per
// commit (group commit off) and 64 (on): ns/op is per commit, and the
// p50/p99 commit latencies and events/s are reported. The etcd journal is
// fenced by a held lock, as in a run, on a 3-member cluster on loopback
// whose members fsync to the same disk as the file journal.
func BenchmarkJournalCommit(b *testing.B) {
	c := etcdtest.Start(b, 3)
	for _, backend := range []string{"file", "etcd"} {
		for _, batch := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/batch=%d", backend, batch), func(b *testing.B) {
				appendFn := benchJournal(b, backend, c)
				evs := make([]engine.Event, batch)
				var lat []time.Duration
				seq := uint64(0)
				b.ResetTimer()
				for b.Loop() {
					for i := range evs {
						seq++
						evs[i] = engine.Event{Seq: seq, Run: "bench", Type: engine.EvHostPhase, Host: "web-1", Phase: engine.PhasePreparing,
							Progress: &engine.Progress{FilesDone: i, FilesTotal: 1000}, Time: time.Now()}
					}
					t0 := time.Now()
					if err := appendFn(evs); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(t0))
				}
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			})
		}
	}
}

func benchJournal(b *testing.B, backend string, c *etcdtest.Cluster) func([]engine.Event) error {
	if backend == "file" {
		j, err := engine.OpenJournal(b.TempDir(), "bench")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { j.Close() })
		return func(evs []engine.Event) error { return j.Append(evs...) }
	}
	ctx := context.Background()
	s, err := Open(ctx, Config{Endpoints: c.Endpoints(), Prefix: "/bench/" + engine.RandomSuffix(4), Lease: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	l, err := s.AcquireLock(ctx, "production", engine.LockInfo{Owner: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Release(ctx) })
	j, err := s.OpenJournal(ctx, "bench", l)
	if err != nil {
		b.Fatal(err)
	}
	return func(evs []engine.Event) error { return j.Append(ctx, evs...) }
}
