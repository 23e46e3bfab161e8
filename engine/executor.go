package engine

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"flightdeck/engine/plan"
)

// executor performs a run's I/O on its hosts and its router: the actions
// the step asks for. It decides nothing; it reports what happened (phases,
// output, observations, errors) as inputs for the step.
type executor struct {
	plan     *plan.Plan
	env      *plan.Environment
	artifact *Artifact
	hosts    map[string]Host
	order    []Host // plan order
	backends map[string]string
	router   Router
	metrics  MetricsSource
	traffic  *trafficCtl
	// info is the run as it started; it never changes.
	info  RunInfo
	actor Actor
	// sem bounds the hosts worked on at once (prepare, inspect, prune,
	// starting an idle slot).
	sem chan struct{}
	// verifySem bounds, as sem does, the hosts whose rollback path is
	// verified at once, beside the prepares: a verification reads only,
	// and a host's prepare links from the release it is verifying (the
	// layout lets the prepare wait for that check rather than read the
	// release again), so the verifications must not queue behind the
	// prepares that hold every slot of sem.
	verifySem chan struct{}
	// report hands an input to the run loop.
	report func(input)
	// fence returns nil while the environment's lock is surely ours.
	fence func(context.Context) error
	// targetChecked: the rollback target was checked complete on every host
	// just before the run started (a switch to it need not list it again).
	targetChecked bool
	// surveyUsedMu guards surveyUsed: the hosts whose revert took what the
	// run's start found on them (info.Hosts) instead of inspecting them
	// again, once each (see takeSurveyed).
	surveyUsedMu sync.Mutex
	surveyUsed   map[string]bool

	// preparedMu guards prepared: when each host's Prepare of the artifact
	// returned (a successful Prepare leaves the release complete: it
	// checked what it wrote), for a deploy's switch to tell whether the
	// release was checked just before.
	preparedMu sync.Mutex
	prepared   map[string]time.Time
	// now is the run's clock.
	now func() time.Time
}

// preparedFresh is how long after its own successful Prepare a deploy
// switches a host without listing the release again: the prepare checked
// every file it wrote a moment before. A switch later than that (a wave
// paused, a slow fleet), or after a hook that ran on the host between the
// two, checks the release as any switch does.
const preparedFresh = 30 * time.Second

// notePrepared records that h's Prepare of the artifact just succeeded.
func (x *executor) notePrepared(h Host) {
	x.preparedMu.Lock()
	defer x.preparedMu.Unlock()
	if x.prepared == nil {
		x.prepared = map[string]time.Time{}
	}
	x.prepared[h.Name()] = x.now()
}

// justPrepared says whether this run's Prepare of release on h succeeded
// less than preparedFresh ago, with no hook run on the host since.
func (x *executor) justPrepared(h Host, release string) bool {
	if x.artifact == nil || release != x.artifact.ID ||
		len(x.plan.Hooks.AfterPrepare) > 0 || len(x.plan.Hooks.BeforeSwitch) > 0 {
		return false
	}
	x.preparedMu.Lock()
	at, ok := x.prepared[h.Name()]
	x.preparedMu.Unlock()
	return ok && x.now().Sub(at) < preparedFresh
}

// flip runs a deploy's before_switch hooks, records the host's switch and
// makes it. A deploy's switch to a release the host's own Prepare checked
// a moment ago does not list it again (info.Checked), and its record says
// so.
func (x *executor) flip(ctx context.Context, h Host, a Action, phase Phase, deploy bool, info SwitchInfo) error {
	if deploy {
		if err := x.runHooks(ctx, h, "before_switch", x.plan.Hooks.BeforeSwitch, a.Release); err != nil {
			return err
		}
	}
	ev := Event{Type: EvHostPhase, Phase: phase, Release: a.Release}
	if deploy && x.justPrepared(h, a.Release) {
		info.Checked = true
		ev.Message = "checked by this run's prepare, not listed again"
	}
	if err := x.beforeSwitch(ctx, h, ev); err != nil {
		return err
	}
	if err := h.Switch(ctx, info); err != nil {
		return fmt.Errorf("switch to %s: %w", a.Release, err)
	}
	return nil
}

// SwitchKind says why a host's current link is switched.
type SwitchKind string

// Switch kinds (the action of a revisions.log line).
const (
	SwitchDeploy   SwitchKind = "deploy"
	SwitchRollback SwitchKind = "rollback"
)

