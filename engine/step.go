package engine

import (
	"fmt"
	"strings"
	"time"
)

// This file is the run's decision-maker: the only place where a run
// decides (the etcd raft shape). machine.step takes the state and one
// input — a start or resume, an operator command with its actor, the
// result of host work, a measurement, a tick — and returns the events to
// journal and the actions to perform. It does no I/O and reads no clock
// (the time comes with the input). The run loop (run.go) journals the
// events, publishes them, performs the actions and feeds their results
// back, and nothing else.

// WorkKey names one piece of work in flight: a host's work, or the one
// route change, gate measurement, trigger measurement, migration,
// rollback-path check or finalisation a run has at a time. Host names
// and these never share a namespace.
type WorkKey struct {
	Kind WorkKind
	// Host is the host of WorkHost (empty otherwise).
	Host string
}

// WorkKind is what a WorkKey names.
type WorkKind uint8

// Kinds of work.
const (
	WorkHost WorkKind = iota + 1
	WorkRoute
	WorkGate
	WorkTrigger
	WorkMigrate
	WorkVerify
	WorkFinalize
)

func (k WorkKey) String() string {
	switch k.Kind {
	case WorkHost:
		return "host " + k.Host
	case WorkRoute:
		return "route"
	case WorkGate:
		return "gate"
	case WorkTrigger:
		return "trigger"
	case WorkMigrate:
		return "migrate"
	case WorkVerify:
		return "verify"
	case WorkFinalize:
		return "finalize"
	}
	return fmt.Sprintf("work(%d)", k.Kind)
}

func hostWork(name string) WorkKey { return WorkKey{Kind: WorkHost, Host: name} }

var (
	routeWork    = WorkKey{Kind: WorkRoute}
	gateWork     = WorkKey{Kind: WorkGate}
	triggerWork  = WorkKey{Kind: WorkTrigger}
	migrateWork  = WorkKey{Kind: WorkMigrate}
	verifyWork   = WorkKey{Kind: WorkVerify}
	finalizeWork = WorkKey{Kind: WorkFinalize}
)

// input is one thing the run loop feeds the step.
type input interface{ isInput() }

// startInput begins a run, once every host was inspected.
type startInput struct {
	info      RunInfo
	actor     Actor
	target    string // a rollback run's release
	notices   []string
	checklist []ChecklistItem // the plan's (deploys)
	promotion RuleCheck       // the 3-2-1 environments check (deploys)
}

// resumeInput continues a run folded from its journal.
type resumeInput struct {
	actor    Actor
	pid      int
	observed []HostObservation
	notices  []string
}

// HostObservation is what a host reported about itself when a run resumed.
type HostObservation struct {
	Name string
	HostStatus
}

// commandInput is an operator's command.
type commandInput struct{ cmd Command }

// workInput carries the results of work in flight, in the order they came.
type workInput struct{ results []workResult }

// workResult is what a piece of work reported: events (phases, output,
// observations), an error, and whether the work has ended.
type workResult struct {
	key    WorkKey
	action Action // the action the work performs
	events []Event
	err    error
	done   bool
}

// measureInput is a measurement taken for the gate or the trigger.
type measureInput struct {
	key       WorkKey // gateWork or triggerWork
	action    Action
	m         Measurement
	err       error
	cancelled bool
}

// finalInput is the result of ActFinalize.
type finalInput struct {
	events []Event // route and prune results
	probe  *ProbeSummary
}

// routerInput is what the router did on its own and reports for the
// journal (an HAProxy adapter re-applying the routes after a reload).
type routerInput struct{ message string }

// tickInput: time passed (a wait the step asked for ended).
type tickInput struct{}

// stopInput: the run was interrupted (signal, cancelled context): work in
// flight finishes, nothing new starts; an outcome already decided is
// finished at once.
type stopInput struct{}

// abortInput: the run was interrupted a second time (a second Ctrl-C):
// the loop has cancelled the work in flight (a hung hook or restart is
// killed and its host fails), and a deploy still running rolls back what
// it switched, as an operator's abort does. A run already rolling back,
// or whose outcome is decided, stops as after a first interrupt.
type abortInput struct{ actor Actor }

// haltInput: the journal cannot be written; nothing more is done.
// Unstarted are the actions the run loop did not perform because their
// step's events could not be journaled: no result of theirs will come, so
// they are not in flight.
type haltInput struct{ unstarted []Action }

