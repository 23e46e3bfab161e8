package traffictest

import (
	"slices"
	"strings"
	"testing"
	"time"

	"flightdeck/engine"
	"flightdeck/engine/probe"
	"flightdeck/targets/prom"
)

// canaryEnv is a canary over steps 5 → 25 → 100 whose gate measures
// twice per step for 1 s; one failed measurement fails the step. The p99
// threshold is loose on purpose: these tests judge error rates, and a
// loaded CI machine under -race must not fail a healthy release on latency.
const canaryEnv = `    strategy: {kind: canary, steps: [5, 25, 100]}
    gate: {error_rate: 0.1%, p99: 10s, interval: 1s, count: 2, failure_limit: 1, min_requests: 5}
`

// loadRate is the traffic through the router in the canary tests: at 5 %
// the candidate gets about 20 requests per 1 s measurement.
const loadRate = 400

func TestCanaryHealthyPromotesThroughEveryStep(t *testing.T) {
	f := newFleet(t, fleetOpts{hosts: 4, env: canaryEnv})
	f.resumeWhenInconclusive(10)
	f.live("v1", knobs{})
	p := f.load(loadRate, 90*time.Second, nil)

	st := f.wait(f.deploy(f.build("v2", knobs{})))
	if st.Outcome != engine.OutcomeSucceeded {
		t.Fatalf("outcome %s (%s), want succeeded\n%s", st.Outcome, st.Err, f.rec.dump())
	}
	evs := f.rec.events()
	var steps []int
	for _, e := range ofType(evs, st.Run, engine.EvStepStarted) {
		steps = append(steps, e.Wave)
	}
	if !slices.Equal(steps, []int{1, 2, 3}) {
		t.Errorf("StepStarted %v, want [1 2 3]", steps)
	}
	var weights []float64
	for _, e := range ofType(evs, st.Run, engine.EvWeightSet) {
		weights = append(weights, *e.Weight)
	}
	// 5, 25, 100 through the steps, then the final "v2 is stable" (0 = no candidate).
	if !slices.Equal(weights, []float64{5, 25, 100, 0}) {
		t.Errorf("WeightSet %v, want [5 25 100 0]", weights)
	}
	passes := map[int]int{}
	for _, e := range ofType(evs, st.Run, engine.EvGateResult) {
		if e.Gate.Verdict == engine.VerdictInconclusive {
			continue // a thin window on a loaded machine; resumed
		}
		if e.Gate.Verdict != engine.VerdictPass {
			t.Errorf("step %d: gate %s (%s), want pass", e.Gate.Step, e.Gate.Verdict, e.Gate.Reason)
			continue
		}
		if !strings.Contains(e.Gate.Reason, "requests") || !strings.Contains(e.Gate.Reason, "error rate 0.00%") {
			t.Errorf("gate reason %q does not state the measured values", e.Gate.Reason)
		}
		passes[e.Gate.Step]++
	}
	if passes[1] != 2 || passes[2] != 2 || passes[3] != 1 {
		t.Errorf("gate passes per step %v, want 2 at steps 1 and 2 and 1 with all the traffic (step 3)", passes)
	}
	judged := 0
	for _, m := range journalSamples(t, f, st.Run) {
		if m.NoData || m.Requests < 5 {
			continue // inconclusive
		}
		judged++
		if m.Release != "v2" || m.Errors != 0 || m.P99 <= 0 {
			t.Errorf("journaled sample %+v: want v2 with 0 errors and a p99", m)
		}
	}
	if judged != 5 {
		t.Errorf("journal holds %d judged metric samples, want 5 (2 per analysed step, 1 with all the traffic)", judged)
	}

	// Every host runs v2 and the router sends everything to it.
	f.assertHostsOn("v2")
	rs := f.routerState()
	if rs.Route.Stable != "v2" || rs.Route.Candidate != "" {
		t.Errorf("route %+v, want v2 stable alone", rs.Route)
	}
	if got := f.poolOf("v2"); len(got) != 4 {
		t.Errorf("v2's pool %v, want the 4 backends", got)
	}
	for rel, n := range f.hits(50, nil) {
		if rel != "v2" {
			t.Errorf("after the deploy, %d requests answered by %s", n, rel)
		}
	}
	p.Stop()
	rep := p.Snapshot()
	// No backend failed a request; the router's own 503s at the last step
	// are TestCanaryLastStepIsHitless's business.
	for rel, s := range rep.Releases {
		if rel != probe.UnknownRelease && s.Failed != 0 {
			t.Errorf("release %s failed %d requests during a healthy canary: %+v", rel, s.Failed, s.Failures)
		}
	}
	t.Logf("healthy canary: %s, %d requests through the router (v1 %d, v2 %d, router 503 %d)",
		st.Finished.Sub(st.Started).Round(time.Millisecond), rep.Total.Requests, rep.Releases["v1"].Requests,
		rep.Releases["v2"].Requests, rep.Releases[probe.UnknownRelease].Requests)
}

