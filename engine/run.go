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
	// progress is prepare progress not yet journaled (holdProgress), due
	// to be journaled on its own at progressDue.
	progress    []workResult
	progressDue time.Time
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