func (startInput) isInput()   {}
func (resumeInput) isInput()  {}
func (commandInput) isInput() {}
func (workInput) isInput()    {}
func (measureInput) isInput() {}
func (finalInput) isInput()   {}
func (routerInput) isInput()  {}
func (tickInput) isInput()    {}
func (stopInput) isInput()    {}
func (abortInput) isInput()   {}
func (haltInput) isInput()    {}

// output is what the step decided.
type output struct {
	// events are journaled, then published, in order. They are already
	// folded into the machine's state.
	events []Event
	// actions are the I/O to perform.
	actions []Action
	// reply answers a commandInput: nil when the command was accepted.
	reply error
	// wake is when the step wants a tickInput (zero: no timer).
	wake time.Time
}

// runRules are the plan's facts the step decides with. A State carries
// what a command's rule needs (Check); these are the rest.
type runRules struct {
	// gate judges steps and the release with all traffic; nil when nothing
	// measures.
	gate *GateSpec
	// trigger is the auto-rollback trigger; nil when there is none.
	trigger *TriggerSpec
	// migrate: the plan has migrate hooks; smoke: smoke checks; cache: a
	// cache namespace to check.
	migrate, smoke, cache bool
	// settle is how long probe traffic runs with the release in service
	// after a successful run; probe says probe traffic runs at all.
	settle time.Duration
	probe  bool
	// sloP99 is the p99 the hitless verdict holds probe traffic to.
	sloP99 time.Duration
	// skipRollbackPath, when set, is why overrideBy overrode a failed
	// rollback-path check.
	skipRollbackPath, overrideBy string
	// routed: the run drives a router (routes are settled at the end);
	// traffic: the strategy moves traffic by steps (canary, blue/green, A/B).
	routed, traffic bool
	// keep is keep_releases (0: no pruning).
	keep int
	// halt: the plan's on_failure is halt (a failed run stops where it is).
	halt bool
}

// machine is one run's decision-maker. Its state is the fold of the
// journaled events; work records what is in flight (not journaled: a
// resumed run redoes it).
type machine struct {
	st      *State
	planner Planner
	rules   runRules
	work    map[WorkKey]Action
	// held is the hold reason last journaled (journaled once, not on
	// every pass).
	held string
	// stopped: interrupted, nothing new starts; halted: the journal failed,
	// nothing at all is done.
	stopped, halted bool
	// cut: an interrupt ended the settle wait early; cutNoticed: the
	// journal says the last measurement was cut short.
	cut, cutNoticed bool
	// serial numbers the work begun, so that a late result of cancelled
	// work is never taken for newer work of the same key.
	serial uint64
	// lastWatch is the serial of the trigger's measurement begun when a
	// deploy's success was decided: the run settles only once it is back.
	lastWatch uint64
}

func newMachine(st *State, p Planner, rules runRules) *machine {
	return &machine{st: st, planner: p, rules: rules, work: map[WorkKey]Action{}}
}

// step decides what the run does with one input.
func (m *machine) step(now time.Time, in input) output {
	var out output
	switch in := in.(type) {
	case startInput:
		m.start(now, in, &out)
	case resumeInput:
		m.resume(now, in, &out)
	case commandInput:
		evs, err := decideCommand(m.st, in.cmd)
		if err != nil {
			m.emit(&out, now, refusal(in.cmd, err))
			out.reply = err
		} else {
			m.emit(&out, now, evs...)
		}
	case workInput:
		for _, r := range in.results {
			m.result(now, r, &out)
		}
	case measureInput:
		m.measured(now, in, &out)
	case finalInput:
		m.finished(now, in, &out)
	case routerInput:
		if m.st.Active() {
			m.emit(&out, now, Event{Type: EvNotice, Message: in.message})
		}
	case tickInput:
	case stopInput:
		m.stop(now, &out)
	case abortInput:
		m.abort(now, in.actor, &out)
	case haltInput:
		m.halted, m.stopped = true, true
		for _, a := range in.unstarted {
			for k, w := range m.work {
				if a.Serial != 0 && w.Serial == a.Serial {
					delete(m.work, k)
				}
			}
		}
		m.cancel(&out, gateWork, triggerWork)
	}
	m.advance(now, &out)
	return out
}

