package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"flightdeck/engine/plan"
)

// trafficCtl is the executor's side of the router: it knows which backends
// are in which release's pool and serialises every change to them.
type trafficCtl struct {
	mu     sync.Mutex
	router Router
	pools  map[string][]string
}

func newTrafficCtl(ctx context.Context, rt Router) (*trafficCtl, error) {
	st, err := rt.State(ctx)
	if err != nil {
		return nil, fmt.Errorf("read router state: %w", err)
	}
	t := &trafficCtl{router: rt, pools: map[string][]string{}}
	for _, b := range st.Backends {
		t.pools[b.Release] = append(t.pools[b.Release], b.Addr)
	}
	return t, nil
}

// releaseOf returns the release whose pool holds addr ("" when none).
func (t *trafficCtl) releaseOf(addr string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	for rel, addrs := range t.pools {
		if slices.Contains(addrs, addr) {
			return rel
		}
	}
	return ""
}

// move puts addr into release to's pool (and out of any other pool).
func (t *trafficCtl) move(ctx context.Context, addr, to string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for rel, addrs := range t.pools {
		if rel == to || !slices.Contains(addrs, addr) {
			continue
		}
		rest := slices.DeleteFunc(slices.Clone(addrs), func(a string) bool { return a == addr })
		if err := t.router.SetPool(ctx, rel, rest); err != nil {
			return fmt.Errorf("take %s out of %s's pool: %w", addr, rel, err)
		}
		t.pools[rel] = rest
	}
	if to == "" || slices.Contains(t.pools[to], addr) {
		return nil
	}
	next := append(slices.Clone(t.pools[to]), addr)
	if err := t.router.SetPool(ctx, to, next); err != nil {
		return fmt.Errorf("put %s into %s's pool: %w", addr, to, err)
	}
	t.pools[to] = next
	return nil
}

// ensure makes sure release rel has a pool (possibly empty).
func (t *trafficCtl) ensure(ctx context.Context, rel string, addrs []string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.pools[rel]; ok && len(addrs) == 0 {
		return nil
	}
	merged := slices.Clone(t.pools[rel])
	for _, a := range addrs {
		if !slices.Contains(merged, a) {
			merged = append(merged, a)
		}
	}
	if err := t.router.SetPool(ctx, rel, merged); err != nil {
		return fmt.Errorf("set %s's pool: %w", rel, err)
	}
	t.pools[rel] = merged
	return nil
}

// share is the percentage of backends serving rel among rel and other.
func (t *trafficCtl) share(rel, other string) float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, m := len(t.pools[rel]), len(t.pools[other])
	if n+m == 0 {
		return 0
	}
	return float64(n) / float64(n+m) * 100
}

func (t *trafficCtl) setRoute(ctx context.Context, r Route) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.router.SetRoute(ctx, r); err != nil {
		return fmt.Errorf("set route: %w", err)
	}
	return nil
}

func (t *trafficCtl) setCohorts(ctx context.Context, rules []CohortRule) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.router.SetCohorts(ctx, rules); err != nil {
		return fmt.Errorf("set cohorts: %w", err)
	}
	return nil
}

// slotStrategy reports whether the environment runs releases in host slots.
func slotStrategy(env *plan.Environment) bool {
	return env.Strategy.Kind == plan.BlueGreen || env.Strategy.Kind == plan.AB
}

// trafficStrategy reports whether the environment releases by moving traffic.
func trafficStrategy(env *plan.Environment) bool {
	k := env.Strategy.Kind
	return k == plan.Canary || k == plan.BlueGreen || k == plan.AB
}

// assignBackends fills each RunHost's backends: for slot strategies the
// idle colour (the slot whose backend is not in the previous release's
// pool) gets the new release.
func (r *Run) assignBackends(info *RunInfo) {
	for i := range info.Hosts {
		rh := &info.Hosts[i]
		var ph *plan.Host
		for _, h := range r.cfg.Env.Hosts {
			if h.Name == rh.Name {
				ph = h
			}
		}
		if ph == nil {
			continue
		}
		if len(ph.Slots) == 0 || !slotStrategy(r.cfg.Env) {
			rh.Backend, rh.OldBackend = ph.Backend, ph.Backend
			continue
		}
		live := ""
		if r.traffic != nil {
			for _, colour := range []string{"blue", "green"} {
				if rel := r.traffic.releaseOf(ph.Slots[colour]); rel != "" && rel == info.Previous {
					live = colour
				}
			}
		}
		rh.Slot = "blue"
		if live == "blue" {
			rh.Slot = "green"
		}
		rh.Backend = ph.Slots[rh.Slot]
		if live != "" {
			rh.OldBackend = ph.Slots[live]
		}
	}
}

