package traffictest

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"flightdeck/engine"
)

// lbRate is the load through HAProxy and nginx in these tests: at 5 % the
// candidate gets about 10 requests per 1 s measurement, and the load
// generator (in this process, under -race) leaves the machine room to
// serve it.
const lbRate = 200

// haproxyServer is one server of the app backend as HAProxy reports it.
type haproxyServer struct {
	name, addr string
	weight     int
	admin      int // srv_admin_state bits
}

// haproxyServers reads "show servers state app".
func (f *fleet) haproxyServers(ctx context.Context) ([]haproxyServer, error) {
	a, err := f.har.Runtime().Do(ctx, "show servers state app")
	if err != nil {
		return nil, err
	}
	var out []haproxyServer
	for _, l := range strings.Split(a[0], "\n")[2:] {
		fl := strings.Fields(l)
		if len(fl) < 19 {
			return nil, fmt.Errorf("show servers state line %q", l)
		}
		s := haproxyServer{name: fl[3], addr: net.JoinHostPort(fl[4], fl[18])}
		s.weight, _ = strconv.Atoi(fl[7])
		s.admin, _ = strconv.Atoi(fl[6])
		out = append(out, s)
	}
	return out, nil
}

// haproxyShare is the percentage of the app backend's weight that
// release rel's servers hold, among servers in rotation (not drained, not
// in maintenance), as HAProxy reports it.
func (f *fleet) haproxyShare(ctx context.Context, rel string) (float64, string, error) {
	st, err := f.rtr.State(ctx)
	if err != nil {
		return 0, "", err
	}
	in := map[string]bool{}
	for _, b := range st.Backends {
		if b.Release == rel {
			in[b.Addr] = true
		}
	}
	ss, err := f.haproxyServers(ctx)
	if err != nil {
		return 0, "", err
	}
	var mine, total int
	var desc []string
	for _, s := range ss {
		desc = append(desc, fmt.Sprintf("%s=%d/%#x", s.name, s.weight, s.admin))
		if s.admin&(0x23|0x18) != 0 {
			continue
		}
		total += s.weight
		if in[s.addr] {
			mine += s.weight
		}
	}
	if total == 0 {
		return 0, strings.Join(desc, " "), nil
	}
	return 100 * float64(mine) / float64(total), strings.Join(desc, " "), nil
}

// assertAllInRotation checks that no server of the app backend is left
// drained or in maintenance.
func (f *fleet) assertAllInRotation() {
	f.t.Helper()
	ss, err := f.haproxyServers(ctxT(f.t))
	if err != nil {
		f.t.Fatal(err)
	}
	for _, s := range ss {
		if s.admin&(0x23|0x18) != 0 {
			f.t.Errorf("server %s (%s) left with admin state %#x (drain or maint) after the run", s.name, s.addr, s.admin)
		}
	}
}

