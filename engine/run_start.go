package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Execute starts the run (inspecting every host) and drives it to the end.
// It returns the final state; the error is non-nil when the run could not
// be carried out, was interrupted (ErrInterrupted) or could not be
// journaled (ErrJournal).
func (r *Run) Execute(ctx context.Context) (*State, error) {
	defer close(r.done)
	checkTarget := ""
	if r.cfg.Kind == KindRollback {
		checkTarget = r.cfg.Target
	}
	statuses, checks, err := r.inspectAll(ctx, checkTarget)
	if err != nil {
		return r.m.st, err
	}
	if r.cfg.Kind == KindRollback {
		if err := r.checkRollbackTarget(ctx, statuses, checks); err != nil {
			return r.m.st, err
		}
	}
	traffic, err := r.initTraffic(ctx)
	if err != nil {
		return r.m.st, err
	}
	info := r.runInfo(statuses)
	assignBackends(&info, r.cfg.Env, traffic)
	if err := r.primeTraffic(ctx, traffic, &info); err != nil {
		return r.m.st, err
	}
	if err := r.openJournal(ctx); err != nil {
		return r.m.st, err
	}
	defer r.journal.Close()
	r.x = r.newExecutor(info, traffic)
	notices := r.notices(ctx)
	if split := FleetSplit(statuses); split != "" && info.Kind == KindDeploy {
		// No unfinished run explains it (it would have been finished first).
		notices = append(notices, "the hosts disagree before this deploy ("+split+") and no unfinished run in the journal explains it (a deleted journal?); this deploy puts every host on "+info.Release)
	}
	in := startInput{info: info, actor: r.cfg.Actor, target: r.cfg.Target, notices: notices,
		promotion: r.cfg.Promotion}
	if info.Kind == KindDeploy {
		in.checklist = PlanChecklist(r.cfg.Plan, r.cfg.Env, r.cfg.Findings, r.cfg.Acks)
	}
	r.m.st.Run = r.id
	return r.drive(ctx, in)
}

// drive feeds the run's first input (its start or resume) and runs the
// loop to the end.
func (r *Run) drive(ctx context.Context, first input) (*State, error) {
	r.record(context.WithoutCancel(ctx), r.m.step(r.cfg.Now(), first))
	if r.fatal != nil {
		return r.m.st, r.fatal
	}
	if r.cfg.OnStart != nil {
		r.cfg.OnStart(r)
	}
	return r.loop(ctx)
}

// Resume continues an unfinished run from its journal: the state is folded
// from the events, every host is asked what it runs now, and the run is
// finished (or its rollback completed).
func (r *Run) Resume(ctx context.Context, evs []Event) (*State, error) {
	defer close(r.done)
	if len(evs) == 0 || evs[0].Start == nil {
		return r.m.st, errors.New("resume: journal has no RunStarted event")
	}
	r.id = evs[0].Run
	st := Fold(evs)
	r.m.st = st
	if !st.Active() {
		return st, fmt.Errorf("resume: run %s already finished (%s)", r.id, st.Outcome)
	}
	if st.Info.RequireApproval == nil {
		// Journals before the policy was recorded in RunStarted: the plan's.
		st.Info.RequireApproval = r.cfg.Env.RequireApproval
	}
	statuses, _, err := r.inspectAll(ctx, "")
	if err != nil {
		return st, err
	}
	traffic, err := r.initTraffic(ctx)
	if err != nil {
		return st, err
	}
	if err := r.openJournal(ctx); err != nil {
		return st, err
	}
	defer r.journal.Close()
	r.x = r.newExecutor(st.Info, traffic)
	in := resumeInput{actor: r.cfg.Actor, pid: os.Getpid(), notices: r.notices(ctx)}
	for _, h := range r.cfg.Hosts {
		in.observed = append(in.observed, HostObservation{Name: h.Name(), HostStatus: statuses[h.Name()]})
	}
	return r.drive(ctx, in)
}

// notices are what the journal must record before the run's own events:
// the engine's (a lock taken over, host keys trusted while inspecting) and
// a probe that could not start.
func (r *Run) notices(ctx context.Context) []string {
	var out []string
	if r.journal != nil {
		out = append(out, r.journal.Notices()...)
	}
	if r.cfg.Notices != nil {
		out = append(out, r.cfg.Notices()...)
	}
	if err := r.startProbe(ctx); err != nil {
		out = append(out, err.Error())
	}
	return out
}

func (r *Run) newExecutor(info RunInfo, traffic *trafficCtl) *executor {
	return &executor{
		plan: r.cfg.Plan, env: r.cfg.Env, artifact: r.cfg.Artifact, hosts: r.hosts, order: r.cfg.Hosts,
		backends: r.cfg.Backends, router: r.cfg.Router, metrics: r.cfg.Metrics, traffic: traffic,
		info: info, actor: r.cfg.Actor, sem: r.sem, verifySem: make(chan struct{}, cap(r.sem)), targetChecked: r.targetChecked,
		report: func(in input) { r.inputs <- in },
		fence:  r.fence,
		now:    r.cfg.Now,
	}
}

func (r *Run) openJournal(ctx context.Context) error {
	r.jctx = ctx
	if r.cfg.Lock != nil {
		j, err := r.cfg.Lock.OpenJournal(ctx, r.id)
		if err != nil {
			return err
		}
		r.journal = j
		return nil
	}
	j, err := OpenJournal(r.cfg.StateDir, r.id)
	if err != nil {
		return err
	}
	r.journal = fileJournal{j}
	return nil
}