func (r *Run) runHost(name string) RunHost {
	for _, h := range r.state.Info.Hosts {
		if h.Name == name {
			return h
		}
	}
	return RunHost{Name: name}
}

// doStandby starts the new release in the host's idle slot and waits until
// the router finds it healthy. Traffic does not reach it yet.
func (r *Run) doStandby(ctx context.Context, h Host, a Action) error {
	rh := r.runHost(h.Name())
	if rh.Backend == "" {
		return fmt.Errorf("host has no backend for slot %s", rh.Slot)
	}
	if err := r.migrate(ctx, h, a.Release); err != nil {
		return err
	}
	r.send(h.Name(), false, Event{Type: EvHostPhase, Phase: PhaseRestart, Release: a.Release, Message: "starting slot " + rh.Slot})
	if cmd := r.cfg.Plan.Restart; cmd != "" {
		if err := r.exec(ctx, h, "restart", plan.Hook{Run: cmd}, a.Release, slotEnv(rh)); err != nil {
			return err
		}
	}
	r.send(h.Name(), false, Event{Type: EvHostPhase, Phase: PhaseHealth, Release: a.Release, Message: "slot " + rh.Slot + " at " + rh.Backend})
	r.observeHealth(ctx, rh.Backend)
	if r.traffic != nil {
		if err := r.traffic.move(ctx, rh.Backend, a.Release); err != nil {
			return err
		}
		if err := r.waitHealthy(ctx, rh.Backend); err != nil {
			return err
		}
	} else if err := r.health(ctx, h, rh.Backend, a.Release); err != nil {
		return err
	}
	// The slot is healthy but takes no traffic yet: smoke-test it.
	if err := r.runSmoke(ctx, h, rh.Backend, a.Release); err != nil {
		return err
	}
	r.checkCacheNamespace(ctx, rh.Backend, a.Release)
	r.send(h.Name(), false, Event{Type: EvHostPhase, Phase: PhaseStandby, Release: a.Release, Message: "slot " + rh.Slot + " healthy"})
	return nil
}

func slotEnv(rh RunHost) map[string]string {
	env := map[string]string{"SLOT": rh.Slot}
	if _, port, err := net.SplitHostPort(rh.Backend); err == nil {
		env["PORT"] = port
	}
	return env
}

func (r *Run) waitHealthy(ctx context.Context, addr string) error {
	hctx, cancel := context.WithTimeout(ctx, r.healthTimeout())
	defer cancel()
	if err := r.cfg.Router.WaitHealthy(hctx, addr); err != nil {
		return fmt.Errorf("health of %s: %w", addr, err)
	}
	return nil
}

// doRoute applies a traffic action through the router.
// prev is the release that keeps the rest of the traffic; cohortOn says
// whether a cohort rule is in force. Both are read by the run loop.
func (r *Run) doRoute(ctx context.Context, a Action, prev string, cohortOn bool) error {
	if r.traffic == nil {
		return errors.New("this strategy needs a router (plan: router.admin)")
	}
	info := r.state.Info
	next := info.Release
	if err := r.traffic.ensure(ctx, next, nil); err != nil {
		return err
	}
	if a.Cohort > 0 {
		rule := *info.Cohort
		rule.Release = next
		rule.Percent = a.Cohort
		if rule.Value != "" {
			rule.Percent = 0
		}
		if err := r.traffic.setCohorts(ctx, []CohortRule{rule}); err != nil {
			return err
		}
		r.send("", false, Event{Type: EvCohortSet, Weight: ptr(a.Cohort), Release: next,
			Message: fmt.Sprintf("cohort %s → %s", describeCohort(rule), next)})
		return nil
	}
	if cohortOn {
		if err := r.traffic.setCohorts(ctx, nil); err != nil {
			return err
		}
		r.send("", false, Event{Type: EvCohortSet, Weight: ptr(0.0), Message: "cohort dropped"})
	}
	route := Route{Stable: prev, Candidate: next, Weight: a.Weight}
	if prev == "" {
		route = Route{Stable: next}
	} else if err := r.traffic.ensure(ctx, prev, nil); err != nil {
		return err
	}
	if a.Weight == 0 {
		route.Candidate = ""
	}
	start := time.Now()
	if err := r.traffic.setRoute(ctx, route); err != nil {
		return err
	}
	msg := fmt.Sprintf("%g%% of traffic → %s", a.Weight, next)
	if a.Weight == 0 {
		msg = "all traffic → " + prev
	}
	r.send("", false, Event{Type: EvWeightSet, Weight: ptr(a.Weight), Release: next,
		Message: fmt.Sprintf("%s (applied in %s)", msg, time.Since(start).Round(time.Microsecond))})
	return nil
}

