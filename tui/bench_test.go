package tui

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"flightdeck/engine"
	"flightdeck/engine/sampler"
	"flightdeck/themes"
)

// BenchmarkCockpitView renders the cockpit of a 1,000-host run at 200×60.
// "changed" re-renders every pane (as after a new snapshot); "unchanged"
// is the cached frame (View runs after every message).
func BenchmarkCockpitView(b *testing.B) {
	for _, theme := range []string{"default", "mono"} {
		th, _ := themes.ByName(theme)
		m, _ := loaded(rollingRun(1000), 200, 60, func(o *Options) { o.Theme = th })
		b.Run(theme+"/changed", func(b *testing.B) {
			b.ReportAllocs()
			c0 := cpuTime()
			for b.Loop() {
				m.stateVer++
				_ = m.View()
			}
			b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
		})
		b.Run(theme+"/unchanged", func(b *testing.B) {
			b.ReportAllocs()
			c0 := cpuTime()
			for b.Loop() {
				_ = m.View()
			}
			b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
		})
		m.Close()
	}
	// The live SLO pane and per-host figures: ten minutes of samples of two
	// releases and a rate for each of the 1,000 hosts.
	th, _ := themes.ByName("default")
	snap := liveSnapshot(1, 600, t0.Add(time.Hour))
	for i := range 1000 {
		snap.Hosts[fmt.Sprintf("web-%02d", i+1)] = sampler.Rate{RPS: float64(i % 50), ErrorRate: 0.001}
	}
	rec := &liveRecorder{recorder: newRecorder(), snap: snap}
	evs := rollingRun(1000)
	rec.hub.Publish(evs...)
	rec.hub.SetSnapshot(engine.Fold(evs))
	m := New(rec, Options{Actor: alice, Theme: th, Now: func() time.Time { return evs[len(evs)-1].Time }, Location: time.UTC, TickEvery: -1})
	m.width, m.height = 200, 60
	got, lost := m.sub.Drain()
	m.apply(feedMsg{snap: rec.hub.Snapshot(), evs: got, lost: lost, at: time.Now()})
	b.Run("default-live/changed", func(b *testing.B) {
		b.ReportAllocs()
		c0 := cpuTime()
		for b.Loop() {
			m.stateVer++
			_ = m.View()
		}
		b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
	})
	m.Close()
}

// latencyModel wraps the cockpit and timestamps the first frame drawn
// after each key press.
type latencyModel struct {
	*Model
	mu      sync.Mutex
	pending bool
	drawn   chan struct{}
}

func (l *latencyModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	_, cmd := l.Model.Update(msg)
	if _, ok := msg.(tea.KeyPressMsg); ok {
		l.mu.Lock()
		l.pending = true
		l.mu.Unlock()
	}
	return l, cmd
}

func (l *latencyModel) View() tea.View {
	v := l.Model.View()
	l.mu.Lock()
	if l.pending {
		l.pending = false
		l.drawn <- struct{}{}
	}
	l.mu.Unlock()
	return v
}

// BenchmarkKeypressLatency measures key press → updated frame on a
// 1,000-host run while 10,000 events per second flow through the hub and
// a new snapshot is published every 50ms (as the engine does). It reports
// the p50 and p99 latency.
func BenchmarkKeypressLatency(b *testing.B) {
	evs := rollingRun(1000)
	rec := newRecorder()
	rec.hub.Publish(evs...)
	base := engine.Fold(evs)
	rec.hub.SetSnapshot(base)
	m := &latencyModel{Model: New(rec, Options{Actor: alice, Theme: themes.Default(), TickEvery: time.Second}), drawn: make(chan struct{}, 1)}
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := tea.NewProgram(m, tea.WithInput(nil), tea.WithOutput(io.Discard), tea.WithWindowSize(200, 60),
		tea.WithoutSignals(), tea.WithContext(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = p.Run()
	}()

	const eventsPerSecond = 10000
	// The load: 10,000 events/s in batches every 10ms, and a fresh
	// snapshot with changed progress every 50ms. It stops with the benchmark.
	var published atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		seq := base.Seq
		st := base.Clone()
		t0 := time.Now()
		for n := 0; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			// Catch up when a tick came late, so the rate holds under load.
			due := int64(time.Since(t0).Seconds()*eventsPerSecond) - published.Load()
			batch := make([]engine.Event, max(due, 0))
			for i := range batch {
				seq++
				h := st.Hosts[(int(seq)+i)%len(st.Hosts)]
				batch[i] = engine.Event{Seq: seq, Run: st.Run, Time: time.Now(), Type: engine.EvHostPhase, Host: h.Name,
					Phase: engine.PhasePreparing, Progress: &engine.Progress{FilesDone: n % 20, FilesTotal: 20, BytesDone: int64(n), BytesTotal: 100}}
			}
			rec.hub.Publish(batch...)
			published.Add(int64(len(batch)))
			if n%5 == 0 {
				next := st.Clone()
				for i := range 50 {
					h := next.Hosts[(n+i)%len(next.Hosts)]
					h.Phase = engine.PhasePreparing
					h.Progress = engine.Progress{FilesDone: n % 20, FilesTotal: 20, BytesDone: int64(n % 100), BytesTotal: 100}
				}
				next.Seq = seq
				rec.hub.SetSnapshot(next)
				st = next
			}
		}
	}()

	// Let the program start and the load settle.
	p.Send(tea.WindowSizeMsg{Width: 200, Height: 60})
	var lat []time.Duration
	keys := []tea.KeyPressMsg{keyMsg("j"), keyMsg("k")}
	start := time.Now()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		p.Send(keys[i%2])
		<-m.drawn
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	elapsed := time.Since(start)
	cancel()
	p.Kill()
	<-done
	wg.Wait()
	slices.Sort(lat)
	pct := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(published.Load())/elapsed.Seconds(), "events/s")
	if testing.Verbose() {
		fmt.Printf("keypress→frame over %d presses: p50 %.2fms p99 %.2fms max %.2fms\n", len(lat), pct(0.5), pct(0.99), pct(1))
	}
}

// cpuTime is the CPU time this process used so far: on a shared machine
// it measures the work, where wall time also measures the neighbours.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
