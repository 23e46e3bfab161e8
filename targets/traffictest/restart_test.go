package traffictest

import (
	"slices"
	"testing"
	"time"

	"flightdeck/engine"
)

// TestRouterRestartMidCanaryKeepsWeightsAndPools restarts the router while
// a canary waits at its first step (25 %, one host of four on v2): the
// restarted router, reading the same state file, keeps the route and the
// pools and goes on splitting traffic, and the engine, still holding the
// same admin URL and token, promotes the canary to the end through it.
// The router's own restart test (targets/router TestRestartKeepsStateAndToken)
// covers cohorts, sticky routes and drain flags.
func TestRouterRestartMidCanaryKeepsWeightsAndPools(t *testing.T) {
	f := newFleet(t, fleetOpts{hosts: 4, env: `    strategy: {kind: canary, steps: [25, 100], auto_promote: false}
    gate: {error_rate: 0.1%, p99: 10s, interval: 500ms, count: 1, min_requests: 5}
`})
	f.resumeWhenInconclusive(10)
	f.live("v1", knobs{})
	p := f.load(200, 90*time.Second, nil)
	done := f.deploy(f.build("v2", knobs{}))
	f.rec.waitFor(t, "the wait for an operator", func(e engine.Event) bool {
		return e.Type == engine.EvNotice && e.Wave == 0 && e.Message == "step 1 passed; waiting for an operator to promote"
	})
	before := f.routerState()
	if before.Route.Candidate != "v2" || before.Route.Weight != 25 {
		t.Fatalf("route before the restart %+v, want 25%% to v2", before.Route)
	}

	f.restartRouter()
	after := f.routerState()
	if after.Route != before.Route {
		t.Errorf("route after the restart %+v, want %+v", after.Route, before.Route)
	}
	for _, rel := range []string{"v1", "v2"} {
		var b, a []string
		for _, x := range before.Backends {
			if x.Release == rel {
				b = append(b, x.Addr)
			}
		}
		a = f.poolOf(rel)
		slices.Sort(a)
		slices.Sort(b)
		if !slices.Equal(a, b) {
			t.Errorf("%s's pool after the restart %v, want %v", rel, a, b)
		}
	}
	// Restored backends join once healthy; then both sides serve again.
	for _, b := range after.Backends {
		if err := f.client.WaitHealthy(ctxT(t), b.Addr); err != nil {
			t.Fatal(err)
		}
	}
	got := f.hits(400, nil)
	if got["v1"]+got["v2"] != 400 || got["v2"] < 50 || got["v2"] > 150 {
		t.Errorf("after the restart 400 requests went %v, want all answered and about 100 by v2", got)
	}

	f.send(engine.Command{Kind: engine.CmdPromote, Actor: operator})
	st := f.wait(done)
	if st.Outcome != engine.OutcomeSucceeded {
		t.Fatalf("outcome %s (%s), want succeeded\n%s", st.Outcome, st.Err, f.rec.dump())
	}
	f.assertHostsOn("v2")
	if rs := f.routerState(); rs.Route.Stable != "v2" || rs.Route.Candidate != "" {
		t.Errorf("route %+v, want v2 alone", rs.Route)
	}
	p.Stop()
	rep := p.Snapshot()
	t.Logf("router restart mid-canary: %d requests, %d failed (connections refused while the router was down: %d)",
		rep.Total.Requests, rep.Total.Failed, rep.Total.Failures.Refused)
}