// send reports events (and, with done, the end) of work k doing a.
func (x *executor) send(k WorkKey, a Action, done bool, err error, evs ...Event) {
	now := time.Now()
	for i := range evs {
		if evs[i].Host == "" && k.Kind == WorkHost {
			evs[i].Host = k.Host
		}
		if evs[i].Time.IsZero() {
			evs[i].Time = now
		}
	}
	x.report(workInput{results: []workResult{{key: k, action: a, events: evs, err: err, done: done}}})
}

// beforeSwitch reports a host's switching phase and waits until the run
// loop has journaled it, then fences on the environment's lock: no host is
// switched without a committed record, nor once the lock may no longer be
// ours.
func (x *executor) beforeSwitch(ctx context.Context, h Host, ev Event) error {
	ev.Host = h.Name()
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	committed := make(chan error, 1)
	x.report(committedInput{work: workInput{results: []workResult{{key: hostWork(h.Name()), events: []Event{ev}}}},
		replies: []chan<- error{committed}})
	if err := <-committed; err != nil {
		return fmt.Errorf("not switched: its record was not journaled: %w", err)
	}
	if x.fence == nil {
		return nil
	}
	if err := x.fence(ctx); err != nil {
		return fmt.Errorf("not switched: %w", err)
	}
	return nil
}

// fact reports events that belong to no work in flight.
func (x *executor) fact(evs ...Event) { x.send(WorkKey{}, Action{}, false, nil, evs...) }

// hostSend reports the events of a host's work in progress.
func (x *executor) hostSend(h Host, evs ...Event) {
	x.send(hostWork(h.Name()), Action{}, false, nil, evs...)
}

// do performs one action and reports it done.
func (x *executor) do(ctx context.Context, a Action) {
	switch a.Kind {
	case ActPrepare, ActSwitch, ActRevert, ActStandby:
		x.hostAction(ctx, a)
	case ActRoute:
		err := x.route(ctx, a)
		x.send(routeWork, a, true, err)
	case ActMigrate:
		x.migrate(ctx, a)
	case ActVerify:
		x.send(verifyWork, a, true, x.verifyRollbackPath(ctx))
	}
}

// hostAction performs one host's work. A failure is reported at once (so
// that the step can react) before the on_failure hooks run.
func (x *executor) hostAction(ctx context.Context, a Action) {
	k := hostWork(a.Host)
	h := x.hosts[a.Host]
	var err error
	switch a.Kind {
	case ActPrepare:
		err = x.prepare(ctx, h, a)
	case ActSwitch:
		err = x.switchHost(ctx, h, a, SwitchDeploy)
	case ActRevert:
		err = x.revert(ctx, h, a)
	case ActStandby:
		err = x.standby(ctx, h, a)
	}
	if err != nil {
		x.send(k, a, false, err)
		if hooks := x.plan.Hooks.OnFailure; len(hooks) > 0 {
			_ = x.runHooks(ctx, h, "on_failure", hooks, a.Release)
		}
	}
	x.send(k, a, true, nil)
}

func (x *executor) prepare(ctx context.Context, h Host, a Action) error {
	select {
	case x.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-x.sem }()
	x.hostSend(h, Event{Type: EvHostPhase, Phase: PhasePreparing, Release: a.Release})
	if err := x.runHooks(ctx, h, "before_prepare", x.plan.Hooks.BeforePrepare, a.Release); err != nil {
		return err
	}
	var (
		mu   sync.Mutex
		last Progress
	)
	err := h.Prepare(ctx, x.artifact, func(p Progress) {
		mu.Lock()
		last = p
		mu.Unlock()
		x.hostSend(h, Event{Type: EvHostPhase, Phase: PhasePreparing, Release: a.Release, Progress: &p})
	})
	if err != nil {
		return fmt.Errorf("prepare %s: %w", a.Release, err)
	}
	x.notePrepared(h)
	if err := x.runHooks(ctx, h, "after_prepare", x.plan.Hooks.AfterPrepare, a.Release); err != nil {
		return err
	}
	mu.Lock()
	final := last
	mu.Unlock()
	x.hostSend(h, Event{Type: EvHostPhase, Phase: PhasePrepared, Release: a.Release, Progress: &final,
		Message: fmt.Sprintf("%d files, %s sent", final.FilesTotal, humanBytes(final.BytesSent))})
	return nil
}

