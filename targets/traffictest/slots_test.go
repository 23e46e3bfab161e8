package traffictest

import (
	"strings"
	"testing"
	"time"

	"flightdeck/engine"
	"flightdeck/engine/probe"
)

// waitServed waits until the load has had n more successful answers from
// release rel than it had when called.
func waitServed(t *testing.T, p *probe.Probe, rel string, n uint64) {
	t.Helper()
	base := p.Snapshot().Releases[rel].Succeeded
	if err := pollUntil(30*time.Second, func() bool { return p.Snapshot().Releases[rel].Succeeded >= base+n }); err != nil {
		t.Fatalf("release %s did not answer %d more requests: %+v", rel, n, p.Snapshot().Releases)
	}
}

// TestBlueGreenFlipAndFlipBackUnderLoad deploys v2 into the idle (green)
// slots while v1 serves from blue, flips all traffic, then rolls back to
// v1 (a flip back to the still-warm blue slots), with 600 requests/s
// through the router the whole time and not one failing.
func TestBlueGreenFlipAndFlipBackUnderLoad(t *testing.T) {
	f := newFleet(t, fleetOpts{hosts: 2, slots: true, env: `    strategy: {kind: bluegreen}
    probe: {url: "PROXY_URL/", rate: 50}
`})
	f.live("v1", knobs{})
	p := f.load(600, 90*time.Second, nil)
	waitServed(t, p, "v1", 500)

	st := f.wait(f.deploy(f.build("v2", knobs{})))
	if st.Outcome != engine.OutcomeSucceeded {
		t.Fatalf("deploy: outcome %s (%s)\n%s", st.Outcome, st.Err, f.rec.dump())
	}
	f.assertHostsOn("v2")
	rs := f.routerState()
	if rs.Route.Stable != "v2" || rs.Route.Candidate != "" {
		t.Errorf("after the flip, route %+v, want v2 alone", rs.Route)
	}
	for name, bs := range f.backends {
		blue, green := bs[0], bs[1]
		if blue.release() != "v1" || green.release() != "v2" {
			t.Errorf("host %s: blue runs %q, green %q; want v1 kept warm and v2", name, blue.release(), green.release())
		}
	}
	if rp := st.Report.Probe; rp == nil || rp.Requests == 0 || rp.Failed != 0 {
		t.Errorf("deploy's own probe: %+v, want requests and none failed (verdict %q)", rp, st.Report.Verdict)
	}
	waitServed(t, p, "v2", 500)

	back := f.wait(f.rollback("v1"))
	if back.Outcome != engine.OutcomeSucceeded {
		t.Fatalf("rollback: outcome %s (%s)\n%s", back.Outcome, back.Err, f.rec.dump())
	}
	f.assertHostsOn("v1")
	rs = f.routerState()
	if rs.Route.Stable != "v1" || rs.Route.Candidate != "" {
		t.Errorf("after the flip back, route %+v, want v1 alone", rs.Route)
	}
	for rel, n := range f.hits(50, nil) {
		if rel != "v1" {
			t.Errorf("after the flip back, %d requests answered by %s", n, rel)
		}
	}
	waitServed(t, p, "v1", 500)
	p.Stop()
	rep := p.Snapshot()
	if rep.Total.Failed != 0 {
		t.Errorf("%d of %d requests failed across flip and flip back: %+v", rep.Total.Failed, rep.Total.Requests, rep.Total.Failures)
	}
	if rep.Rate < 500 {
		t.Errorf("load ran at %g requests/s, want at least 500", rep.Rate)
	}
	// The flip back is the rollback run: from its start to the route change.
	var started, flipped time.Time
	for _, e := range f.rec.events() {
		if e.Run != back.Run {
			continue
		}
		switch {
		case e.Type == engine.EvRunStarted:
			started = e.Time
		case e.Type == engine.EvWeightSet && strings.Contains(e.Message, "v1 (stable)"):
			flipped = e.Time
		}
	}
	if flipped.IsZero() {
		t.Errorf("the rollback run never set v1 stable\n%s", f.rec.dump())
	}
	t.Logf("blue/green: %d requests at %g/s, 0 failed (v1 %d, v2 %d); flip back took %s from run start to route (rollback RTO %s)",
		rep.Total.Requests, rep.Rate, rep.Releases["v1"].Requests, rep.Releases["v2"].Requests,
		flipped.Sub(started).Round(time.Millisecond), back.Report.RTO.Round(time.Millisecond))
}

