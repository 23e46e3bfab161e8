package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"flightdeck/engine/plan"
)

// ErrInterrupted is returned when a run was stopped (signal, cancelled
// context) before it finished. Its journal has no RunFinished event; the
// next deploy or `flightdeck resume` finishes it.
var ErrInterrupted = errors.New("run interrupted before it finished")

// RunConfig configures one run of an environment.
type RunConfig struct {
	Plan  *plan.Plan
	Env   *plan.Environment
	Hosts []Host // in plan order
	Kind  RunKind
	// Artifact is the built release (deploy runs).
	Artifact *Artifact
	// Target is the release a rollback run goes back to.
	Target   string
	Actor    Actor
	StateDir string
	Hub      *Hub
	// Router, when set, drains each host's backend around its switch.
	Router Router
	// Backends maps a host name to its router backend address.
	Backends map[string]string
	// Metrics measures releases for SLO gates and the auto-rollback trigger.
	Metrics MetricsSource
	// MinHold is the least time a traffic step or a wave pause lasts
	// (the interactive demo moves at a human pace).
	MinHold time.Duration
	Now     func() time.Time
	RunID   string
	// Planner overrides the strategy's planner (tests).
	Planner Planner
	// Acks are checklist items acknowledged before the run (id → ack).
	Acks map[string]Ack
	// Findings are the destructive statements found in the plan's migrations.
	Findings []string
	// SkipRollbackPath, when set, is the reason the rollback-path check is
	// overridden (it is journaled).
	SkipRollbackPath string
	// Promotion says how the 3-2-1 environment check went (ok | overridden
	// | n/a) and why.
	Promotion RuleCheck
	// OnStart is called once the run's id is known and RunStarted is journaled.
	OnStart func(r *Run)
}

// Run is one release run. Its loop is the only writer of its state.
type Run struct {
	cfg      RunConfig
	id       string
	hosts    map[string]Host
	state    *State
	journal  *Journal
	planner  Planner
	seq      uint64
	results  chan result
	cmds     chan cmdReq
	done     chan struct{}
	inflight map[string]ActionKind
	sem      chan struct{}
	dirty    bool
	fatal    error
	stopped  bool
	waitTill time.Time
	// interrupt is the run context's Done channel: work in flight ignores
	// it, but waits that only delay the end (settle) stop on it.
	interrupt <-chan struct{}
	traffic   *trafficCtl
	gate      *GateSpec
	awaited   string
	probe     *runProbe
	// measureCancel stops a gate measurement in flight (a rollback does not
	// wait for the gate's window).
	measureCancel context.CancelFunc

	obsMu     sync.Mutex
	obs       observations
	planItems []ChecklistItem

	migrateMu  sync.Mutex
	migrated   bool
	migrateErr error
}

type result struct {
	host string
	done bool
	evs  []Event
}

type cmdReq struct {
	cmd   Command
	reply chan error
}

