package traffictest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"flightdeck/engine"
	"flightdeck/targets/router"
)

// TestAutoRollbackTriggerBacksOffWhenMeasuringFails gives the engine a
// metrics source whose server is gone (connection refused at once) and an
// auto-rollback trigger with a 2 s window. The trigger should try again
// about once per window; against the engine of 2b512e7 it retries in a
// tight loop (watchAutoRollback `continue`s straight into the next
// Measure after an error), hammering the metrics server and burning a
// core for as long as the run lasts. The engine now waits a window after a failed measurement.
func TestAutoRollbackTriggerBacksOffWhenMeasuringFails(t *testing.T) {
	f := newFleet(t, fleetOpts{hosts: 2, env: `    strategy: {kind: canary, steps: [50, 100]}
    gate: {error_rate: 0.1%, p99: 10s, interval: 300ms, count: 1, min_requests: 1}
    auto_rollback: {error_rate: 1%, for: 2s}
`})
	// A router admin address where nothing listens any more.
	ln := listen(t)
	deadURL := "http://" + ln.Addr().String()
	ln.Close()
	dead, err := router.NewClient(deadURL, "token")
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	f.eng.Metrics = router.NewMetrics(func(ctx context.Context) (map[string]engine.ReleaseStats, error) {
		calls.Add(1)
		return dead.Stats(ctx)
	})
	f.live("v1", knobs{})
	done := f.deploy(f.build("v2", knobs{}))
	// The gate cannot measure either: its result is inconclusive and the run pauses.
	f.rec.waitFor(t, "an inconclusive pause", func(e engine.Event) bool {
		return e.Type == engine.EvPaused && e.Actor == engine.AutoActor.Name
	})
	before := calls.Load()
	start := time.Now()
	time.Sleep(time.Second) // the observation period, not synchronisation
	n := calls.Load() - before
	elapsed := time.Since(start)
	f.send(engine.Command{Kind: engine.CmdRollback, Actor: operator})
	f.wait(done)
	// One attempt per 2 s window, with generous slack for retries.
	if limit := int64(elapsed/time.Second+1) * 5; n > limit {
		t.Errorf("the metrics source was called %d times in %s while failing (refused at once), want at most %d: the trigger does not back off",
			n, elapsed.Round(time.Millisecond), limit)
	}
}