func describeCohort(c CohortRule) string {
	attr := "header " + c.Header
	if c.Cookie != "" {
		attr = "cookie " + c.Cookie
	}
	if c.Value != "" {
		return fmt.Sprintf("%s = %q", attr, c.Value)
	}
	return fmt.Sprintf("%g%% of %s", c.Percent, attr)
}

// doMeasure takes one gate measurement of the new release.
func (r *Run) doMeasure(ctx context.Context, a Action) {
	g := r.gate
	until := time.Now().Add(g.Interval)
	r.send("", false, Event{Type: EvWaiting, Until: until, Wave: a.Wave,
		Message: fmt.Sprintf("measuring step %d for %s", a.Wave, g.Interval)})
	var res GateResult
	m, err := r.cfg.Metrics.Measure(ctx, a.Release, g.Interval)
	if ctx.Err() != nil {
		r.send(keyGate, true) // cancelled by a rollback: no verdict
		return
	}
	if err != nil {
		res = GateResult{Step: a.Wave, Verdict: VerdictInconclusive, Reason: "measurement failed: " + err.Error()}
		if g.NoData == "fail" {
			res.Verdict = VerdictFail
		}
	} else {
		m.Release = a.Release
		res = g.Evaluate(a.Wave, m)
	}
	r.send("", false, Event{Type: EvMetricSample, Release: a.Release, Sample: &m, Wave: a.Wave},
		Event{Type: EvGateResult, Release: a.Release, Gate: &res, Wave: a.Wave})
	r.send(keyGate, true) // the measurement is no longer in flight
}

func ptr[T any](v T) *T { return &v }

// rollingBack reports (from any goroutine) whether the latest published
// snapshot shows a rollback in progress or the run finished.
func (r *Run) rollingBack() bool {
	st := r.cfg.Hub.Snapshot()
	return st != nil && st.Run == r.id && (st.Status == StatusRollingBack || st.Status == StatusFinished)
}

// watchAutoRollback issues a rollback (actor auto) when the new release
// breaks the trigger's thresholds over its window.
func (r *Run) watchAutoRollback(ctx context.Context, release string) {
	ar := r.cfg.Env.AutoRollback
	window := ar.For.Duration
	pause := func() {
		select {
		case <-ctx.Done():
		case <-time.After(window):
		}
	}
	for ctx.Err() == nil {
		m, err := r.cfg.Metrics.Measure(ctx, release, window)
		if err != nil {
			pause() // a failing source is asked again after a window, not in a loop
			continue
		}
		if m.NoData || m.Requests == 0 {
			continue
		}
		var why string
		switch {
		case ar.ErrorRate.Set && m.ErrorRate*100 > ar.ErrorRate.Value:
			why = fmt.Sprintf("error rate %.2f%% > %g%% for %s", m.ErrorRate*100, ar.ErrorRate.Value, window)
		case ar.P99.Duration > 0 && m.P99 > ar.P99.Duration:
			why = fmt.Sprintf("p99 %s > %s for %s", m.P99.Round(time.Millisecond), ar.P99.Duration, window)
		}
		if why == "" {
			continue
		}
		// The measurement that fired the trigger is journaled with its values.
		m.Release = release
		r.send("#trigger", false, Event{Type: EvMetricSample, Release: release, Sample: &m, Message: "auto-rollback trigger: " + why})
		err = r.Send(ctx, Command{Kind: CmdRollback, Actor: AutoActor, Reason: "auto-rollback trigger: " + why})
		if err == nil || errors.Is(err, ErrNoRun) || r.rollingBack() {
			return
		}
		pause()
	}
}
