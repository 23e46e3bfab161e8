package traffictest

import (
	"testing"
	"time"

	"flightdeck/engine"
)

// TestRollbackFromFullCanary: a canary rolled back once every host runs
// the new release (the gate failing at 100 %, or an operator's r) sends
// all traffic back to a release that, for a moment, has no backend: its
// hosts come back one by one. Until the first does, the new release's
// backends keep serving, whatever the traffic layer (nginx refuses an
// upstream of backup servers only; HAProxy would answer 503), and the
// rollback ends with every host on v1 and no request lost.
func TestRollbackFromFullCanary(t *testing.T) {
	for _, kind := range []string{"flightdeck", "haproxy", "nginx"} {
		t.Run(kind, func(t *testing.T) {
			f := newFleet(t, fleetOpts{hosts: 3, router: kind, env: canaryEnv + `    probe: {url: "PROXY_URL/", rate: 100}
`})
			f.resumeWhenInconclusive(10)
			f.live("v1", knobs{})
			p := f.load(lbRate, 90*time.Second, nil)
			done := f.deploy(f.build("v2", knobs{}))
			f.rec.waitFor(t, "all traffic on v2", func(e engine.Event) bool {
				return e.Type == engine.EvWeightSet && e.Release == "v2" && e.Weight != nil && *e.Weight == 100
			})
			f.send(engine.Command{Kind: engine.CmdRollback, Actor: operator, Reason: "found a bug at 100%"})
			st := f.wait(done)
			p.Stop()
			if st.Outcome != engine.OutcomeRolledBack {
				t.Fatalf("outcome %s (%s), want rolled_back\n%s", st.Outcome, st.Err, f.rec.dump())
			}
			f.assertHostsOn("v1")
			if rp := st.Report.Probe; rp == nil || rp.Requests == 0 || rp.Failed != 0 {
				t.Errorf("probe %+v, want none failed", rp)
			}
			if lr := p.Snapshot(); lr.Total.Failed != 0 {
				t.Errorf("%d of %d load requests failed: %+v", lr.Total.Failed, lr.Total.Requests, lr.Total.Failures)
			}
		})
	}
}
