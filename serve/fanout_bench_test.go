package serve

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"flightdeck/engine"
)

// fanoutSessions is how many cockpits watch the run.
const fanoutSessions = 20

// BenchmarkEventFanout20Sessions measures how long an engine event takes
// to reach the screens of 20 SSH cockpits: a demo canary run is in
// progress, 20 operators (distinct keys) watch it over real SSH sessions
// with a PTY, and each iteration pauses the run through the engine. Every
// session's output stream is read by its own goroutine into a terminal
// emulator, which stamps the moment its screen first shows "PAUSED by
// <actor>". The metrics are that moment minus the time of the engine's
// Paused event (stamped by the run loop before the journal's fsync), over
// all sessions and iterations; the goal is max ≤ 200 ms. Each iteration
// pauses as a new actor and resumes afterwards, so a screen cannot match
// an earlier iteration's pause.
func BenchmarkEventFanout20Sessions(b *testing.B) {
	fb := startFleet(b, false)
	users := make([]*user, fanoutSessions)
	for i := range users {
		users[i] = newUser(b, fmt.Sprintf("op%02d", i+1), engine.RoleOperator)
	}
	ts := startServer(b, Options{Keys: keysFor(b, users...), Backend: fb, App: "demo-shop", Env: "demo"})
	terms := make([]*term, len(users))
	for i, u := range users {
		terms[i] = ts.open(b, u, 160, 40)
	}
	// All have joined (the header is too narrow to list all 20 names).
	deadline := time.Now().Add(30 * time.Second)
	for len(fb.Presence()) != fanoutSessions {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d sessions present", len(fb.Presence()), fanoutSessions)
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitAll(b, terms, 30*time.Second, "op01(operator)")

	go func() {
		_, _ = fb.fleet.Deploy(fb.ctx, engine.Actor{Name: "release-bot", Role: engine.RoleOwner, Via: "bench"}, false)
	}()
	hub := fb.fleet.Hub
	waitState(b, hub, 60*time.Second, "the run to reach step 1", func(s *engine.State) bool {
		return s.Status == engine.StatusRunning && s.Step >= 1
	})
	waitAll(b, terms, 30*time.Second, "RUNNING", "v1 → v2")

	var lat, publish []time.Duration
	b.ResetTimer()
	for i := range b.N {
		actor := engine.Actor{Name: fmt.Sprintf("pilot%04d", i), Role: engine.RoleOperator, Via: "bench"}
		want := "PAUSED by " + actor.Name
		seen := make([]<-chan time.Time, len(terms))
		for j, tm := range terms {
			seen[j] = tm.expect(want)
		}
		paused := make(chan [2]time.Time, 1) // event time, time the hub delivered it
		stop := hub.Watch(fb.ctx, func(_ context.Context, e engine.Event) bool {
			if e.Type == engine.EvPaused && e.Actor == actor.Name {
				paused <- [2]time.Time{e.Time, time.Now()}
				return true
			}
			return false
		})
		for attempt := 0; ; attempt++ {
			waitState(b, hub, 30*time.Second, "the run to be running", func(s *engine.State) bool {
				return s.Status == engine.StatusRunning
			})
			err := fb.Engine.Send(fb.ctx, engine.Command{Kind: engine.CmdPause, Actor: actor})
			if err == nil {
				break
			}
			// The SLO gate may have paused the run in between: resume, retry.
			if attempt == 3 {
				b.Fatalf("pause as %s: %v", actor.Name, err)
			}
			b.Logf("pause as %s: %v; retrying", actor.Name, err)
			benchResume(b, fb)
		}
		var ev [2]time.Time
		select {
		case ev = <-paused:
		case <-time.After(10 * time.Second):
			b.Fatalf("no Paused event by %s", actor.Name)
		}
		stop()
		publish = append(publish, ev[1].Sub(ev[0]))
		for j, ch := range seen {
			select {
			case at := <-ch:
				lat = append(lat, at.Sub(ev[0]))
			case <-time.After(10 * time.Second):
				b.Fatalf("session %d never showed %q; screen:\n%s", j+1, want, terms[j].text())
			}
		}
		b.StopTimer()
		benchResume(b, fb)
		b.StartTimer()
	}
	b.StopTimer()
	if len(lat) == 0 {
		b.Fatal("no pause was measured")
	}
	slices.Sort(lat)
	slices.Sort(publish)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(quantile(lat, 0.50)), "p50-ms")
	b.ReportMetric(ms(quantile(lat, 0.99)), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	b.ReportMetric(ms(quantile(publish, 0.50)), "hub-p50-ms")
	b.ReportMetric(float64(len(lat)), "screens")
}

// quantile is the nearest-rank q-quantile of sorted ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(ds))+0.999999) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

// benchResume resumes the run if it is paused and waits until it runs.
func benchResume(b *testing.B, fb *fleetBackend) {
	b.Helper()
	if fb.fleet.Hub.Snapshot().Status == engine.StatusPaused {
		resumer := engine.Actor{Name: "resumer", Role: engine.RoleOperator, Via: "bench"}
		if err := fb.Engine.Send(fb.ctx, engine.Command{Kind: engine.CmdResume, Actor: resumer}); err != nil {
			b.Fatalf("resume: %v", err)
		}
	}
	st := waitState(b, fb.fleet.Hub, 30*time.Second, "the run to run again", func(s *engine.State) bool {
		return s.Status == engine.StatusRunning || !s.Active()
	})
	if !st.Active() {
		b.Fatalf("the demo run ended (%s) before the benchmark did; use a smaller -benchtime", st.Status)
	}
}

// waitAll waits until every session's screen has shown each of want.
func waitAll(b *testing.B, terms []*term, timeout time.Duration, want ...string) {
	b.Helper()
	deadline := time.After(timeout)
	for i, tm := range terms {
		for _, w := range want {
			select {
			case <-tm.expect(w):
			case <-deadline:
				b.Fatalf("session %d never showed %q within %s; screen:\n%s", i+1, w, timeout, tm.text())
			}
		}
	}
}