// TestHAProxyCanaryHitless is acceptance 1: a canary 5 → 25 → 100 on four
// hosts behind a real HAProxy under probe traffic; at every step the
// weights HAProxy reports give the candidate the step's share, the gate
// measures from HAProxy's own counters and log, and not one probe
// request fails.
func TestHAProxyCanaryHitless(t *testing.T) {
	f := newFleet(t, fleetOpts{hosts: 4, router: "haproxy", env: canaryEnv + `    probe: {url: "PROXY_URL/", rate: 100}
`})
	f.resumeWhenInconclusive(10)
	f.live("v1", knobs{})

	type seen struct {
		weight, share float64
		servers       string
		err           error
	}
	var mu sync.Mutex
	var shares []seen
	stop := f.hub.Watch(context.Background(), func(ctx context.Context, e engine.Event) bool {
		if e.Type != engine.EvWeightSet || e.Weight == nil || e.Release != "v2" {
			return false
		}
		share, desc, err := f.haproxyShare(ctxT(t), "v2")
		mu.Lock()
		shares = append(shares, seen{*e.Weight, share, desc, err})
		mu.Unlock()
		return false
	})
	p := f.load(lbRate, 90*time.Second, nil)
	st := f.wait(f.deploy(f.build("v2", knobs{})))
	p.Stop()
	if st.Outcome != engine.OutcomeSucceeded {
		t.Fatalf("outcome %s (%s), want succeeded\n%s", st.Outcome, st.Err, f.rec.dump())
	}
	// The watcher sees the run's events a moment after they happened.
	want := []float64{5, 25, 100, 100}
	pollUntil(10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(shares) >= len(want) })
	stop()
	if st.Info.Traffic != "haproxy" || !strings.Contains(st.Info.TrafficAt, "HAProxy backend app") {
		t.Errorf("run info names the traffic layer %q (%q), want haproxy", st.Info.Traffic, st.Info.TrafficAt)
	}
	// Steps 5, 25, 100, then v2 alone (weight 0 = no candidate: v2 holds it all).
	mu.Lock()
	if len(shares) != len(want) {
		t.Errorf("saw %d weight changes %+v, want %d", len(shares), shares, len(want))
	}
	for i, s := range shares {
		if s.err != nil {
			t.Errorf("step %d: reading HAProxy: %v", i+1, s.err)
			continue
		}
		if i < len(want) && math.Abs(s.share-want[i]) > 0.5 {
			t.Errorf("weight set to %g%%: HAProxy gives v2 %.2f%% of the weight (%s), want %g%%", s.weight, s.share, s.servers, want[i])
		}
	}
	mu.Unlock()

	// The gate judged v2 from HAProxy's counters (requests, errors) and
	// its request log (p99).
	var judged, sampled float64
	for _, m := range journalSamples(t, f, st.Run) {
		if m.NoData || m.Requests < 5 {
			continue
		}
		judged++
		sampled += m.Requests
		if m.Release != "v2" || m.Errors != 0 || m.P99 <= 0 {
			t.Errorf("journaled sample %+v: want v2, no errors, a p99 from HAProxy's log", m)
		}
	}
	if judged < 4 {
		t.Errorf("%g judged samples, want 2 per analysed step", judged)
	}
	stats, err := f.rtr.Stats(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := float64(stats["v2"].Requests); got < sampled {
		t.Errorf("HAProxy counted %g requests for v2's servers, fewer than the %g the gate sampled", got, sampled)
	}

	rep := st.Report
	if rep.Probe == nil || rep.Probe.Requests == 0 || rep.Probe.Failed != 0 || !strings.HasPrefix(rep.Verdict, "HITLESS") {
		t.Errorf("report: verdict %q, probe %+v; want HITLESS with 0 failed", rep.Verdict, rep.Probe)
	}
	if lr := p.Snapshot(); lr.Total.Failed != 0 {
		t.Errorf("%d of %d load requests failed: %+v", lr.Total.Failed, lr.Total.Requests, lr.Total.Failures)
	}
	f.assertHostsOn("v2")
	f.assertAllInRotation()
	for rel, n := range f.hits(50, nil) {
		if rel != "v2" {
			t.Errorf("after the deploy, %d requests answered by %s", n, rel)
		}
	}
	t.Logf("haproxy canary: %s, probe %d requests (p99 %s), v2 shares seen %+v", st.Finished.Sub(st.Started).Round(time.Millisecond),
		rep.Probe.Requests, rep.Probe.P99, shares)
}

// TestHAProxyBadCanaryRollsBack is acceptance 2: a release answering 5 %
// errors is rolled back by the gate (actor auto) from HAProxy's counters,
// with the measurements in the journal, and no server is left out.
func TestHAProxyBadCanaryRollsBack(t *testing.T) {
	f := newFleet(t, fleetOpts{hosts: 4, router: "haproxy", env: canaryEnv})
	f.resumeWhenInconclusive(10)
	f.live("v1", knobs{})
	p := f.load(lbRate, 90*time.Second, nil)
	st := f.wait(f.deploy(f.build("v2", knobs{FailEvery: 20})))
	p.Stop()
	assertBadCanaryRolledBack(t, f, st)
	f.assertAllInRotation()
	share, desc, err := f.haproxyShare(ctxT(t), "v1")
	if err != nil || share != 100 {
		t.Errorf("after the rollback HAProxy gives v1 %.1f%% of the weight (%s, %v), want 100%%", share, desc, err)
	}
}