// TestCanaryLastStepIsHitless promotes a healthy canary under load whose
// application takes 300 ms to restart, and wants no failed request at all.
// It failed against the planner of 2b512e7: at the last step (100 %) every
// remaining host was switched at once before the route changed, so the
// old release's pool was drained to nothing while it still had 75 % of
// the traffic, and the router answered 503 (no backend in rotation) for as
// long as the restarts took. 040e0ae bounds the hosts switched at once
// (max_unavailable) and lets the router serve from the other side when
// one side has nothing in rotation; this test keeps it that way.
func TestCanaryLastStepIsHitless(t *testing.T) {
	// The application takes 300 ms to restart, as a real one would.
	f := newFleet(t, fleetOpts{hosts: 4, env: canaryEnv, restartTakes: 300 * time.Millisecond})
	f.resumeWhenInconclusive(10)
	f.live("v1", knobs{})
	p := f.load(loadRate, 90*time.Second, nil)
	st := f.wait(f.deploy(f.build("v2", knobs{})))
	if st.Outcome != engine.OutcomeSucceeded {
		t.Fatalf("outcome %s (%s), want succeeded", st.Outcome, st.Err)
	}
	p.Stop()
	rep := p.Snapshot()
	if rep.Total.Failed != 0 {
		t.Errorf("%d of %d requests failed during a healthy canary (%d answered by the router itself: no backend in rotation)\n%s",
			rep.Total.Failed, rep.Total.Requests, rep.Releases[probe.UnknownRelease].Failed, f.rec.dump())
	}
}

func TestCanaryBadReleaseRollsBackAtFailingStep(t *testing.T) {
	f := newFleet(t, fleetOpts{hosts: 4, env: canaryEnv})
	f.resumeWhenInconclusive(10)
	f.live("v1", knobs{})
	p := f.load(loadRate, 90*time.Second, nil)
	st := f.wait(f.deploy(f.build("v2", knobs{FailEvery: 20})))
	assertBadCanaryRolledBack(t, f, st)
	p.Stop()
}

// TestCanaryBadReleaseRollsBackThroughPrometheus is the bad canary again,
// judged through PromQL on a real Prometheus server scraping the router.
// The gate interval holds four scrapes (one a second), so that rate()
// has samples even when a scrape is slow.
func TestCanaryBadReleaseRollsBackThroughPrometheus(t *testing.T) {
	f := newFleet(t, fleetOpts{hosts: 4, prometheus: true, env: `    strategy: {kind: canary, steps: [5, 25, 100]}
    gate:
      source: prometheus
      prometheus: {url: "PROM_URL"}
      error_rate: 0.1%
      p99: 10s
      interval: 4s
      count: 2
      failure_limit: 1
      min_requests: 5
`})
	if _, ok := f.eng.Metrics.(*prom.Source); !ok {
		t.Fatalf("engine measures with %T, want the Prometheus source", f.eng.Metrics)
	}
	f.resumeWhenInconclusive(10)
	f.live("v1", knobs{})
	p := f.load(loadRate, 90*time.Second, nil)
	f.prom.WaitUp(t, 1)
	st := f.wait(f.deploy(f.build("v2", knobs{FailEvery: 20})))
	assertBadCanaryRolledBack(t, f, st)
	p.Stop()
}

