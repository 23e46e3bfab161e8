package traffictest

import (
	"strings"
	"testing"
	"time"

	"flightdeck/engine"
)

// TestTooLittleTrafficPausesInsteadOfPromoting runs a healthy canary with
// no traffic at all: every measurement is inconclusive (fewer than
// min_requests), so the run pauses (by auto) at its first step and never
// promotes; resuming measures again and pauses again.
func TestTooLittleTrafficPausesInsteadOfPromoting(t *testing.T) {
	f := newFleet(t, fleetOpts{hosts: 2, env: `    strategy: {kind: canary, steps: [50, 100]}
    gate: {error_rate: 0.1%, p99: 10s, interval: 300ms, count: 2, min_requests: 10}
`})
	f.live("v1", knobs{})
	// A trickle: 4 requests/s is about 1 request per measurement for v2.
	p := f.load(4, 60*time.Second, nil)
	done := f.deploy(f.build("v2", knobs{}))

	isAutoPause := func(e engine.Event) bool { return e.Type == engine.EvPaused && e.Actor == engine.AutoActor.Name }
	paused := f.rec.waitFor(t, "a pause by auto", isAutoPause)
	if !strings.Contains(paused.Message, "inconclusive") {
		t.Errorf("pause message %q does not say the gate was inconclusive", paused.Message)
	}
	if err := pollUntil(10*time.Second, func() bool { return f.hub.Snapshot().Status == engine.StatusPaused }); err != nil {
		t.Fatalf("status %s, want paused", f.hub.Snapshot().Status)
	}
	st := f.hub.Snapshot()
	if st.PausedBy != engine.AutoActor.Name || st.Step != 1 || st.Weight != 50 {
		t.Errorf("paused by %q at step %d weight %g, want auto at step 1 weight 50", st.PausedBy, st.Step, st.Weight)
	}
	gates := ofType(f.rec.events(), "", engine.EvGateResult)
	if len(gates) != 1 || gates[0].Gate.Verdict != engine.VerdictInconclusive {
		t.Fatalf("gate results %+v, want one inconclusive", gates)
	}
	t.Logf("inconclusive: %s", gates[0].Gate.Reason)

	// Resuming measures again; a thin window pauses again, never promotes.
	f.send(engine.Command{Kind: engine.CmdResume, Actor: operator})
	f.rec.waitFor(t, "a second inconclusive pause", func(e engine.Event) bool {
		return isAutoPause(e) && e.Seq > paused.Seq
	})
	for _, e := range ofType(f.rec.events(), "", engine.EvStepStarted, engine.EvGateResult) {
		if e.Type == engine.EvStepStarted && e.Wave > 1 {
			t.Errorf("step %d started on inconclusive data", e.Wave)
		}
		if e.Type == engine.EvGateResult && e.Gate.Verdict == engine.VerdictPass {
			t.Errorf("gate passed with %s", e.Gate.Reason)
		}
	}
	f.send(engine.Command{Kind: engine.CmdRollback, Actor: operator})
	if st := f.wait(done); st.Outcome != engine.OutcomeRolledBack {
		t.Errorf("outcome %s, want rolled_back", st.Outcome)
	}
	f.assertHostsOn("v1")
	p.Stop()
}

// TestAutoRollbackTrigger holds a canary step for long (its gate is
// lenient) while the new release answers 5 % errors: the trigger
// "error rate > 1 % for 2 s" rolls it back, as actor auto.
func TestAutoRollbackTrigger(t *testing.T) {
	f := newFleet(t, fleetOpts{hosts: 4, env: `    strategy: {kind: canary, steps: [25, 100], pause: 60s}
    gate: {error_rate: 50%, p99: 10s, interval: 500ms, count: 1, min_requests: 1}
    auto_rollback: {error_rate: 1%, for: 2s}
`})
	f.live("v1", knobs{})
	p := f.load(200, 60*time.Second, nil)
	st := f.wait(f.deploy(f.build("v2", knobs{FailEvery: 20})))
	p.Stop()
	if st.Outcome != engine.OutcomeRolledBack {
		t.Fatalf("outcome %s (%s), want rolled_back\n%s", st.Outcome, st.Err, f.rec.dump())
	}
	evs := ofType(f.rec.events(), st.Run, engine.EvCommand)
	if len(evs) != 1 || evs[0].Command != string(engine.CmdRollback) || evs[0].Actor != engine.AutoActor.Name ||
		!strings.Contains(evs[0].Message, "auto-rollback trigger: error rate") {
		t.Fatalf("accepted commands %+v, want one rollback by auto from the trigger\n%s", evs, f.rec.dump())
	}
	if st.RollbackBy != engine.AutoActor.Name {
		t.Errorf("rollback by %q, want auto", st.RollbackBy)
	}
	for _, g := range ofType(f.rec.events(), st.Run, engine.EvGateResult) {
		if g.Gate.Verdict == engine.VerdictFail {
			t.Errorf("the gate failed (%s): this test wants the trigger to act, not the gate", g.Gate.Reason)
		}
	}
	f.assertHostsOn("v1")
	if rs := f.routerState(); rs.Route.Stable != "v1" || rs.Route.Candidate != "" {
		t.Errorf("route %+v, want v1 alone", rs.Route)
	}
	t.Logf("auto-rollback: %s; rolled back in %s", evs[0].Message, st.Report.RTO.Round(time.Millisecond))
}