// stop answers an interrupt: work in flight finishes, nothing new
// starts; an outcome already decided is finished at once.
func (m *machine) stop(now time.Time, out *output) {
	if m.st.Settling != "" {
		m.cut = true // the outcome is decided: finish now
		if !m.cutNoticed && m.st.Status == StatusRunning && (m.busy(gateWork) || m.watching()) {
			// Say so: the run ends without its last judgement.
			m.cutNoticed = true
			m.emit(out, now, Event{Type: EvNotice, Error: fmt.Sprintf("interrupted while settling: %s was not judged with all its traffic (the last measurement was cut short)", m.st.Info.Release)})
		}
	} else if !m.stopped && m.st.Active() {
		m.stopped = true
		m.emit(out, now, Event{Type: EvNotice, Message: "run interrupted: work in flight finishes, nothing new starts; `flightdeck resume` (or the next deploy) finishes it"})
	}
	m.cancel(out, gateWork, triggerWork)
}

// abort answers a second interrupt. The work in flight was cancelled by
// the loop; its results come back as failures. A deploy that is running
// or paused rolls back every host it touched (the outcome is "aborted");
// anything else stops once the cancelled work is back.
func (m *machine) abort(now time.Time, actor Actor, out *output) {
	st := m.st
	if st.Settling != "" || st.Info.Kind != KindDeploy || (st.Status != StatusRunning && st.Status != StatusPaused) {
		m.stop(now, out)
		return
	}
	m.stopped = false // the rollback is new work, started on purpose
	m.emit(out, now, Event{Type: EvRollbackStart, Command: string(CmdAbort), Actor: actor.Name, Fingerprint: actor.Fingerprint,
		Message: "aborted by a second interrupt: the work in flight was stopped; rolling back the hosts this run switched " +
			"(interrupt again to exit at once; `flightdeck resume` then finishes the rollback)"})
}

// done reports whether the run loop may end: the run finished, or it was
// stopped and nothing is in flight.
func (m *machine) done() bool {
	return m.st.Status == StatusFinished || (m.stopped && len(m.work) == 0)
}

// emit stamps events (sequence, run, time) and folds them into the state.
func (m *machine) emit(out *output, now time.Time, evs ...Event) {
	for _, e := range evs {
		e.Seq = m.st.Seq + 1
		if e.Run == "" {
			e.Run = m.st.Run
		}
		if e.Time.IsZero() {
			e.Time = now
		}
		rollbackStarts := e.Type == EvRollbackStart && m.st.Status != StatusRollingBack && m.st.Status != StatusFinished
		m.st.Apply(e)
		out.events = append(out.events, e)
		if rollbackStarts {
			// A rollback does not wait for the gate's window, and the
			// trigger has nothing left to do.
			m.cancel(out, gateWork, triggerWork)
		}
	}
}

// begin starts work: the run loop performs a.
func (m *machine) begin(out *output, k WorkKey, a Action) {
	m.serial++
	a.Serial = m.serial
	m.work[k] = a
	out.actions = append(out.actions, a)
}

func (m *machine) busy(k WorkKey) bool {
	_, ok := m.work[k]
	return ok
}

// cancel stops measurements in flight; their results no longer count.
func (m *machine) cancel(out *output, keys ...WorkKey) {
	for _, k := range keys {
		if m.busy(k) {
			delete(m.work, k)
			out.actions = append(out.actions, Action{Kind: ActCancel, Work: k})
		}
	}
}

// hostsBusy reports whether work that changes hosts or traffic is in flight.
func (m *machine) hostsBusy() bool {
	for k := range m.work {
		switch k.Kind {
		case WorkHost, WorkRoute, WorkMigrate, WorkVerify:
			return true
		}
	}
	return false
}

// wakeAt asks for a tick at t (the earliest asked for wins).
func (out *output) wakeAt(t time.Time) {
	if out.wake.IsZero() || t.Before(out.wake) {
		out.wake = t
	}
}

// start journals the run's beginning: what it is, the notices before it,
// the plan's checklist and the 3-2-1 environments check; a deploy checks
// its rollback path before any switch (the prepares run beside the check).
func (m *machine) start(now time.Time, in startInput, out *output) {
	info := in.info
	m.emit(out, now, Event{Type: EvRunStarted, Actor: in.actor.Name, Fingerprint: in.actor.Fingerprint,
		Release: info.Release, Start: &info, Target: in.target})
	m.notices(out, now, in.notices)
	if info.Kind != KindDeploy {
		return
	}
	for i := range in.checklist {
		it := in.checklist[i]
		m.emit(out, now, Event{Type: EvChecklistItem, Item: &it, Actor: it.AckBy})
	}
	if pr := in.promotion; pr.Status != "" {
		m.emit(out, now, ruleEvent(RuleEnvironments, pr))
	}
	m.begin(out, verifyWork, Action{Kind: ActVerify})
	m.startTrigger(out, 0)
}