// TestHAProxyBlueGreenFlipBack is acceptance 3's first half: blue/green
// through HAProxy, flip and flip back (a rollback run) under load, with
// no failed request.
func TestHAProxyBlueGreenFlipBack(t *testing.T) {
	f := newFleet(t, fleetOpts{hosts: 2, slots: true, router: "haproxy", env: `    strategy: {kind: bluegreen}
    probe: {url: "PROXY_URL/", rate: 50}
`})
	f.live("v1", knobs{})
	p := f.load(lbRate, 90*time.Second, nil)
	waitServed(t, p, "v1", 200)
	st := f.wait(f.deploy(f.build("v2", knobs{})))
	if st.Outcome != engine.OutcomeSucceeded {
		t.Fatalf("deploy: outcome %s (%s)\n%s", st.Outcome, st.Err, f.rec.dump())
	}
	if share, desc, _ := f.haproxyShare(ctxT(t), "v2"); share != 100 {
		t.Errorf("after the flip HAProxy gives v2 %.1f%% (%s), want 100%%", share, desc)
	}
	waitServed(t, p, "v2", 200)
	back := f.wait(f.rollback("v1"))
	if back.Outcome != engine.OutcomeSucceeded {
		t.Fatalf("rollback: outcome %s (%s)\n%s", back.Outcome, back.Err, f.rec.dump())
	}
	f.assertHostsOn("v1")
	if share, desc, _ := f.haproxyShare(ctxT(t), "v1"); share != 100 {
		t.Errorf("after the flip back HAProxy gives v1 %.1f%% (%s), want 100%%", share, desc)
	}
	waitServed(t, p, "v1", 200)
	p.Stop()
	rep := p.Snapshot()
	if rep.Total.Failed != 0 {
		t.Errorf("%d of %d requests failed across flip and flip back: %+v", rep.Total.Failed, rep.Total.Requests, rep.Total.Failures)
	}
	if rp := st.Report.Probe; rp == nil || rp.Requests == 0 || rp.Failed != 0 {
		t.Errorf("deploy report %q, probe %+v; want 0 failed", st.Report.Verdict, rp)
	}
	f.assertAllInRotation() // the old colour stays warm: ready, weight 0
	t.Logf("haproxy blue/green: %d requests, 0 failed (v1 %d, v2 %d); rollback RTO %s",
		rep.Total.Requests, rep.Releases["v1"].Requests, rep.Releases["v2"].Requests, back.Report.RTO.Round(time.Millisecond))
}

// TestHAProxyABCohort is acceptance 3's second half: an A/B cohort
// (X-Beta: 1) reaches only the new release through HAProxy's cohort map;
// everyone else stays on the old one; a rollback clears the map.
func TestHAProxyABCohort(t *testing.T) {
	f := newFleet(t, fleetOpts{hosts: 2, slots: true, router: "haproxy", cohortHeader: "X-Beta", env: `    strategy:
      kind: ab
      auto_promote: false
      cohort: {header: X-Beta, value: "1"}
    gate: {error_rate: 0.1%, p99: 10s, interval: 500ms, count: 1, min_requests: 1}
`})
	beta := map[string]string{"X-Beta": "1"}
	f.live("v1", knobs{})
	cohort := f.load(50, 90*time.Second, beta)
	done := f.deploy(f.build("v2", knobs{}))
	f.rec.waitFor(t, "the cohort rule", func(e engine.Event) bool {
		return e.Type == engine.EvCohortSet && e.Weight != nil && *e.Weight > 0
	})
	if got := f.hits(60, beta); got["v2"] != 60 {
		t.Errorf("cohort requests answered by %v, want all 60 by v2", got)
	}
	if got := f.hits(60, map[string]string{"X-Beta": "0"}); got["v1"] != 60 {
		t.Errorf("requests with another X-Beta value answered by %v, want all 60 by v1", got)
	}
	if got := f.hits(60, nil); got["v1"] != 60 {
		t.Errorf("requests outside the cohort answered by %v, want all 60 by v1", got)
	}
	f.rec.waitFor(t, "the wait for an operator", func(e engine.Event) bool {
		return e.Type == engine.EvNotice && strings.Contains(e.Message, "waiting for an operator to promote")
	})
	f.send(engine.Command{Kind: engine.CmdRollback, Actor: operator, Reason: "beta users report a bug"})
	st := f.wait(done)
	if st.Outcome != engine.OutcomeRolledBack {
		t.Fatalf("outcome %s (%s), want rolled_back\n%s", st.Outcome, st.Err, f.rec.dump())
	}
	if got := f.hits(60, beta); got["v1"] != 60 {
		t.Errorf("after the rollback, cohort requests answered by %v, want all by v1", got)
	}
	a, err := f.har.Runtime().Do(ctxT(t), "show map "+f.ha.Setup.Map())
	if err != nil || strings.TrimSpace(a[0]) != "" {
		t.Errorf("cohort map after the rollback: %q (%v), want empty", a, err)
	}
	cohort.Stop()
	if rep := cohort.Snapshot(); rep.Total.Failed != 0 || rep.Releases["v2"].Requests == 0 {
		t.Errorf("cohort load: %d of %d failed, %d answered by v2; want none failed and some on v2",
			rep.Total.Failed, rep.Total.Requests, rep.Releases["v2"].Requests)
	}
	f.assertAllInRotation()
}