// inspectAll cleans and inspects every host; with a target, a host that
// has it but does not run it also checks it complete (Check), in the same
// turn: checks holds the result by host.
func (r *Run) inspectAll(ctx context.Context, target string) (statuses map[string]HostStatus, checks map[string]error, _ error) {
	out := make(map[string]HostStatus, len(r.cfg.Hosts))
	checks = map[string]error{}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, h := range r.cfg.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.sem <- struct{}{}
			defer func() { <-r.sem }()
			// The rollback target's check counts for a host that has
			// the target and does not run it.
			st, checkErr, err := r.survey(ctx, h, target)
			checked := err == nil && target != "" && st.Current != target && slices.Contains(st.Releases, target)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("inspect host %s: %w", h.Name(), err))
				return
			}
			out[h.Name()] = st
			if checked {
				checks[h.Name()] = checkErr
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
		return nil, nil, errors.Join(errs...)
	}
	return out, checks, nil
}

// survey cleans and inspects h and, with a target, checks it (see
// inspectAll): in one pass when h is a Surveyor. The run holds the lock:
// it may remove leftovers of interrupted work while it looks (Clean
// removes temporary names only, which Inspect never reports); the target
// is checked meanwhile (reading only).
func (r *Run) survey(ctx context.Context, h Host, target string) (st HostStatus, checkErr, err error) {
	if s, ok := h.(Surveyor); ok {
		return s.Survey(ctx, target)
	}
	var cleanErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		cleanErr = h.Clean(ctx)
	}()
	if target != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			checkErr = h.Check(ctx, target)
		}()
	}
	st, err = h.Inspect(ctx)
	wg.Wait()
	return st, checkErr, cmp.Or(cleanErr, err)
}

// FleetSplit describes the hosts' current releases when they disagree
// ("web-1 on r2, web-2 on r1", by host name), or "" when they agree.
func FleetSplit(statuses map[string]HostStatus) string {
	names := make([]string, 0, len(statuses))
	seen := map[string]bool{}
	for name, st := range statuses {
		names = append(names, name)
		seen[st.Current] = true
	}
	if len(seen) < 2 {
		return ""
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		cur := statuses[n].Current
		if cur == "" {
			cur = "no release"
		}
		parts[i] = n + " on " + cur
	}
	return strings.Join(parts, ", ")
}

func (r *Run) runInfo(statuses map[string]HostStatus) RunInfo {
	info := RunInfo{
		Kind: r.cfg.Kind, App: r.cfg.Plan.App, Env: r.cfg.Env.Name,
		Strategy: string(r.cfg.Env.Strategy.Kind), Plan: r.cfg.Plan.File, PID: os.Getpid(),
		RequireApproval: r.cfg.Env.RequireApproval,
	}
	if r.cfg.Router != nil {
		info.Traffic, info.TrafficAt = r.cfg.Env.Router.KindOrDefault(), r.cfg.Env.Router.Describe()
	}
	counts := map[string]int{}
	for _, h := range r.cfg.Hosts {
		st := statuses[h.Name()]
		info.Hosts = append(info.Hosts, RunHost{Name: h.Name(), Current: st.Current, Releases: st.Releases})
		if st.Current != "" {
			counts[st.Current]++
		}
	}
	// The fleet's previous release is the one most hosts ran.
	best := 0
	for rel, n := range counts {
		if n > best || (n == best && rel > info.Previous) {
			best, info.Previous = n, rel
		}
	}
	switch r.cfg.Kind {
	case KindDeploy:
		info.Release = r.cfg.Artifact.ID
		info.Commit = r.cfg.Artifact.Commit
		if trafficStrategy(r.cfg.Env) {
			info.Steps = StepsFor(r.cfg.Env)
			if c := r.cfg.Env.Strategy.Cohort; c != nil {
				info.Cohort = &CohortRule{Header: c.Header, Cookie: c.Cookie, Value: c.Value, Percent: float64(c.Percent)}
			}
		} else {
			info.Waves = WavesFor(r.cfg.Env)
		}
	case KindRollback:
		info.Strategy = "rollback"
		info.Release = r.cfg.Target
	}
	return info
}

// initTraffic connects the executor to the router, when the plan has one.
func (r *Run) initTraffic(ctx context.Context) (*trafficCtl, error) {
	if r.cfg.Router == nil {
		return nil, nil
	}
	return newTrafficCtl(ctx, r.cfg.Router)
}

// primeTraffic makes sure the router knows the fleet before the run: the
// previous release's pool holds the backends serving it, and it is the
// stable route when the router has none.
func (r *Run) primeTraffic(ctx context.Context, t *trafficCtl, info *RunInfo) error {
	if t == nil || r.cfg.Kind != KindDeploy {
		return nil
	}
	if info.Previous == "" {
		return t.ensure(ctx, info.Release, nil)
	}
	var olds []string
	for _, h := range info.Hosts {
		if h.OldBackend != "" && h.Current == info.Previous {
			olds = append(olds, h.OldBackend)
		}
	}
	if err := t.ensure(ctx, info.Previous, olds); err != nil {
		return err
	}
	if err := t.ensure(ctx, info.Release, nil); err != nil {
		return err
	}
	st, err := r.cfg.Router.State(ctx)
	if err != nil {
		return fmt.Errorf("read router state: %w", err)
	}
	if st.Route.Stable == "" || st.Route.Stable == info.Release {
		if err := t.setRoute(ctx, Route{Stable: info.Previous}); err != nil {
			return err
		}
	}
	return nil
}

// startProbe starts the plan's probe traffic for the run's window.
func (r *Run) startProbe(ctx context.Context) error {
	pc := r.cfg.Env.Probe
	if pc == nil || pc.URL == "" {
		return nil
	}
	rp, err := startProbe(ctx, pc)
	if err != nil {
		return err
	}
	r.probe = rp
	return nil
}