// TestABCohortOnlyAndInstantRollback routes requests carrying X-Beta: 1 to
// the new release and nobody else; an operator's rollback drops the
// cohort and the very next cohort request is served by the old release.
func TestABCohortOnlyAndInstantRollback(t *testing.T) {
	f := newFleet(t, fleetOpts{hosts: 2, slots: true, env: `    strategy:
      kind: ab
      auto_promote: false
      cohort: {header: X-Beta, value: "1"}
    gate: {error_rate: 0.1%, p99: 10s, interval: 500ms, count: 1, min_requests: 1}
`})
	beta := map[string]string{"X-Beta": "1"}
	f.live("v1", knobs{})
	plain := f.load(300, 90*time.Second, nil)
	cohort := f.load(100, 90*time.Second, beta)

	done := f.deploy(f.build("v2", knobs{}))
	f.rec.waitFor(t, "the cohort rule", func(e engine.Event) bool {
		return e.Type == engine.EvCohortSet && e.Weight != nil && *e.Weight > 0
	})
	if got := f.hits(100, beta); got["v2"] != 100 {
		t.Errorf("cohort requests answered by %v, want all 100 by v2", got)
	}
	if got := f.hits(100, map[string]string{"X-Beta": "0"}); got["v1"] != 100 {
		t.Errorf("requests with another X-Beta value answered by %v, want all 100 by v1", got)
	}
	if got := f.hits(100, nil); got["v1"] != 100 {
		t.Errorf("requests outside the cohort answered by %v, want all 100 by v1", got)
	}
	// The gate passed and the run waits for an operator to promote.
	f.rec.waitFor(t, "the wait for an operator", func(e engine.Event) bool {
		return e.Type == engine.EvNotice && strings.Contains(e.Message, "waiting for an operator to promote")
	})
	if st := f.hub.Snapshot(); st.Weight != 0 {
		t.Errorf("weight %g while the cohort is on, want 0 (only the cohort goes to v2)", st.Weight)
	}

	sent := time.Now()
	f.send(engine.Command{Kind: engine.CmdRollback, Actor: operator, Reason: "beta users report a bug"})
	dropped := f.rec.waitFor(t, "the cohort dropped", func(e engine.Event) bool {
		return e.Type == engine.EvCohortSet && e.Weight != nil && *e.Weight == 0
	})
	if got := f.hits(100, beta); got["v1"] != 100 {
		t.Errorf("right after the cohort was dropped, cohort requests answered by %v, want all by v1", got)
	}
	st := f.wait(done)
	if st.Outcome != engine.OutcomeRolledBack {
		t.Fatalf("outcome %s (%s), want rolled_back\n%s", st.Outcome, st.Err, f.rec.dump())
	}
	if st.RollbackBy != operator.Name {
		t.Errorf("rollback by %q, want %q", st.RollbackBy, operator.Name)
	}
	f.assertHostsOn("v1")
	if rs := f.routerState(); len(rs.Cohorts) != 0 || rs.Route.Stable != "v1" || rs.Route.Candidate != "" {
		t.Errorf("router after the rollback: route %+v cohorts %+v, want v1 alone and no cohort", rs.Route, rs.Cohorts)
	}

	plain.Stop()
	cohort.Stop()
	pr, cr := plain.Snapshot(), cohort.Snapshot()
	if n := pr.Releases["v2"].Requests; n != 0 {
		t.Errorf("%d requests outside the cohort reached v2", n)
	}
	if pr.Total.Failed != 0 || cr.Total.Failed != 0 {
		t.Errorf("failed requests: outside the cohort %d, in it %d; want none", pr.Total.Failed, cr.Total.Failed)
	}
	if cr.Releases["v2"].Requests == 0 {
		t.Errorf("no cohort request reached v2: %+v", cr.Releases)
	}
	t.Logf("A/B: cohort traffic v2 %d / v1 %d, others v1 %d / v2 0; rollback command to cohort dropped in %s",
		cr.Releases["v2"].Requests, cr.Releases["v1"].Requests, pr.Releases["v1"].Requests,
		dropped.Time.Sub(sent).Round(time.Microsecond))
}

// TestBlueGreenStartsSlotsWithinParallel: a blue/green deploy starts the
// idle slots of at most the plan's parallel hosts at once (from each
// host's restarting phase to its standby). Starting every host's slot at
// once was a burst of process start-ups that, with the hosts sharing
// cores (the demo), starved the serving slots and the router for about a
// second: bench/hitless.sh saw gaps of 0.6–1.9 s and thousands of failed
// probe requests in blue/green deploys.
func TestBlueGreenStartsSlotsWithinParallel(t *testing.T) {
	f := newFleet(t, fleetOpts{hosts: 4, slots: true, env: `    parallel: 2
    strategy: {kind: bluegreen}
`})
	f.live("v1", knobs{})
	st := f.wait(f.deploy(f.build("v2", knobs{})))
	if st.Outcome != engine.OutcomeSucceeded {
		t.Fatalf("deploy: outcome %s (%s)\n%s", st.Outcome, st.Err, f.rec.dump())
	}
	starting, most, started := 0, 0, 0
	for _, e := range f.rec.events() {
		if e.Run != st.Run || e.Type != engine.EvHostPhase {
			continue
		}
		switch e.Phase {
		case engine.PhaseRestart:
			starting++
			started++
			most = max(most, starting)
		case engine.PhaseStandby:
			starting--
		}
	}
	if started != 4 {
		t.Fatalf("%d slots started, want 4\n%s", started, f.rec.dump())
	}
	if most > 2 {
		t.Errorf("%d slots starting at once, want at most 2 (the plan's parallel)\n%s", most, f.rec.dump())
	}
}