// assertBadCanaryRolledBack checks the end of a canary of a release that
// answers 5 % errors: rolled back at the step whose gate failed, weight 0,
// every host and backend back on v1, samples journaled.
func assertBadCanaryRolledBack(t *testing.T, f *fleet, st *engine.State) {
	t.Helper()
	if st.Outcome != engine.OutcomeRolledBack {
		t.Fatalf("outcome %s (%s), want rolled_back\n%s", st.Outcome, st.Err, f.rec.dump())
	}
	evs := f.rec.events()
	failStep := 0
	for _, e := range ofType(evs, st.Run, engine.EvGateResult) {
		if e.Gate.Verdict == engine.VerdictFail {
			failStep = e.Gate.Step
			if !strings.Contains(e.Gate.Reason, "error rate") {
				t.Errorf("failed gate reason %q does not name the error rate", e.Gate.Reason)
			}
			break
		}
	}
	if failStep == 0 {
		t.Fatalf("no failed gate result\n%s", f.rec.dump())
	}
	for _, e := range ofType(evs, st.Run, engine.EvStepStarted) {
		if e.Wave > failStep {
			t.Errorf("step %d started after the gate failed at step %d", e.Wave, failStep)
		}
	}
	rb := ofType(evs, st.Run, engine.EvRollbackStart)
	if len(rb) != 1 || rb[0].Actor != engine.AutoActor.Name || !strings.Contains(rb[0].Message, "SLO gate failed at step") {
		t.Errorf("RollbackStarted events %+v, want one by auto naming the failed gate", rb)
	}
	ws := ofType(evs, st.Run, engine.EvWeightSet)
	if len(ws) == 0 || *ws[len(ws)-1].Weight != 0 {
		t.Errorf("last WeightSet %+v, want weight 0", ws)
	}
	var sawFailSample bool
	for _, m := range journalSamples(t, f, st.Run) {
		if m.Release != "v2" {
			t.Errorf("sample of %s, want v2", m.Release)
		}
		if !m.NoData && m.Errors > 0 && m.ErrorRate > 0.001 {
			sawFailSample = true
			t.Logf("failing sample: %.1f requests, %.1f errors, error rate %.2f%%, p99 %s", m.Requests, m.Errors, m.ErrorRate*100, m.P99)
		}
	}
	if !sawFailSample {
		t.Errorf("no journaled sample shows v2's errors")
	}

	f.assertHostsOn("v1")
	rs := f.routerState()
	if rs.Route.Stable != "v1" || rs.Route.Candidate != "" || rs.Route.Weight != 0 {
		t.Errorf("route %+v, want all traffic on v1", rs.Route)
	}
	if got := f.poolOf("v1"); len(got) != 4 {
		t.Errorf("v1's pool %v, want all 4 backends back", got)
	}
	for name, bs := range f.backends {
		if rel := bs[0].release(); rel != "v1" {
			t.Errorf("host %s's process runs %q after the rollback, want v1", name, rel)
		}
	}
	for rel, n := range f.hits(50, nil) {
		if rel != "v1" {
			t.Errorf("after the rollback, %d requests answered by %s", n, rel)
		}
	}
	t.Logf("bad canary: gate failed at step %d; rolled back in %s", failStep, st.Report.RTO.Round(time.Millisecond))
}

// journalSamples reads the run's MetricSample events back from the journal.
func journalSamples(t *testing.T, f *fleet, run string) []engine.Measurement {
	t.Helper()
	evs, err := engine.ReadJournal(f.eng.StateDir, run)
	if err != nil {
		t.Fatal(err)
	}
	var out []engine.Measurement
	for _, e := range ofType(evs, "", engine.EvMetricSample) {
		if e.Sample == nil {
			t.Errorf("MetricSample without values: %+v", e)
			continue
		}
		out = append(out, *e.Sample)
	}
	return out
}