// NewRun prepares a run; Execute performs it.
func NewRun(cfg RunConfig) (*Run, error) {
	if cfg.Hub == nil {
		cfg.Hub = NewHub()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Kind == "" {
		cfg.Kind = KindDeploy
	}
	if cfg.Kind == KindDeploy && cfg.Artifact == nil {
		return nil, errors.New("deploy run without a built release")
	}
	r := &Run{
		cfg:      cfg,
		hosts:    make(map[string]Host, len(cfg.Hosts)),
		state:    NewState(),
		results:  make(chan result, 1024),
		cmds:     make(chan cmdReq),
		done:     make(chan struct{}),
		inflight: map[string]ActionKind{},
	}
	for _, h := range cfg.Hosts {
		r.hosts[h.Name()] = h
	}
	par := cfg.Env.Parallel
	if par <= 0 {
		par = 16
	}
	r.sem = make(chan struct{}, par)
	r.id = cfg.RunID
	if r.id == "" {
		r.id = fmt.Sprintf("%s-%s-%s", cfg.Env.Name, cfg.Now().UTC().Format("20060102T150405"), RandomSuffix(3))
	}
	r.gate = GateFromPlan(cfg.Env.Gate)
	if r.gate != nil && cfg.Metrics == nil {
		r.gate = nil
	}
	r.planner = cfg.Planner
	if r.planner == nil {
		r.planner = PlannerFor(cfg.Env, r.gate, cfg.MinHold)
	}
	return r, nil
}

// PlannerFor returns the planner of an environment's strategy. gate is nil
// when there is nothing to measure with; minHold paces steps and waves.
func PlannerFor(env *plan.Environment, gate *GateSpec, minHold time.Duration) Planner {
	st := env.Strategy
	halt := st.OnFailure == "halt"
	if trafficStrategy(env) {
		return TrafficPlanner{
			Slots: slotStrategy(env), Cohort: st.Kind == plan.AB, Gate: gate,
			Hold: max(minHold, st.Pause.Duration), AutoPromote: env.AutoPromote(), Halt: halt,
			MaxUnavailable: st.MaxUnavailable.Of(len(env.Hosts)),
		}
	}
	wp := WavePlanner{Pause: st.Pause.Duration, Halt: halt}
	if st.Kind == plan.Rolling {
		wp.MaxUnavailable = st.MaxUnavailable.Of(len(env.Hosts))
	}
	return wp
}

// StepsFor returns the traffic steps of a strategy (percent).
func StepsFor(env *plan.Environment) []int {
	st := env.Strategy
	switch st.Kind {
	case plan.Canary:
		return st.Steps
	case plan.BlueGreen:
		return []int{100}
	case plan.AB:
		first := 100
		if c := st.Cohort; c != nil && c.Percent > 0 {
			first = c.Percent
		}
		return []int{first, 100}
	}
	return nil
}

// WavesFor splits an environment's hosts into the strategy's waves.
func WavesFor(env *plan.Environment) [][]string {
	names := make([]string, len(env.Hosts))
	for i, h := range env.Hosts {
		names[i] = h.Name
	}
	switch env.Strategy.Kind {
	case plan.Rolling:
		return PlanWaves(names, env.Strategy.WaveSize.Of(len(names)))
	default:
		return PlanWaves(names, len(names))
	}
}

// ID is the run's id.
func (r *Run) ID() string { return r.id }

// Done is closed when the run loop has exited.
func (r *Run) Done() <-chan struct{} { return r.done }

// Send hands an operator command to the run loop and waits until it was
// accepted (journaled) or refused. An accepted command is never lost.
func (r *Run) Send(ctx context.Context, c Command) error {
	req := cmdReq{cmd: c, reply: make(chan error, 1)}
	select {
	case r.cmds <- req:
	case <-r.done:
		return ErrNoRun
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Execute starts the run (inspecting every host) and drives it to the end.
// It returns the final state; the error is non-nil when the run could not
// be carried out or was interrupted (ErrInterrupted).
func (r *Run) Execute(ctx context.Context) (*State, error) {
	defer close(r.done)
	statuses, err := r.inspectAll(ctx)
	if err != nil {
		return r.state, err
	}
	if err := r.initTraffic(ctx); err != nil {
		return r.state, err
	}
	info := r.runInfo(statuses)
	if err := r.primeTraffic(ctx, &info); err != nil {
		return r.state, err
	}
	if err := r.openJournal(); err != nil {
		return r.state, err
	}
	defer r.journal.Close()
	r.emit(Event{Type: EvRunStarted, Actor: r.cfg.Actor.Name, Fingerprint: r.cfg.Actor.Fingerprint,
		Release: info.Release, Start: &info, Target: r.cfg.Target})
	if r.fatal != nil {
		return r.state, r.fatal
	}
	r.startProbe(ctx)
	if r.cfg.OnStart != nil {
		r.cfg.OnStart(r)
	}
	if info.Kind == KindDeploy {
		r.planItems = PlanChecklist(r.cfg.Plan, r.cfg.Env, r.cfg.Findings, r.cfg.Acks)
		for i := range r.planItems {
			it := r.planItems[i]
			r.emit(Event{Type: EvChecklistItem, Item: &it, Actor: it.AckBy})
		}
		if pr := r.cfg.Promotion; pr.Status != "" {
			r.emit(Event{Type: EvRule321, Wave: 3, Target: pr.Status, Message: pr.Note})
		}
		if err := r.verifyRollbackPath(ctx); err != nil {
			if r.cfg.SkipRollbackPath == "" {
				r.emit(Event{Type: EvRule321, Wave: 1, Target: "failed", Message: err.Error()})
				r.finish(ctx, Action{Kind: ActFinish, Outcome: OutcomeFailed,
					Reason: err.Error() + " (nothing was switched; --no-rollback-path --reason TEXT overrides)"})
				return r.state, nil
			}
			msg := fmt.Sprintf("rollback-path check overridden by %s (%s): %v", r.cfg.Actor.Name, r.cfg.SkipRollbackPath, err)
			r.emit(Event{Type: EvNotice, Actor: r.cfg.Actor.Name, Message: msg},
				Event{Type: EvRule321, Wave: 1, Target: "overridden", Message: msg})
		} else if info.Previous != "" {
			r.emit(Event{Type: EvRule321, Wave: 1, Target: "ok", Message: "previous release " + info.Previous + " verified intact on every host"})
		} else {
			r.emit(Event{Type: EvRule321, Wave: 1, Target: "n/a", Message: "first release: nothing to roll back to"})
		}
	}
	return r.loop(ctx)
}

// Resume continues an unfinished run from its journal: the state is folded
// from the events, every host is asked what it runs now, and the run is
// finished (or its rollback completed).
func (r *Run) Resume(ctx context.Context, evs []Event) (*State, error) {
	defer close(r.done)
	if len(evs) == 0 || evs[0].Start == nil {
		return r.state, errors.New("resume: journal has no RunStarted event")
	}
	r.id = evs[0].Run
	for _, e := range evs {
		r.state.Apply(e)
		r.seq = max(r.seq, e.Seq)
	}
	if !r.state.Active() {
		return r.state, fmt.Errorf("resume: run %s already finished (%s)", r.id, r.state.Outcome)
	}
	if r.state.Info.RequireApproval == nil {
		// Journals before the policy was recorded in RunStarted: the plan's.
		r.state.Info.RequireApproval = r.cfg.Env.RequireApproval
	}
	statuses, err := r.inspectAll(ctx)
	if err != nil {
		return r.state, err
	}
	if err := r.initTraffic(ctx); err != nil {
		return r.state, err
	}
	if err := r.openJournal(); err != nil {
		return r.state, err
	}
	defer r.journal.Close()
	r.emit(Event{Type: EvRunResumed, Actor: r.cfg.Actor.Name, Message: fmt.Sprintf("resumed by %s (pid %d) after the run's process stopped", r.cfg.Actor.Name, os.Getpid())})
	r.startProbe(ctx)
	for _, h := range r.cfg.Hosts {
		st := statuses[h.Name()]
		r.emit(Event{Type: EvHostObserved, Host: h.Name(), Release: st.Current, Releases: st.Releases})
	}
	if r.state.Info.Kind == KindDeploy && r.state.Status != StatusRollingBack && !allPrepared(r.state) {
		// The crash came before any host was switched (every host is prepared
		// before the first switch), and the built release is gone with the
		// process: end the run with every host still on its release.
		r.finish(ctx, Action{Kind: ActFinish, Outcome: OutcomeFailed,
			Reason: "interrupted while preparing; no host was switched (deploy again to retry)"})
		return r.state, nil
	}
	if r.cfg.OnStart != nil {
		r.cfg.OnStart(r)
	}
	return r.loop(ctx)
}

func allPrepared(s *State) bool {
	for _, h := range s.Hosts {
		if !h.Prepared {
			return false
		}
	}
	return true
}

func (r *Run) openJournal() error {
	j, err := OpenJournal(r.cfg.StateDir, r.id)
	if err != nil {
		return err
	}
	r.journal = j
	return nil
}

func (r *Run) inspectAll(ctx context.Context) (map[string]HostStatus, error) {
	out := make(map[string]HostStatus, len(r.cfg.Hosts))
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, h := range r.cfg.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.sem <- struct{}{}
			defer func() { <-r.sem }()
			st, err := h.Inspect(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("inspect host %s: %w", h.Name(), err))
				return
			}
			out[h.Name()] = st
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func (r *Run) runInfo(statuses map[string]HostStatus) RunInfo {
	info := RunInfo{
		Kind: r.cfg.Kind, App: r.cfg.Plan.App, Env: r.cfg.Env.Name,
		Strategy: string(r.cfg.Env.Strategy.Kind), Plan: r.cfg.Plan.File, PID: os.Getpid(),
		RequireApproval: r.cfg.Env.RequireApproval,
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

// emit stamps, journals (fsync), folds and publishes events, in that order.
func (r *Run) emit(evs ...Event) {
	now := r.cfg.Now()
	for i := range evs {
		r.seq++
		evs[i].Seq = r.seq
		evs[i].Run = r.id
		if evs[i].Time.IsZero() {
			evs[i].Time = now
		}
	}
	if r.journal != nil && r.fatal == nil {
		if err := r.journal.Append(evs...); err != nil {
			r.fatal = fmt.Errorf("journal: %w (the run stops; hosts keep what they have)", err)
		}
	}
	for _, e := range evs {
		r.state.Apply(e)
		if e.Type == EvRollbackStart && r.measureCancel != nil {
			r.measureCancel()
		}
	}
	r.cfg.Hub.Publish(evs...)
	r.dirty = true
}

func (r *Run) publishSnapshot() {
	if r.dirty {
		r.cfg.Hub.SetSnapshot(r.state.Clone())
		r.dirty = false
	}
}

// snapshotEvery bounds how often subscribers get a new state snapshot.
const snapshotEvery = 50 * time.Millisecond

func (r *Run) loop(ctx context.Context) (*State, error) {
	// Work already started finishes even when ctx is cancelled, so that no
	// host is left between two steps; cancelling only stops new work.
	workCtx := context.WithoutCancel(ctx)
	if r.cfg.Env.AutoRollback != nil && r.cfg.Metrics != nil && r.state.Info.Kind == KindDeploy {
		wctx, cancel := context.WithCancel(workCtx)
		defer cancel()
		go r.watchAutoRollback(wctx, r.state.Info.Release)
	}
	r.interrupt = ctx.Done()
	tick := time.NewTicker(snapshotEvery)
	defer tick.Stop()
	defer r.publishSnapshot()
	var wait *time.Timer
	for r.state.Status != StatusFinished {
		if (r.stopped || r.fatal != nil) && len(r.inflight) == 0 {
			if r.fatal != nil {
				return r.state, r.fatal
			}
			r.emit(Event{Type: EvNotice, Message: "run interrupted; `flightdeck resume` (or the next deploy) finishes it"})
			if r.probe != nil {
				r.probe.stop()
			}
			return r.state, ErrInterrupted
		}
		if !r.stopped && r.fatal == nil {
			if r.dispatch(workCtx, r.planner.Next(r.state, r.cfg.Now())) {
				continue
			}
		}
		var waitC <-chan time.Time
		if !r.waitTill.IsZero() {
			if wait == nil {
				wait = time.NewTimer(time.Until(r.waitTill))
			} else {
				wait.Reset(time.Until(r.waitTill))
			}
			waitC = wait.C
		}
		select {
		case res := <-r.results:
			r.collect(res)
		case c := <-r.cmds:
			c.reply <- r.handle(c.cmd)
		case <-waitC:
			r.waitTill = time.Time{}
		case <-tick.C:
			r.publishSnapshot()
		case <-ctx.Done():
			if !r.stopped {
				r.stopped = true
				ctx = context.Background()
			}
		}
	}
	return r.state, nil
}

// collect takes a result and every other one already waiting, and emits
// them with one journal write (group commit).
func (r *Run) collect(first result) {
	batch := []result{first}
	for len(batch) < 256 {
		select {
		case res := <-r.results:
			batch = append(batch, res)
			continue
		default:
		}
		break
	}
	var evs []Event
	for _, res := range batch {
		evs = append(evs, res.evs...)
		if res.done {
			delete(r.inflight, res.host)
		}
	}
	if len(evs) > 0 {
		r.emit(evs...)
	}
}

// dispatch performs a planner's actions; it reports whether the state
// changed synchronously (so the planner should be asked again at once).
func (r *Run) dispatch(ctx context.Context, acts []Action) bool {
	changed := false
	for _, a := range acts {
		switch a.Kind {
		case ActPrepare, ActSwitch, ActRevert, ActStandby:
			if _, busy := r.inflight[a.Host]; busy {
				continue
			}
			h, ok := r.hosts[a.Host]
			if !ok {
				continue
			}
			r.inflight[a.Host] = a.Kind
			go r.execute(ctx, h, a)
		case ActRoute:
			if _, busy := r.inflight[keyRoute]; busy {
				continue
			}
			r.inflight[keyRoute] = a.Kind
			prev, cohortOn := r.state.Info.Previous, r.state.Cohort > 0
			if r.state.Status == StatusRollingBack && r.state.RevertTo != "" {
				prev = r.state.RevertTo
			}
			go func() {
				if err := r.doRoute(ctx, a, prev, cohortOn); err != nil {
					r.send(keyRoute, true, Event{Type: EvNotice, Command: "route", Error: "router: " + err.Error()})
					return
				}
				r.send(keyRoute, true)
			}()
		case ActMeasure:
			if _, busy := r.inflight[keyGate]; busy || r.gate == nil {
				continue
			}
			r.inflight[keyGate] = a.Kind
			mctx, cancel := context.WithCancel(ctx)
			r.measureCancel = cancel
			go r.doMeasure(mctx, a)
		case ActStep:
			if a.Wave == len(r.state.Info.Steps) && a.Wave > 1 && needsApproval(r.state, "promote") {
				if r.state.Proposal == nil {
					r.emit(Event{Type: EvApprovalRequested, Actor: AutoActor.Name, Wave: a.Wave,
						Message: fmt.Sprintf("the gate passed; promotion to %g%% waits for an operator's approval", a.Weight)})
					changed = true
				}
				continue
			}
			r.emit(stepEvent(r.state, a.Wave, a.Weight, ""))
			changed = true
		case ActAwait:
			if a.Wave == -1 {
				if r.awaited != a.Reason {
					r.awaited = a.Reason
					r.emit(Event{Type: EvNotice, Message: a.Reason})
				}
				continue
			}
			r.emit(Event{Type: EvPaused, Actor: AutoActor.Name, Message: a.Reason})
			changed = true
		case ActWaveStart:
			r.emit(Event{Type: EvWaveStarted, Wave: a.Wave,
				Message: fmt.Sprintf("wave %d/%d: %s", a.Wave, len(r.state.Info.Waves), strings.Join(r.state.Info.Waves[a.Wave-1], ", "))})
			changed = true
		case ActWaveDone:
			r.emit(Event{Type: EvWaveDone, Wave: a.Wave})
			changed = true
		case ActWait:
			if !r.state.WaitUntil.Equal(a.Until) {
				r.emit(Event{Type: EvWaiting, Until: a.Until,
					Message: fmt.Sprintf("pausing %s before the next wave", a.Until.Sub(r.cfg.Now()).Round(time.Millisecond))})
			}
			r.waitTill = a.Until
		case ActStartRollback:
			r.emit(Event{Type: EvRollbackStart, Actor: AutoActor.Name, Message: a.Reason, Command: string(CmdRollback),
				Target: r.state.RevertTo})
			changed = true
		case ActFinish:
			if len(r.inflight) == 0 {
				r.finish(ctx, a)
				changed = true
			}
		}
	}
	return changed
}

// handle applies an operator command in the run loop: the pure rule
// (decideCommand, the same as Check) says what to journal.
func (r *Run) handle(c Command) error {
	evs, err := decideCommand(r.state, c)
	if err != nil {
		r.emit(refusal(c, err))
		return err
	}
	r.emit(evs...)
	return nil
}

// Keys of non-host work in flight.
const (
	keyRoute = "#route"
	keyGate  = "#gate"
)

// initTraffic connects the executor to the router, when the plan has one.
func (r *Run) initTraffic(ctx context.Context) error {
	if r.cfg.Router == nil {
		return nil
	}
	t, err := newTrafficCtl(ctx, r.cfg.Router)
	if err != nil {
		return err
	}
	r.traffic = t
	return nil
}

// primeTraffic makes sure the router knows the fleet before the run: the
// previous release's pool holds the backends serving it, and it is the
// stable route when the router has none.
func (r *Run) primeTraffic(ctx context.Context, info *RunInfo) error {
	r.assignBackends(info)
	if r.traffic == nil || r.cfg.Kind != KindDeploy {
		return nil
	}
	if info.Previous == "" {
		return r.traffic.ensure(ctx, info.Release, nil)
	}
	var olds []string
	for _, h := range info.Hosts {
		if h.OldBackend != "" && h.Current == info.Previous {
			olds = append(olds, h.OldBackend)
		}
	}
	if err := r.traffic.ensure(ctx, info.Previous, olds); err != nil {
		return err
	}
	if err := r.traffic.ensure(ctx, info.Release, nil); err != nil {
		return err
	}
	st, err := r.cfg.Router.State(ctx)
	if err != nil {
		return fmt.Errorf("read router state: %w", err)
	}
	if st.Route.Stable == "" || st.Route.Stable == info.Release {
		if err := r.traffic.setRoute(ctx, Route{Stable: info.Previous}); err != nil {
			return err
		}
	}
	return nil
}

// send reports events from an executor goroutine to the run loop.
func (r *Run) send(host string, done bool, evs ...Event) {
	now := r.cfg.Now()
	for i := range evs {
		if evs[i].Host == "" && !strings.HasPrefix(host, "#") {
			evs[i].Host = host
		}
		if evs[i].Time.IsZero() {
			evs[i].Time = now
		}
	}
	r.results <- result{host: host, done: done, evs: evs}
}

func (r *Run) finish(ctx context.Context, a Action) {
	st := r.state
	if a.Outcome == OutcomeSucceeded && st.Info.Kind == KindDeploy {
		r.settleRoute(ctx, st.Info.Release)
		r.prune(ctx)
	}
	if st.Info.Kind == KindRollback && a.Outcome == OutcomeSucceeded {
		r.settleRoute(ctx, st.Info.Release)
	}
	end := r.cfg.Now()
	rep := &Report{
		Strategy: st.Info.Strategy, Hosts: len(st.Hosts), Duration: end.Sub(st.Started),
		Outcome: a.Outcome, Gates: st.Gates,
	}
	for _, h := range st.Hosts {
		if h.Phase == PhaseFailed {
			rep.Failed = append(rep.Failed, h.Name)
		}
	}
	if r.probe != nil {
		if settle := r.cfg.Env.Probe.Settle.Duration; settle > 0 && a.Outcome == OutcomeSucceeded {
			r.emit(Event{Type: EvSettling, Outcome: a.Outcome, Until: r.cfg.Now().Add(settle),
				Message: fmt.Sprintf("probing %s more with the release in service", settle)})
			r.settle(settle)
		}
		rep.Probe = r.probe.stop()
		r.probe = nil
	}
	if !st.RollbackAt.IsZero() {
		rep.RTO = end.Sub(st.RollbackAt)
		r.emit(Event{Type: EvRolledBack, Target: st.RevertTo, Message: fmt.Sprintf("rollback finished in %s", rep.RTO.Round(time.Millisecond))})
	}
	if evs := r.finalChecklist(rep); len(evs) > 0 {
		r.emit(evs...)
	}
	rep.Checklist = slices.Clone(r.state.Checklist)
	rep.Verdict = verdict(rep, a)
	if h := hitless(rep.Probe, r.sloP99()); h != "" {
		if a.Outcome == OutcomeSucceeded {
			rep.Verdict = h
		} else {
			rep.Verdict += " · " + h
		}
	}
	r.emit(Event{Type: EvReport, Report: rep})
	r.emit(Event{Type: EvRunFinished, Outcome: a.Outcome, Error: a.Reason, Release: st.Info.Release})
}

// settle lets probe traffic run for d after the outcome is decided. The
// run loop waits here, so it answers commands meanwhile, refusing them
// (there is nothing left to pause or roll back within the run), and an
// interrupt ends the wait.
func (r *Run) settle(d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
			return
		case <-r.interrupt:
			return
		case c := <-r.cmds:
			c.reply <- r.handle(c.cmd)
		}
	}
}

// startProbe starts the plan's probe traffic for the run's window.
func (r *Run) startProbe(ctx context.Context) {
	pc := r.cfg.Env.Probe
	if pc == nil || pc.URL == "" {
		return
	}
	rp, err := startProbe(ctx, pc)
	if err != nil {
		r.emit(Event{Type: EvNotice, Error: err.Error()})
		return
	}
	r.probe = rp
}

// sloP99 is the p99 the hitless verdict holds probe traffic to.
func (r *Run) sloP99() time.Duration {
	if g := r.cfg.Env.Gate; g != nil && g.P99.Duration > 0 {
		return g.P99.Duration
	}
	return 200 * time.Millisecond
}

// settleRoute makes rel the router's only stable release once every host
// serves it.
func (r *Run) settleRoute(ctx context.Context, rel string) {
	if r.traffic == nil {
		return
	}
	if err := r.traffic.ensure(ctx, rel, nil); err != nil {
		r.emit(Event{Type: EvNotice, Error: "router: " + err.Error()})
		return
	}
	if err := r.traffic.setRoute(ctx, Route{Stable: rel}); err != nil {
		r.emit(Event{Type: EvNotice, Error: "router: " + err.Error()})
		return
	}
	if r.state.Cohort > 0 {
		_ = r.traffic.setCohorts(ctx, nil)
	}
	r.emit(Event{Type: EvWeightSet, Weight: ptr(0.0), Release: rel, Message: "all traffic → " + rel + " (stable)"})
}

func verdict(rep *Report, a Action) string {
	switch a.Outcome {
	case OutcomeSucceeded:
		return "SUCCEEDED"
	case OutcomeRolledBack:
		return "ROLLED BACK: " + a.Reason
	case OutcomeAborted:
		return "ABORTED"
	}
	return "FAILED: " + a.Reason
}

func (r *Run) prune(ctx context.Context) {
	keep := r.cfg.Plan.KeepReleases
	if keep <= 0 {
		return
	}
	type pr struct {
		host    string
		removed []string
		err     error
	}
	out := make(chan pr, len(r.cfg.Hosts))
	for _, h := range r.cfg.Hosts {
		hs := r.state.Host(h.Name())
		protect := []string{r.state.Info.Release}
		if hs != nil && hs.Previous != "" {
			protect = append(protect, hs.Previous)
		}
		go func() {
			r.sem <- struct{}{}
			defer func() { <-r.sem }()
			removed, err := h.Prune(ctx, keep, protect)
			out <- pr{h.Name(), removed, err}
		}()
	}
	var evs []Event
	for range r.cfg.Hosts {
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
	if len(evs) > 0 {
		r.emit(evs...)
	}
}
