package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
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
	// drained are the backends this run drained and has not undrained.
	drained map[string]bool
}

func newTrafficCtl(ctx context.Context, rt Router) (*trafficCtl, error) {
	st, err := rt.State(ctx)
	if err != nil {
		return nil, fmt.Errorf("read router state: %w", err)
	}
	t := &trafficCtl{router: rt, pools: map[string][]string{}, drained: map[string]bool{}}
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

// drain takes addr out of rotation and waits for its requests (see
// Router.Drain); the run remembers it until undrain.
func (t *trafficCtl) drain(ctx context.Context, addr string, timeout time.Duration) error {
	t.mu.Lock()
	t.drained[addr] = true // even a drain that timed out left it drained
	t.mu.Unlock()
	return t.router.Drain(ctx, addr, timeout)
}

// undrain puts addr back into rotation after its health check.
func (t *trafficCtl) undrain(ctx context.Context, addr string) error {
	if err := t.router.Undrain(ctx, addr); err != nil {
		return err
	}
	t.mu.Lock()
	delete(t.drained, addr)
	t.mu.Unlock()
	return nil
}

// stillDrained returns the backends this run drained and did not undrain.
func (t *trafficCtl) stillDrained() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for a := range t.drained {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// undrainLeftovers runs as a run ends: a backend this run drained and did
// not put back (its host failed between drain and undrain) goes back into
// rotation, where it takes traffic only once its health check passes, so
// that no load balancer is left with a server drained. When the step says
// keep (a run that failed under on_failure: halt, which asks to stop where
// it is) they stay out; the events say so either way.
func (x *executor) undrainLeftovers(ctx context.Context, keep bool) []Event {
	if x.traffic == nil {
		return nil
	}
	left := x.traffic.stillDrained()
	if len(left) == 0 {
		return nil
	}
	now := time.Now()
	if keep {
		return []Event{{Type: EvNotice, Time: now, Message: fmt.Sprintf("%s stay drained: the run failed with on_failure: halt (undrain by hand once the host is fixed)", strings.Join(left, ", "))}}
	}
	var evs []Event
	for _, a := range left {
		if err := x.traffic.undrain(ctx, a); err != nil {
			evs = append(evs, Event{Type: EvNotice, Time: time.Now(), Error: fmt.Sprintf("router: undrain %s, which this run drained: %v", a, err)})
			continue
		}
		evs = append(evs, Event{Type: EvNotice, Time: time.Now(), Message: fmt.Sprintf("%s, drained by this run and not put back by its host, returns to rotation once its health check passes", a)})
	}
	return evs
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
// pool) gets the new release. traffic is nil without a router.
func assignBackends(info *RunInfo, env *plan.Environment, traffic *trafficCtl) {
	for i := range info.Hosts {
		rh := &info.Hosts[i]
		var ph *plan.Host
		for _, h := range env.Hosts {
			if h.Name == rh.Name {
				ph = h
			}
		}
		if ph == nil {
			continue
		}
		if len(ph.Slots) == 0 || !slotStrategy(env) {
			rh.Backend, rh.OldBackend = ph.Backend, ph.Backend
			continue
		}
		var live Slot
		if traffic != nil {
			for _, colour := range []Slot{SlotBlue, SlotGreen} {
				if rel := traffic.releaseOf(ph.Slots[string(colour)]); rel != "" && rel == info.Previous {
					live = colour
				}
			}
		}
		rh.Slot = SlotBlue
		if live != "" {
			rh.Slot = live.Other()
			rh.OldBackend = ph.Slots[string(live)]
		}
		rh.Backend = ph.Slots[string(rh.Slot)]
	}
}

// standby starts the new release in the host's idle slot and waits until
// the router finds it healthy. Traffic does not reach it yet.
func (x *executor) standby(ctx context.Context, h Host, a Action) error {
	rh := x.runHost(h.Name())
	if rh.Backend == "" {
		return fmt.Errorf("host has no backend for slot %s", rh.Slot)
	}
	// Starting a slot is work on its host like a prepare, bounded by the
	// plan's parallel: every host's idle slot started at once is a burst
	// of process start-ups that, where hosts share cores (the demo's
	// fleet), starves the slots serving traffic meanwhile.
	select {
	case x.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-x.sem }()
	x.hostSend(h, Event{Type: EvHostPhase, Phase: PhaseRestart, Release: a.Release, Message: "starting slot " + string(rh.Slot)})
	if cmd := x.plan.Restart; cmd != "" {
		if err := x.exec(ctx, h, "restart", plan.Hook{Run: cmd}, a.Release, slotEnv(rh)); err != nil {
			return err
		}
	}
	x.hostSend(h, Event{Type: EvHostPhase, Phase: PhaseHealth, Release: a.Release, Message: "slot " + string(rh.Slot) + " at " + rh.Backend})
	x.observeHealth(ctx, h, rh.Backend)
	if x.traffic != nil {
		if err := x.traffic.move(ctx, rh.Backend, a.Release); err != nil {
			return err
		}
		if err := x.waitHealthy(ctx, rh.Backend); err != nil {
			return err
		}
	} else if err := x.health(ctx, h, rh.Backend, a.Release); err != nil {
		return err
	}
	// The slot is healthy but takes no traffic yet: the checks of the new release.
	if err := x.checkNewRelease(ctx, h, a, rh.Backend); err != nil {
		return err
	}
	x.hostSend(h, Event{Type: EvHostPhase, Phase: PhaseStandby, Release: a.Release, Message: "slot " + string(rh.Slot) + " healthy"})
	return nil
}

func slotEnv(rh RunHost) map[string]string {
	env := map[string]string{"SLOT": string(rh.Slot)}
	if _, port, err := net.SplitHostPort(rh.Backend); err == nil {
		env["PORT"] = port
	}
	return env
}

// route applies a traffic action through the router: a.Previous keeps the
// rest of the traffic, a.CohortOn says a cohort rule is in force.
func (x *executor) route(ctx context.Context, a Action) error {
	if x.fence != nil {
		if err := x.fence(ctx); err != nil {
			return fmt.Errorf("traffic not moved: %w", err)
		}
	}
	if x.traffic == nil {
		return errors.New("this strategy needs a router (plan: router.admin)")
	}
	next := x.info.Release
	if err := x.traffic.ensure(ctx, next, nil); err != nil {
		return err
	}
	if a.Cohort > 0 {
		rule := *x.info.Cohort
		rule.Release = next
		rule.Percent = a.Cohort
		if rule.Value != "" {
			rule.Percent = 0
		}
		if err := x.traffic.setCohorts(ctx, []CohortRule{rule}); err != nil {
			return err
		}
		x.send(routeWork, a, false, nil, Event{Type: EvCohortSet, Weight: ptr(a.Cohort), Release: next,
			Message: fmt.Sprintf("cohort %s → %s", describeCohort(rule), next)})
		return nil
	}
	if a.CohortOn {
		if err := x.traffic.setCohorts(ctx, nil); err != nil {
			return err
		}
		x.send(routeWork, a, false, nil, Event{Type: EvCohortSet, Weight: ptr(0.0), Message: "cohort dropped"})
	}
	prev := a.Previous
	route := Route{Stable: prev, Candidate: next, Weight: a.Weight}
	if prev == "" {
		route = Route{Stable: next}
	} else if err := x.traffic.ensure(ctx, prev, nil); err != nil {
		return err
	}
	if a.Weight == 0 && x.traffic.share(prev, next) > 0 {
		route.Candidate = ""
	}
	// Otherwise (a canary rolled back from 100 %: every host runs the
	// candidate until the first is reverted) the candidate stays in the
	// route at weight 0: the traffic layers send its share to the other
	// side while the stable release has nothing in rotation. Without it
	// they had nowhere to send requests (the router and HAProxy answered
	// 503; nginx refused an upstream of backup servers only).
	start := time.Now()
	if err := x.traffic.setRoute(ctx, route); err != nil {
		return err
	}
	msg := fmt.Sprintf("%g%% of traffic → %s", a.Weight, next)
	if a.Weight == 0 {
		msg = "all traffic → " + prev
	}
	x.send(routeWork, a, false, nil, Event{Type: EvWeightSet, Weight: ptr(a.Weight), Release: next,
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

// rebalance (rolling and symlink deploys, and rollback runs) splits
// traffic by capacity: the run's release gets the share of backends that
// run it, so no request waits for a pool that is being emptied.
func (x *executor) rebalance(ctx context.Context) error {
	info := x.info
	if info.Previous == "" || info.Previous == info.Release {
		return nil
	}
	w := x.traffic.share(info.Release, info.Previous)
	route := Route{Stable: info.Previous, Candidate: info.Release, Weight: w}
	if w == 0 {
		route.Candidate = ""
	}
	if err := x.traffic.setRoute(ctx, route); err != nil {
		return err
	}
	x.fact(Event{Type: EvWeightSet, Weight: ptr(w), Release: info.Release,
		Message: fmt.Sprintf("%.0f%% of traffic → %s (capacity)", w, info.Release)})
	return nil
}

// settleRoute makes rel the router's only stable release once every host
// serves it (cohortOn: drop the cohort rules too).
func (x *executor) settleRoute(ctx context.Context, rel string, cohortOn bool) []Event {
	if x.traffic == nil {
		return nil
	}
	if err := x.traffic.ensure(ctx, rel, nil); err != nil {
		return []Event{{Type: EvNotice, Error: "router: " + err.Error()}}
	}
	if err := x.traffic.setRoute(ctx, Route{Stable: rel}); err != nil {
		return []Event{{Type: EvNotice, Error: "router: " + err.Error()}}
	}
	if cohortOn {
		_ = x.traffic.setCohorts(ctx, nil)
	}
	return []Event{{Type: EvWeightSet, Weight: ptr(0.0), Release: rel, Message: "all traffic → " + rel + " (stable)"}}
}

func ptr[T any](v T) *T { return &v }
