package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"flightdeck/engine/plan"
)

// ErrInterrupted is returned when a run was stopped (signal, cancelled
// context) before it finished. Its journal has no RunFinished event; the
// next deploy or `flightdeck resume` finishes it.
var ErrInterrupted = errors.New("run interrupted before it finished")

// ErrJournal is returned (wrapped) when a run's journal could not be
// written: the run stopped where it was, and it reports no outcome the
// journal does not hold.
var ErrJournal = errors.New("the run's journal could not be written")

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
	// Notices, when set, returns what happened before the run that its
	// journal must record; it is asked once the hosts were inspected.
	Notices func() []string
	// OnStart is called once the run's id is known and its start journaled.
	OnStart func(r *Run)
	// Lock is the environment's lock the run holds: the run journals
	// under it and fences every switch with it. Without it the journal
	// is a file under StateDir.
	Lock HeldLock
	// Notes, when set, returns notices that arrived since it was last
	// called; they are journaled with the run's next events.
	Notes func() []string
}

// Run is one release run: the driver of its step (step.go). Its loop is
// the only writer of its state: it journals what the step decided,
// publishes it, performs the step's actions and feeds their results back.
type Run struct {
	cfg     RunConfig
	id      string
	hosts   map[string]Host
	m       *machine
	x       *executor
	journal RunJournal
	// jctx bounds journal writes: a store that does not answer is waited
	// for until the run is interrupted.
	jctx   context.Context
	probe  *runProbe
	inputs chan input
	cmds   chan cmdReq
	done   chan struct{}
	sem    chan struct{}
	// measuring holds the cancel functions of measurements in flight.
	measuring map[WorkKey]context.CancelFunc
	wake      *time.Timer
	wakeAt    time.Time
	fatal     error
	dirty     bool
	// targetChecked: this process checked the rollback target complete on
	// every host before the first switch (checkRollbackTarget).
	targetChecked bool
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
		cfg:       cfg,
		hosts:     make(map[string]Host, len(cfg.Hosts)),
		inputs:    make(chan input, 1024),
		cmds:      make(chan cmdReq),
		done:      make(chan struct{}),
		measuring: map[WorkKey]context.CancelFunc{},
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
	rules := rulesFor(cfg)
	planner := cfg.Planner
	if planner == nil {
		planner = PlannerFor(cfg.Env, rules.gate, cfg.MinHold)
	}
	r.m = newMachine(NewState(), planner, rules)
	return r, nil
}

