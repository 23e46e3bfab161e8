package traffictest

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"flightdeck/engine"
)

// assertNginxHitless checks a deploy through nginx that must have lost no
// request: succeeded, no failed probe request, every host and request on
// v2, no server left down.
func assertNginxHitless(t *testing.T, f *fleet, st *engine.State) {
	t.Helper()
	if st.Outcome != engine.OutcomeSucceeded {
		t.Fatalf("outcome %s (%s), want succeeded\n%s", st.Outcome, st.Err, f.rec.dump())
	}
	if st.Info.Traffic != "nginx" {
		t.Errorf("run info names the traffic layer %q, want nginx", st.Info.Traffic)
	}
	// No failed request; the verdict also holds the probe's p99 to the
	// SLO, which a loaded test machine cannot promise across reloads.
	rep := st.Report
	if rep.Probe == nil || rep.Probe.Requests == 0 || rep.Probe.Failed != 0 {
		t.Errorf("report: verdict %q, probe %+v; want 0 failed", rep.Verdict, rep.Probe)
	}
	f.assertHostsOn("v2")
	for rel, n := range f.hits(50, nil) {
		if rel != "v2" {
			t.Errorf("after the deploy, %d requests answered by %s", n, rel)
		}
	}
	data, err := os.ReadFile(f.ngr.Config().UpstreamFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), " down;") {
		t.Errorf("a server is left down after the run:\n%s", data)
	}
}

// TestNginxRollingHitless is acceptance 4's rolling deploy: every host is
// drained (marked down, nginx reloaded, old workers waited for),
// switched, restarted and put back, under probe traffic and load, with
// not one failed request across the reloads.
func TestNginxRollingHitless(t *testing.T) {
	f := newFleet(t, fleetOpts{hosts: 3, router: "nginx", restartTakes: 100 * time.Millisecond, env: `    strategy: {kind: rolling, wave_size: 1}
    probe: {url: "PROXY_URL/", rate: 100}
`})
	f.live("v1", knobs{})
	p := f.load(lbRate, 90*time.Second, nil)
	st := f.wait(f.deploy(f.build("v2", knobs{})))
	p.Stop()
	assertNginxHitless(t, f, st)
	if lr := p.Snapshot(); lr.Total.Failed != 0 {
		t.Errorf("%d of %d load requests failed across the reloads: %+v", lr.Total.Failed, lr.Total.Requests, lr.Total.Failures)
	}
	drains := 0
	for _, e := range ofType(f.rec.events(), st.Run, engine.EvHostPhase) {
		if e.Phase == engine.PhaseDraining {
			drains++
		}
	}
	if drains != 3 {
		t.Errorf("%d hosts drained, want 3", drains)
	}
}

// TestNginxCanaryHitless is acceptance 4's canary: 5 → 25 → 100 through
// nginx's weights, the gate reading the access log, no failed request.
func TestNginxCanaryHitless(t *testing.T) {
	f := newFleet(t, fleetOpts{hosts: 4, router: "nginx", env: canaryEnv + `    probe: {url: "PROXY_URL/", rate: 100}
`})
	f.resumeWhenInconclusive(10)
	f.live("v1", knobs{})
	p := f.load(lbRate, 90*time.Second, nil)
	st := f.wait(f.deploy(f.build("v2", knobs{})))
	p.Stop()
	assertNginxHitless(t, f, st)
	judged := 0
	for _, m := range journalSamples(t, f, st.Run) {
		if m.NoData || m.Requests < 5 {
			continue
		}
		judged++
		if m.Release != "v2" || m.Errors != 0 || m.P99 <= 0 {
			t.Errorf("journaled sample %+v: want v2 from the access log, no errors, a p99", m)
		}
	}
	if judged < 4 {
		t.Errorf("%d judged samples, want 2 per analysed step\n%s", judged, f.rec.dump())
	}
	if lr := p.Snapshot(); lr.Total.Failed != 0 {
		t.Errorf("%d of %d load requests failed across the reloads: %+v", lr.Total.Failed, lr.Total.Requests, lr.Total.Failures)
	}
}

// TestNginxRejectedConfig is acceptance 4's refusal: a host joins whose
// backend name does not resolve; putting it in the upstream makes nginx
// -t fail, so the run fails with nginx's own message, the previous
// upstream file is back and nginx keeps serving the previous config.
func TestNginxRejectedConfig(t *testing.T) {
	f := newFleet(t, fleetOpts{hosts: 2, router: "nginx", unresolvable: true, env: `    strategy: {kind: rolling, wave_size: 1, on_failure: halt}
    probe: {url: "PROXY_URL/", rate: 50}
`})
	f.live("v1", knobs{})
	upstream := f.ngr.Config().UpstreamFile
	var mu sync.Mutex
	// The file as the run starts (primed with v2's empty pool); nothing
	// but h0's joining writes it afterwards, long after RunStarted (every
	// host is prepared first).
	var before string
	stop := f.hub.Watch(context.Background(), func(_ context.Context, e engine.Event) bool {
		if e.Type == engine.EvRunStarted {
			data, _ := os.ReadFile(upstream)
			mu.Lock()
			before = string(data)
			mu.Unlock()
			return true
		}
		return false
	})
	st := f.wait(f.deploy(f.build("v2", knobs{})))
	stop()
	if st.Outcome != engine.OutcomeFailed || !strings.Contains(st.Err, `host not found in upstream "no-such-host.invalid:8080"`) {
		t.Fatalf("outcome %s (%s); want failed with nginx's message\n%s", st.Outcome, st.Err, f.rec.dump())
	}
	evs, err := engine.ReadJournal(f.eng.StateDir, st.Run)
	if err != nil {
		t.Fatal(err)
	}
	journaled := false
	for _, e := range evs {
		journaled = journaled || (e.Host == "h0" && e.Phase == engine.PhaseFailed &&
			strings.Contains(e.Error, "nginx rejected the new configuration") && strings.Contains(e.Error, "[emerg]") && strings.Contains(e.Error, `host not found in upstream "no-such-host.invalid:8080"`))
	}
	if !journaled {
		t.Errorf("the journal does not hold h0's failure with nginx's message\n%s", f.rec.dump())
	}
	data, err := os.ReadFile(upstream)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if before == "" || strings.Contains(before, "no-such-host") || string(data) != before {
		t.Errorf("upstream file after the refusal:\n%s\nwant the one the run started with:\n%s", data, before)
	}
	mu.Unlock()
	if strings.Contains(string(data), "no-such-host") {
		t.Errorf("the refused server is in the upstream file:\n%s", data)
	}
	for rel, n := range f.hits(50, nil) {
		if rel != "v1" {
			t.Errorf("after the refusal, %d requests answered by %s; want nginx on the previous config (v1)", n, rel)
		}
	}
	if rp := st.Report.Probe; rp == nil || rp.Failed != 0 {
		t.Errorf("probe during the run %+v, want none failed", rp)
	}
}