// switchHost takes a host through drain → before_switch → switch →
// restart → health → undrain → after_switch. In a slot strategy the
// release already runs in the host's slot (or the old colour is still
// warm), so only the current link flips.
func (x *executor) switchHost(ctx context.Context, h Host, a Action, kind SwitchKind) error {
	name := h.Name()
	rh := x.runHost(name)
	deploy := kind == SwitchDeploy
	phase := PhaseSwitching
	if !deploy {
		phase = PhaseReverting
	}
	info := SwitchInfo{Release: a.Release, Previous: rh.Current, Actor: x.switchActor(kind), Action: kind,
		Checked: !deploy && x.targetChecked && x.info.Kind == KindRollback && a.Release == x.info.Release}
	if !deploy && x.info.Kind == KindDeploy {
		info.Previous = x.info.Release // the release this run is taking back
	}
	if slotStrategy(x.env) && rh.Slot != "" {
		if err := x.flip(ctx, h, a, phase, deploy, info); err != nil {
			return err
		}
		if deploy {
			if err := x.runHooks(ctx, h, "after_switch", x.plan.Hooks.AfterSwitch, a.Release); err != nil {
				return err
			}
			x.hostSend(h, Event{Type: EvHostPhase, Phase: PhaseLive, Release: a.Release})
		}
		return nil
	}
	backend := rh.Backend
	if backend == "" {
		backend = x.backends[name]
	}
	routed := x.traffic != nil && backend != ""
	if routed && x.traffic.releaseOf(backend) != "" {
		x.hostSend(h, Event{Type: EvHostPhase, Phase: PhaseDraining, Release: a.Release})
		if err := x.traffic.drain(ctx, backend, x.drainTimeout()); err != nil {
			return fmt.Errorf("drain %s: %w", backend, err)
		}
	}
	if err := x.flip(ctx, h, a, phase, deploy, info); err != nil {
		return err
	}
	if cmd := x.plan.Restart; cmd != "" {
		x.hostSend(h, Event{Type: EvHostPhase, Phase: PhaseRestart, Release: a.Release})
		if err := x.exec(ctx, h, "restart", plan.Hook{Run: cmd, Timeout: x.plan.RestartTimeout}, a.Release, slotEnv(RunHost{Backend: backend})); err != nil {
			return err
		}
		if deploy {
			x.observeHealth(ctx, h, backend)
		}
	}
	if deploy && backend != "" {
		// Before the host takes traffic: smoke tests and the cache namespace.
		if a.Smoke || a.CacheCheck {
			if err := x.waitReady(ctx, h, backend); err != nil {
				return err
			}
		}
		if err := x.checkNewRelease(ctx, h, a, backend); err != nil {
			return err
		}
	}
	if routed {
		x.hostSend(h, Event{Type: EvHostPhase, Phase: PhaseHealth, Release: a.Release})
		if err := x.traffic.move(ctx, backend, a.Release); err != nil {
			return err
		}
		if err := x.traffic.undrain(ctx, backend); err != nil {
			return fmt.Errorf("undrain %s: %w", backend, err)
		}
		if err := x.waitHealthy(ctx, backend); err != nil {
			return err
		}
		if a.Rebalance {
			if err := x.rebalance(ctx); err != nil {
				return err
			}
		}
	} else if err := x.health(ctx, h, backend, a.Release); err != nil {
		return err
	}
	if deploy {
		if err := x.runHooks(ctx, h, "after_switch", x.plan.Hooks.AfterSwitch, a.Release); err != nil {
			return err
		}
		x.hostSend(h, Event{Type: EvHostPhase, Phase: PhaseLive, Release: a.Release})
	}
	return nil
}

// checkNewRelease runs the checks the step gave this host's work against
// the new release before it takes traffic: the smoke tests (a failing one
// fails the host) and the cache namespace.
func (x *executor) checkNewRelease(ctx context.Context, h Host, a Action, backend string) error {
	if a.Smoke {
		if err := x.runSmoke(ctx, h, backend, a.Release); err != nil {
			return err
		}
	}
	if a.CacheCheck {
		x.checkCacheNamespace(ctx, h, backend, a.Release)
	}
	return nil
}

func (x *executor) revert(ctx context.Context, h Host, a Action) error {
	st, ok := x.takeSurveyed(h.Name(), a)
	if !ok {
		var err error
		if st, err = h.Inspect(ctx); err != nil {
			return fmt.Errorf("inspect before rollback: %w", err)
		}
	}
	if st.Current == a.Release {
		x.hostSend(h, Event{Type: EvHostPhase, Phase: PhaseReverted, Release: a.Release, Message: "already on " + a.Release})
		return nil
	}
	found := false
	for _, id := range st.Releases {
		found = found || id == a.Release
	}
	if !found {
		return fmt.Errorf("release %s is not on this host (it has %s)", a.Release, strings.Join(st.Releases, ", "))
	}
	if err := x.switchHost(ctx, h, a, SwitchRollback); err != nil {
		return err
	}
	if err := x.runHooks(ctx, h, "after_rollback", x.plan.Hooks.AfterRollback, a.Release); err != nil {
		return err
	}
	x.hostSend(h, Event{Type: EvHostPhase, Phase: PhaseReverted, Release: a.Release})
	return nil
}

