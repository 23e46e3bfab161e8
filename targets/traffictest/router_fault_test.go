package traffictest

import (
	"context"
	"strings"
	"testing"

	"flightdeck/engine"
)

// TestRouterGoneMidCanaryEndsTheRun stops the router while a canary holds
// its first step (30 % on two of four hosts; paused, as its gate had no
// traffic to judge) and an operator promotes to 40 %, a change of traffic
// alone: the failed route change is journaled,
// the run rolls back as actor auto, the rollback cannot move traffic back
// either, and the run ends failed saying so, with every host on one
// complete release. Before the fix the failure was dropped and the run
// asked the dead router for the same route again and again, for ever.
func TestRouterGoneMidCanaryEndsTheRun(t *testing.T) {
	f := newFleet(t, fleetOpts{hosts: 4, env: `    strategy: {kind: canary, steps: [30, 40, 100]}
    gate: {error_rate: 1%, interval: 300ms}
`})
	f.live("v1", knobs{})
	done := f.deploy(f.build("v2", knobs{}))
	f.rec.waitFor(t, "the gate's pause", func(e engine.Event) bool {
		return e.Type == engine.EvPaused && e.Actor == engine.AutoActor.Name
	})
	if rs := f.routerState(); rs.Route.Candidate != "v2" || rs.Route.Weight != 30 {
		t.Fatalf("route before the router stops %+v, want 30%% to v2", rs.Route)
	}
	if err := f.rt.Close(); err != nil {
		t.Fatal(err)
	}
	f.send(engine.Command{Kind: engine.CmdPromote, Actor: operator})
	st := f.wait(done)
	if st.Outcome != engine.OutcomeFailed || !strings.Contains(st.Err, "rollback could not move traffic: router:") {
		t.Fatalf("outcome %s (%s), want failed: the rollback could not move traffic\n%s", st.Outcome, st.Err, f.rec.dump())
	}
	evs, err := engine.ReadJournal(f.eng.StateDir, st.Run)
	if err != nil {
		t.Fatal(err)
	}
	var routeFailures int
	var autoRollback bool
	for _, e := range evs {
		switch {
		case e.Type == engine.EvNotice && e.Command == engine.ActRoute.String() && strings.HasPrefix(e.Error, "router: "):
			routeFailures++
		case e.Type == engine.EvRollbackStart && e.Actor == engine.AutoActor.Name && strings.Contains(e.Message, "router: "):
			autoRollback = true
		}
	}
	// One for the promotion's route, one for the rollback's: no retry loop.
	if routeFailures != 2 || !autoRollback {
		t.Fatalf("journal: %d route failures (want 2), rollback by auto %v\n%s", routeFailures, autoRollback, f.rec.dump())
	}
	want := map[string]string{"h1": "v2", "h2": "v2", "h3": "v1", "h4": "v1"}
	for _, h := range f.hosts {
		hs, err := h.Inspect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if hs.Current != want[h.Name()] {
			t.Errorf("%s on %s, want %s (the canary's hosts stay where traffic could not be moved from)", h.Name(), hs.Current, want[h.Name()])
		}
		if err := h.Verify(context.Background(), hs.Current); err != nil {
			t.Errorf("%s: %s is not complete: %v", h.Name(), hs.Current, err)
		}
	}
}