func (m *machine) notices(out *output, now time.Time, notices []string) {
	for _, n := range notices {
		m.emit(out, now, Event{Type: EvNotice, Message: n})
	}
}

// resume continues a run whose process died: what every host runs now is
// journaled, and the run goes on from the journal's state.
func (m *machine) resume(now time.Time, in resumeInput, out *output) {
	m.emit(out, now, Event{Type: EvRunResumed, Actor: in.actor.Name,
		Message: fmt.Sprintf("resumed by %s (pid %d) after the run's process stopped", in.actor.Name, in.pid)})
	m.notices(out, now, in.notices)
	for _, o := range in.observed {
		m.emit(out, now, Event{Type: EvHostObserved, Host: o.Name, Release: o.Current, Releases: o.Releases})
	}
	st := m.st
	if st.Info.Kind == KindAdopt {
		// Adopting switches nothing; a release whose manifest was not
		// renamed into place is simply not adopted yet.
		m.emit(out, now, Event{Type: EvRunFinished, Outcome: OutcomeFailed, Release: st.Info.Release,
			Error: "adopt was interrupted; nothing was switched (run adopt again)"})
		return
	}
	if st.Info.Kind != KindDeploy || st.Status == StatusRollingBack {
		return
	}
	if !allPrepared(st) {
		// The crash came before any host was switched (every host is
		// prepared before the first switch), and the built release is gone
		// with the process: end the run with every host on its release.
		m.finish(now, Action{Kind: ActFinish, Outcome: OutcomeFailed,
			Reason: "interrupted while preparing; no host was switched (deploy again to retry)"}, out)
		return
	}
	if st.Rule1.Status == "" {
		m.begin(out, verifyWork, Action{Kind: ActVerify})
	}
	m.startTrigger(out, 0)
}

func allPrepared(s *State) bool {
	for _, h := range s.Hosts {
		if !h.Prepared {
			return false
		}
	}
	return true
}

// result takes one work report.
func (m *machine) result(now time.Time, r workResult, out *output) {
	if len(r.events) > 0 {
		m.emit(out, now, r.events...)
		for _, e := range r.events {
			if e.Type == EvObserved && e.Observed != nil {
				m.emit(out, now, m.itemFor(*e.Observed)...)
			}
		}
	}
	if r.done {
		delete(m.work, r.key)
	}
	switch r.key.Kind {
	case WorkHost:
		if r.err != nil {
			m.emit(out, now, Event{Type: EvHostPhase, Host: r.key.Host, Phase: PhaseFailed, Release: r.action.Release,
				Error: r.err.Error(), Command: r.action.Kind.String()})
		}
	case WorkMigrate:
		if r.err != nil {
			// The host the migration ran for fails: nothing was switched yet.
			m.emit(out, now, Event{Type: EvObserved, Host: r.action.Host, Observed: &Observation{Kind: ObsMigrated, Note: r.err.Error()}},
				Event{Type: EvHostPhase, Host: r.action.Host, Phase: PhaseFailed, Release: r.action.Release,
					Error: r.err.Error(), Command: ActMigrate.String()})
		}
	case WorkVerify:
		if r.done {
			m.rollbackPath(now, r.err, out)
		}
	case WorkRoute:
		if r.err != nil {
			// The planner rolls back a run whose traffic could not be moved
			// (and ends a rollback that cannot move it back).
			m.emit(out, now, Event{Type: EvNotice, Command: ActRoute.String(), Error: "router: " + r.err.Error()})
		}
	}
}

// measured takes a gate or trigger measurement.
func (m *machine) measured(now time.Time, in measureInput, out *output) {
	if a, ok := m.work[in.key]; !ok || a.Serial != in.action.Serial {
		return // cancelled: a rollback or the end does not wait for it
	}
	delete(m.work, in.key)
	if in.cancelled {
		return
	}
	switch in.key {
	case gateWork:
		m.gateMeasured(now, in, out)
	case triggerWork:
		m.triggerMeasured(now, in, out)
	}
}