// takeSurveyed returns, once per host, what the start of this rollback
// run found on it (info.Hosts), when a is the host's revert to the run's
// target and this process checked that target at the start
// (targetChecked, so info comes from this process's survey, not from a
// journal being resumed): the run has held the environment's lock since,
// and no other action of the run touched the host before its revert. A
// second revert of the host (a retry) inspects it again.
func (x *executor) takeSurveyed(host string, a Action) (HostStatus, bool) {
	if !x.targetChecked || x.info.Kind != KindRollback || a.Release != x.info.Release {
		return HostStatus{}, false
	}
	x.surveyUsedMu.Lock()
	defer x.surveyUsedMu.Unlock()
	if x.surveyUsed[host] {
		return HostStatus{}, false
	}
	if x.surveyUsed == nil {
		x.surveyUsed = map[string]bool{}
	}
	x.surveyUsed[host] = true
	rh := x.runHost(host)
	return HostStatus{Current: rh.Current, Releases: rh.Releases}, true
}

// runHost is the host as the run started.
func (x *executor) runHost(name string) RunHost {
	for _, h := range x.info.Hosts {
		if h.Name == name {
			return h
		}
	}
	return RunHost{Name: name}
}

// previousOf is the host's release before the run.
func (x *executor) previousOf(host string) string { return x.runHost(host).Current }

// switchActor is who a switch is recorded for in revisions.log: the
// operator, or flightdeck itself when a deploy run takes hosts back.
func (x *executor) switchActor(kind SwitchKind) string {
	if kind == SwitchRollback && x.info.Kind == KindDeploy {
		return "flightdeck"
	}
	return x.actor.Name
}

// migrate runs the plan's migrate hooks, once per run before the first
// switch: on the host of the first switch, or on this machine for local hooks.
func (x *executor) migrate(ctx context.Context, a Action) {
	h := x.hosts[a.Host]
	where := h.Name()
	for _, hk := range x.plan.Hooks.Migrate {
		var err error
		if hk.Local {
			where = "this machine"
			err = x.execLocal(ctx, h, "migrate", hk, a.Release)
		} else {
			err = x.exec(ctx, h, "migrate", hk, a.Release)
		}
		if err != nil {
			x.send(migrateWork, a, true, err)
			return
		}
	}
	x.send(migrateWork, a, true, nil, Event{Type: EvObserved, Host: h.Name(), Observed: &Observation{Kind: ObsMigrated, OK: true, Note: where}})
}

// measure takes one measurement of a release for the gate or the trigger
// (after a.Delay) and reports it.
func (x *executor) measure(ctx context.Context, k WorkKey, a Action) {
	in := measureInput{key: k, action: a}
	if a.Delay > 0 {
		t := time.NewTimer(a.Delay)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	if ctx.Err() == nil {
		in.m, in.err = x.metrics.Measure(ctx, a.Release, a.Window)
	}
	in.cancelled = ctx.Err() != nil
	x.report(in)
}

// prune removes the releases beyond keep_releases on every host, never the
// current one, the run's release nor the host's previous one.
func (x *executor) prune(ctx context.Context) []Event {
	keep := x.plan.KeepReleases
	if keep <= 0 {
		return nil
	}
	type pr struct {
		host    string
		removed []string
		err     error
	}
	out := make(chan pr, len(x.order))
	for _, h := range x.order {
		protect := []string{x.info.Release}
		if prev := x.previousOf(h.Name()); prev != "" {
			protect = append(protect, prev)
		}
		go func() {
			x.sem <- struct{}{}
			defer func() { <-x.sem }()
			removed, err := h.Prune(ctx, keep, protect)
			out <- pr{h.Name(), removed, err}
		}()
	}
	var evs []Event
	for range x.order {
		p := <-out
		switch {
		case p.err != nil:
			evs = append(evs, Event{Type: EvNotice, Host: p.host, Error: "prune: " + p.err.Error()})
		case len(p.removed) > 0:
			evs = append(evs, Event{Type: EvPruned, Host: p.host, Removed: p.removed,
				Message: "removed " + strings.Join(p.removed, ", ")})
		}
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Host < evs[j].Host })
	return evs
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