// TestHAProxyDrainTimeoutLeavesNoServerDrained: a host whose drain times
// out (a request held longer than the plan's drain) fails before its
// switch; the rollback finds it still on the old release, so nothing in
// the host's own steps puts its server back. The run's end does: no
// server is left in drain, and the journal says so.
func TestHAProxyDrainTimeoutLeavesNoServerDrained(t *testing.T) {
	f := newFleet(t, fleetOpts{hosts: 2, router: "haproxy", routerExtra: ", drain: 500ms",
		env: "    strategy: {kind: canary, steps: [50, 100]}\n    gate: {error_rate: 1%, p99: 10s, interval: 500ms, count: 1, min_requests: 1}\n"})
	f.live("v1", knobs{})
	h1 := f.backends["h1"][0]
	defer close(h1.unhold)
	// Hold one request on h1 (the first host the canary switches).
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}}
	if err := pollUntil(20*time.Second, func() bool {
		go func() {
			if resp, err := hc.Get(f.proxyURL + "/hold"); err == nil {
				resp.Body.Close()
			}
		}()
		return pollUntil(200*time.Millisecond, func() bool { return h1.held.Load() > 0 }) == nil
	}); err != nil {
		t.Fatal("no request held on h1")
	}
	st := f.wait(f.deploy(f.build("v2", knobs{})))
	if st.Outcome == engine.OutcomeSucceeded {
		t.Fatalf("the run succeeded although h1's drain timed out\n%s", f.rec.dump())
	}
	failed := false
	back := false
	for _, e := range ofType(f.rec.events(), st.Run, engine.EvHostPhase, engine.EvNotice) {
		failed = failed || (e.Host == "h1" && e.Phase == engine.PhaseFailed && strings.Contains(e.Error, "drain timed out"))
		back = back || strings.Contains(e.Message, "drained by this run and not put back by its host, returns to rotation")
	}
	if !failed || !back {
		t.Errorf("journal: h1 failed its drain %v, its server put back at the end %v\n%s", failed, back, f.rec.dump())
	}
	f.assertHostsOn("v1")
	f.assertAllInRotation()
}

// TestHAProxyReloadMidCanary reloads HAProxy while a canary waits at 50 %:
// HAProxy forgets the weights; the run's watcher puts them back and the
// journal says so; the canary then finishes.
func TestHAProxyReloadMidCanary(t *testing.T) {
	f := newFleet(t, fleetOpts{hosts: 2, router: "haproxy", env: `    strategy: {kind: canary, steps: [50, 100], auto_promote: false}
    gate: {error_rate: 1%, p99: 10s, interval: 500ms, count: 1, min_requests: 1}
`})
	f.resumeWhenInconclusive(10)
	f.live("v1", knobs{})
	p := f.load(100, 90*time.Second, nil)
	done := f.deploy(f.build("v2", knobs{}))
	f.rec.waitFor(t, "the wait for an operator", func(e engine.Event) bool {
		return e.Type == engine.EvNotice && strings.Contains(e.Message, "waiting for an operator to promote")
	})
	if share, desc, err := f.haproxyShare(ctxT(t), "v2"); err != nil || math.Abs(share-50) > 0.5 {
		t.Fatalf("before the reload v2 has %.1f%% (%s, %v), want 50%%", share, desc, err)
	}
	if err := f.ha.Reload(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	note := f.rec.waitFor(t, "the re-applied route", func(e engine.Event) bool {
		return e.Type == engine.EvNotice && strings.Contains(e.Message, "restarted or reloaded")
	})
	if !strings.Contains(note.Message, "re-applied route v1 + v2 at 50%") {
		t.Errorf("notice %q does not say what was re-applied", note.Message)
	}
	if share, desc, err := f.haproxyShare(ctxT(t), "v2"); err != nil || math.Abs(share-50) > 0.5 {
		t.Errorf("after the reload v2 has %.1f%% (%s, %v), want 50%% again", share, desc, err)
	}
	evs, err := engine.ReadJournal(f.eng.StateDir, note.Run)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(evs, func(e engine.Event) bool { return e.Type == engine.EvNotice && e.Message == note.Message }) {
		t.Error("the re-application is not in the run's journal")
	}
	f.send(engine.Command{Kind: engine.CmdPromote, Actor: owner, Reason: "after the reload"})
	st := f.wait(done)
	p.Stop()
	if st.Outcome != engine.OutcomeSucceeded {
		t.Fatalf("outcome %s (%s)\n%s", st.Outcome, st.Err, f.rec.dump())
	}
	f.assertHostsOn("v2")
	f.assertAllInRotation()
	if rep := p.Snapshot(); rep.Total.Failed != 0 {
		t.Errorf("%d of %d requests failed across the reload", rep.Total.Failed, rep.Total.Requests)
	}
}