// advance asks the planner what to do until the state stops changing,
// taking each action: run-state decisions become events, I/O becomes
// actions (skipping work already in flight).
func (m *machine) advance(now time.Time, out *output) {
	for range 1000 {
		if m.halted || m.st.Status == StatusFinished || m.busy(finalizeWork) {
			return
		}
		if m.st.Settling != "" {
			if !m.settle(now, out) {
				return
			}
			continue
		}
		if m.stopped {
			return // interrupted
		}
		deploy := m.st.Info.Kind == KindDeploy
		if deploy && m.st.Rule1.Status == RuleFailed {
			// No rollback path: nothing switches; the run ends once the
			// prepares in flight (started beside the check) are done.
			m.finish(now, Action{Kind: ActFinish, Outcome: OutcomeFailed,
				Reason: m.st.Rule1.Note + " (nothing was switched; --no-rollback-path --reason TEXT overrides)"}, out)
			return
		}
		// While the rollback path is being checked, the hosts are prepared
		// (a prepared release is not current: nothing a failed check must
		// undo); nothing else is done before the check's word.
		checking := m.busy(verifyWork) || (deploy && m.st.Rule1.Status == "")
		changed := false
		for _, a := range m.planner.Next(m.st, now) {
			if checking && a.Kind != ActPrepare {
				continue
			}
			if m.take(now, a, out) {
				changed = true
			}
		}
		if !changed {
			return
		}
	}
	panic("engine: the step did not settle after 1000 planner passes")
}

// take performs one planner action; it reports whether the state changed
// (so that the planner is asked again at once).
func (m *machine) take(now time.Time, a Action, out *output) bool {
	st := m.st
	switch a.Kind {
	case ActPrepare, ActSwitch, ActRevert, ActStandby:
		k := hostWork(a.Host)
		if m.busy(k) || st.Host(a.Host) == nil {
			return false
		}
		if (a.Kind == ActSwitch || a.Kind == ActStandby) && st.Info.Kind == KindDeploy && st.Status != StatusRollingBack {
			if m.rules.migrate && !st.Observed.Migrated {
				// The migrate hooks run once, before the first switch; the
				// switches wait for them.
				if !m.busy(migrateWork) && !st.Observed.MigrateFailed {
					m.begin(out, migrateWork, Action{Kind: ActMigrate, Host: a.Host, Release: a.Release})
				}
				return false
			}
			a.Smoke = m.rules.smoke && !st.Observed.Smoke && !m.assigned(func(w Action) bool { return w.Smoke })
			a.CacheCheck = m.rules.cache && !st.Observed.Cache && !m.assigned(func(w Action) bool { return w.CacheCheck })
		}
		a.Rebalance = m.rules.routed && (!m.rules.traffic || st.Info.Kind == KindRollback) && (a.Kind == ActSwitch || a.Kind == ActRevert)
		m.begin(out, k, a)
	case ActRoute:
		if m.busy(routeWork) {
			return false
		}
		a.Previous = st.Info.Previous
		if st.Status == StatusRollingBack && st.RevertTo != "" {
			a.Previous = st.RevertTo
		}
		a.CohortOn = st.Cohort > 0
		a.Release = st.Info.Release
		m.begin(out, routeWork, a)
	case ActMeasure:
		g := m.rules.gate
		if g == nil || m.busy(gateWork) {
			return false
		}
		m.measure(now, out, a.Wave, fmt.Sprintf("measuring step %d for %s", a.Wave, g.Interval), fmt.Sprintf("the gate's verdict on step %d", a.Wave))
	case ActStep:
		if a.Wave == len(st.Info.Steps) && a.Wave > 1 && needsApproval(st, "promote") {
			if st.Proposal != nil {
				return false
			}
			m.emit(out, now, Event{Type: EvApprovalRequested, Actor: AutoActor.Name, Wave: a.Wave,
				Message: fmt.Sprintf("the gate passed; promotion to %g%% waits for an operator's approval", a.Weight)})
			return true
		}
		m.emit(out, now, stepEvent(st, a.Wave, a.Weight, ""))
		return true
	case ActAwait:
		m.emit(out, now, Event{Type: EvPaused, Actor: AutoActor.Name, Message: a.Reason})
		return true
	case ActHold:
		if m.held != a.Reason {
			m.held = a.Reason
			m.emit(out, now, Event{Type: EvNotice, Message: a.Reason})
		}
	case ActWaveStart:
		m.emit(out, now, Event{Type: EvWaveStarted, Wave: a.Wave,
			Message: fmt.Sprintf("wave %d/%d: %s", a.Wave, len(st.Info.Waves), strings.Join(st.Info.Waves[a.Wave-1], ", "))})
		return true
	case ActWaveDone:
		m.emit(out, now, Event{Type: EvWaveDone, Wave: a.Wave})
		return true
	case ActWait:
		if !st.WaitUntil.Equal(a.Until) {
			m.emit(out, now, Event{Type: EvWaiting, Until: a.Until, Next: a.Reason,
				Message: fmt.Sprintf("%s in %s", a.Reason, a.Until.Sub(now).Round(time.Millisecond))})
		}
		out.wakeAt(a.Until)
	case ActStartRollback:
		m.emit(out, now, Event{Type: EvRollbackStart, Actor: AutoActor.Name, Message: a.Reason, Command: string(CmdRollback),
			Target: st.RevertTo})
		return true
	case ActFinish:
		return m.finish(now, a, out)
	}
	return false
}