// rulesFor gathers the plan's facts the step decides with.
func rulesFor(cfg RunConfig) runRules {
	p, env := cfg.Plan, cfg.Env
	rules := runRules{
		migrate: len(p.Hooks.Migrate) > 0, smoke: len(p.Smoke) > 0, cache: p.CacheNamespaceEnv != "",
		routed: cfg.Router != nil, keep: p.KeepReleases, sloP99: 200 * time.Millisecond,
		skipRollbackPath: cfg.SkipRollbackPath, overrideBy: cfg.Actor.Name,
	}
	if cfg.Metrics != nil {
		rules.gate = GateFromPlan(env.Gate)
		rules.trigger = TriggerFromPlan(env.AutoRollback)
	}
	if g := env.Gate; g != nil && g.P99.Duration > 0 {
		rules.sloP99 = g.P99.Duration
	}
	if pc := env.Probe; pc != nil && pc.URL != "" {
		rules.probe = true
		rules.settle = pc.Settle.Duration
	}
	return rules
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

// snapshotEvery bounds how often subscribers get a new state snapshot.
const snapshotEvery = 50 * time.Millisecond

// loop drives the run to its end: every input goes through the step, and
// the step's output is journaled, published and performed.
func (r *Run) loop(ctx context.Context) (*State, error) {
	// Work already started finishes even when ctx is cancelled, so that no
	// host is left between two steps; cancelling only stops new work.
	workCtx := context.WithoutCancel(ctx)
	tick := time.NewTicker(snapshotEvery)
	defer tick.Stop()
	defer r.publishSnapshot()
	defer r.stopMeasuring()
	if w, ok := r.cfg.Router.(RouterWatcher); ok {
		wctx, cancel := context.WithCancel(workCtx)
		defer cancel()
		go w.Watch(wctx, func(msg string) {
			select {
			case r.inputs <- routerInput{message: msg}:
			case <-wctx.Done():
			}
		})
	}
	interrupt := ctx.Done()
	for !r.m.done() {
		var wakeC <-chan time.Time
		if r.wake != nil {
			wakeC = r.wake.C
		}
		select {
		case in := <-r.inputs:
			for _, in := range r.collect(in) {
				r.feed(workCtx, in)
			}
		case c := <-r.cmds:
			out := r.m.step(r.cfg.Now(), commandInput{cmd: c.cmd})
			r.record(workCtx, out)
			c.reply <- out.reply
		case <-wakeC:
			r.wake, r.wakeAt = nil, time.Time{}
			r.feed(workCtx, tickInput{})
		case <-tick.C:
			r.publishSnapshot()
		case <-interrupt:
			interrupt = nil
			r.feed(workCtx, stopInput{})
		}
	}
	if r.probe != nil && r.m.st.Status != StatusFinished {
		r.probe.stop() // interrupted: ActFinalize did not stop it
	}
	switch {
	case r.fatal != nil:
		return r.m.st, r.fatal
	case r.m.st.Status != StatusFinished:
		return r.m.st, ErrInterrupted
	}
	return r.m.st, nil
}

// collect takes an input and, when it is work, every other work result
// already waiting, so that they are journaled with one write (group
// commit). An input of another kind ends the batch, in order.
func (r *Run) collect(first input) []input {
	w, replies, ok := asWork(first)
	if !ok {
		return []input{first}
	}
	for len(w.results) < 256 {
		select {
		case in := <-r.inputs:
			if more, mr, ok := asWork(in); ok {
				w.results = append(w.results, more.results...)
				replies = append(replies, mr...)
				continue
			}
			return []input{workBatch(w, replies), in}
		default:
		}
		break
	}
	return []input{workBatch(w, replies)}
}

// asWork reports whether in is work (waited for or not).
func asWork(in input) (workInput, []chan<- error, bool) {
	switch in := in.(type) {
	case workInput:
		return in, nil, true
	case committedInput:
		return in.work, in.replies, true
	}
	return workInput{}, nil, false
}

func workBatch(w workInput, replies []chan<- error) input {
	if len(replies) > 0 {
		return committedInput{work: w, replies: replies}
	}
	return w
}

// fence returns nil while the environment's lock is surely ours (always,
// without a lock of a shared store).
func (r *Run) fence(ctx context.Context) error {
	if r.cfg.Lock == nil {
		return nil
	}
	return r.cfg.Lock.Fence(ctx)
}

// committedInput is work whose events the executor waits to see
// journaled (a host's switching phase): the loop answers with nil once they
// are, or with the error that stopped the journal.
type committedInput struct {
	work    workInput
	replies []chan<- error
}

func (committedInput) isInput() {}

// feed steps the machine with an input and records the output.
func (r *Run) feed(workCtx context.Context, in input) {
	if r.cfg.Notes != nil {
		if notes := r.cfg.Notes(); len(notes) > 0 {
			evs := make([]Event, len(notes))
			for i, n := range notes {
				evs[i] = Event{Type: EvNotice, Message: n}
			}
			r.record(workCtx, r.m.step(r.cfg.Now(), workInput{results: []workResult{{events: evs}}}))
		}
	}
	if c, ok := in.(committedInput); ok {
		r.record(workCtx, r.m.step(r.cfg.Now(), c.work))
		for _, reply := range c.replies {
			reply <- r.fatal
		}
		return
	}
	if m, ok := in.(measureInput); ok {
		if cancel, ok := r.measuring[m.key]; ok && r.m.work[m.key].Serial == m.action.Serial {
			cancel()
			delete(r.measuring, m.key)
		}
	}
	r.record(workCtx, r.m.step(r.cfg.Now(), in))
}

// record journals the step's events (fsync), publishes them, and performs
// its actions, in that order. A run whose journal cannot be written stops
// where it is: nothing is published or done that the journal does not hold.
func (r *Run) record(workCtx context.Context, out output) {
	if len(out.events) > 0 && r.fatal == nil {
		if err := r.journal.Append(r.jctx, out.events...); err != nil {
			r.fatal = fmt.Errorf("%w (%v): the run stopped where it was and reports no outcome; "+
				"hosts keep what they have; `flightdeck resume` finishes it once the journal can be written", ErrJournal, err)
			last := out.events[len(out.events)-1]
			r.cfg.Hub.Publish(Event{Seq: last.Seq, Time: last.Time, Run: r.id, Type: EvNotice, Error: r.fatal.Error()})
		} else {
			r.cfg.Hub.Publish(out.events...)
			r.dirty = true
		}
	}
	var unstarted []Action
	for _, a := range out.actions {
		if r.fatal != nil && a.Kind != ActCancel {
			unstarted = append(unstarted, a)
			continue
		}
		r.perform(workCtx, a)
	}
	if r.fatal != nil && (!r.m.halted || len(unstarted) > 0) {
		// The step is told which of its work never started (a halted
		// step starts none), or the loop would wait for it forever.
		r.record(workCtx, r.m.step(r.cfg.Now(), haltInput{unstarted: unstarted}))
		return
	}
	if !out.wake.IsZero() && (r.wakeAt.IsZero() || out.wake.Before(r.wakeAt)) {
		if r.wake != nil {
			r.wake.Stop()
		}
		r.wakeAt = out.wake
		r.wake = time.NewTimer(time.Until(out.wake))
	}
}

// perform starts one action of the step.
func (r *Run) perform(ctx context.Context, a Action) {
	switch a.Kind {
	case ActCancel:
		if cancel, ok := r.measuring[a.Work]; ok {
			cancel()
			delete(r.measuring, a.Work)
		}
	case ActMeasure, ActTrigger:
		k := gateWork
		if a.Kind == ActTrigger {
			k = triggerWork
		}
		if cancel, ok := r.measuring[k]; ok {
			cancel()
		}
		mctx, cancel := context.WithCancel(ctx)
		r.measuring[k] = cancel
		go r.x.measure(mctx, k, a)
	case ActFinalize:
		go r.finalize(ctx, a)
	default:
		go r.x.do(ctx, a)
	}
}

// finalize ends the run's I/O: the route settled on the run's release,
// old releases pruned, the probe traffic summarised.
func (r *Run) finalize(ctx context.Context, a Action) {
	var in finalInput
	in.events = append(in.events, r.x.undrainLeftovers(ctx, a.Outcome)...)
	if a.SettleRoute {
		in.events = append(in.events, r.x.settleRoute(ctx, a.Release, a.CohortOn)...)
	}
	if a.Prune {
		in.events = append(in.events, r.x.prune(ctx)...)
	}
	if r.probe != nil {
		in.probe = r.probe.stop()
	}
	r.inputs <- in
}

func (r *Run) stopMeasuring() {
	for k, cancel := range r.measuring {
		cancel()
		delete(r.measuring, k)
	}
	if r.wake != nil {
		r.wake.Stop()
	}
}

func (r *Run) publishSnapshot() {
	if r.dirty {
		r.cfg.Hub.SetSnapshot(r.m.st.Clone())
		r.dirty = false
	}
}