// assigned reports whether work in flight was given a task (smoke, cache).
func (m *machine) assigned(task func(Action) bool) bool {
	for k, a := range m.work {
		if k.Kind == WorkHost && task(a) {
			return true
		}
	}
	return false
}

// measure starts a gate measurement of the new release (step: the step it
// judges, or the last one while settling; next: what its end brings).
func (m *machine) measure(now time.Time, out *output, step int, what, next string) {
	g := m.rules.gate
	m.emit(out, now, Event{Type: EvWaiting, Until: now.Add(g.Interval), Wave: step, Message: what, Next: next})
	m.begin(out, gateWork, Action{Kind: ActMeasure, Wave: step, Release: m.st.Info.Release, Window: g.Interval})
}

// gateMeasured judges a gate measurement and journals it with its verdict.
func (m *machine) gateMeasured(now time.Time, in measureInput, out *output) {
	if m.st.Status == StatusRollingBack || m.st.Finishing {
		return
	}
	g, step, rel := m.rules.gate, in.action.Wave, in.action.Release
	var res GateResult
	meas := in.m
	if in.err != nil {
		res = g.Failure(step, in.err)
	} else {
		meas.Release = rel
		res = g.Evaluate(step, meas)
	}
	m.emit(out, now, Event{Type: EvMetricSample, Release: rel, Sample: &meas, Wave: step},
		Event{Type: EvGateResult, Release: rel, Gate: &res, Wave: step})
}

// startTrigger starts the auto-rollback trigger's next measurement of a
// deploy's release (after delay, when the source failed).
func (m *machine) startTrigger(out *output, delay time.Duration) {
	tr := m.rules.trigger
	if tr == nil || m.st.Info.Kind != KindDeploy || m.busy(triggerWork) || m.stopped {
		return
	}
	m.begin(out, triggerWork, Action{Kind: ActTrigger, Release: m.st.Info.Release, Window: tr.For, Delay: delay})
}

// triggerMeasured is the auto-rollback trigger: a measurement over its
// window that breaks its thresholds rolls the run back, as actor auto,
// through the rule of every operator's rollback.
func (m *machine) triggerMeasured(now time.Time, in measureInput, out *output) {
	st := m.st
	if !st.Active() || st.Status == StatusRollingBack || st.Finishing {
		return
	}
	tr := m.rules.trigger
	last := m.lastWatch != 0 && in.action.Serial == m.lastWatch // the window the settling run waits for
	if in.err != nil {
		if last {
			m.emit(out, now, Event{Type: EvNotice, Error: fmt.Sprintf("auto-rollback trigger could not measure %s with all its traffic: %v", in.action.Release, in.err)})
			return
		}
		m.startTrigger(out, tr.For) // a failing source is asked again after a window, not in a loop
		return
	}
	why := tr.Breach(in.m)
	if why == "" {
		if !last {
			m.startTrigger(out, 0)
		}
		return
	}
	meas := in.m
	meas.Release = in.action.Release
	reason := "auto-rollback trigger: " + why
	// The measurement that fired the trigger is journaled with its values.
	m.emit(out, now, Event{Type: EvMetricSample, Release: meas.Release, Sample: &meas, Message: reason})
	cmd := Command{Kind: CmdRollback, Actor: AutoActor, Reason: reason}
	evs, err := decideCommand(st, cmd)
	if err != nil {
		m.emit(out, now, refusal(cmd, err))
		return
	}
	m.emit(out, now, evs...)
}
