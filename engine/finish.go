package engine

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// The end of a run, decided in the step: a planner's Finish becomes
// Settling (a successful deploy keeps being measured, and may still be
// rolled back, until the settle time passed and the gate judged the
// release with all its traffic), then Finishing (routes settled, old
// releases pruned, probe traffic summarised: ActFinalize), then the
// verdict, the report and RunFinished.

// finish takes a planner's Finish; it reports whether the state changed.
func (m *machine) finish(now time.Time, a Action, out *output) bool {
	if m.hostsBusy() {
		return false // work in flight ends first
	}
	st := m.st
	m.recovered(now, a.Outcome, out)
	if a.Outcome == OutcomeSucceeded {
		deploy := st.Info.Kind == KindDeploy
		measure := m.rules.gate != nil && deploy
		// Without a gate to judge the release with all its traffic, the
		// trigger does: the run waits for one whole window of it. (With a
		// gate, the trigger goes on measuring while the run settles.)
		watch := m.rules.trigger != nil && deploy && !m.stopped && !measure
		if m.rules.settle > 0 || measure || watch {
			msg := "outcome decided: succeeded; finishing"
			switch {
			case m.rules.settle > 0:
				msg = fmt.Sprintf("probing %s more with the release in service", m.rules.settle)
			case watch:
				msg = fmt.Sprintf("watching %s with all its traffic for %s (auto-rollback trigger)", st.Info.Release, m.rules.trigger.For)
			}
			until := now.Add(m.rules.settle)
			if watch {
				until = now.Add(max(m.rules.settle, m.rules.trigger.For)) // the countdown says when it ends
			}
			m.emit(out, now, Event{Type: EvSettling, Outcome: a.Outcome, Until: until, Message: msg})
			if measure {
				// The release is judged once more, with all its traffic: a
				// step's measurement in flight no longer counts.
				m.cancel(out, gateWork)
				m.measure(now, out, st.Step, fmt.Sprintf("measuring %s with all its traffic for %s", st.Info.Release, m.rules.gate.Interval),
					fmt.Sprintf("the gate's verdict on %s with all its traffic", st.Info.Release))
			}
			if watch {
				// The trigger watches one whole window with all the traffic
				// on the release before the run may succeed.
				m.cancel(out, triggerWork)
				m.startTrigger(out, 0)
				m.lastWatch = m.work[triggerWork].Serial
			}
			return true
		}
	}
	m.finalize(now, a.Outcome, a.Reason, out)
	return true
}

// recovered journals the end of a rollback once every host is back on the
// release it reverted to: the recovery time (RTO) runs from the rollback's
// start to this moment. What follows it (the probe's settle window, the
// route settled, the report) watches a fleet that has already recovered,
// and is not counted: the RTO used to end with the run, so a 3 s settle
// window read as a 3 s recovery. A rollback that failed never recovered
// and has no RTO.
func (m *machine) recovered(now time.Time, outcome Outcome, out *output) {
	st := m.st
	if st.RollbackAt.IsZero() || !st.RolledBackAt.IsZero() || outcome == OutcomeFailed {
		return
	}
	to := cmp.Or(st.RevertTo, st.Info.Previous)
	what := "on " + to
	if to == "" {
		what = "on its previous release"
	}
	m.emit(out, now, Event{Type: EvRolledBack, Target: to,
		Message: fmt.Sprintf("rollback finished: every host back %s in %s (RTO)", what, now.Sub(st.RollbackAt).Round(time.Millisecond))})
}

// settle waits, once the outcome is decided, for the settle time and the
// gate's last word; it reports whether the state changed.
func (m *machine) settle(now time.Time, out *output) bool {
	st := m.st
	if st.Status == StatusRunning && !m.cut && st.Info.Kind == KindDeploy {
		if m.rules.gate != nil {
			if m.busy(gateWork) {
				return false
			}
			if i := len(st.Gates) - 1; i >= st.SettleGateFrom && st.Gates[i].Verdict == VerdictFail {
				// A release whose last measurement broke the SLO does not
				// succeed: it is rolled back like any failing step.
				m.emit(out, now, Event{Type: EvRollbackStart, Actor: AutoActor.Name, Command: string(CmdRollback), Target: st.RevertTo,
					Message: fmt.Sprintf("SLO gate failed with all traffic on %s: %s", st.Info.Release, st.Gates[i].Reason)})
				return true
			}
		}
		if m.watching() {
			return false // the trigger's last window with all the traffic
		}
	}
	if !m.cut && now.Before(st.SettleUntil) {
		out.wakeAt(st.SettleUntil)
		return false
	}
	m.finalize(now, st.Settling, "", out)
	return true
}

// watching reports whether the trigger's window that began when the
// outcome was decided is still being measured.
func (m *machine) watching() bool {
	a, ok := m.work[triggerWork]
	return ok && m.lastWatch != 0 && a.Serial == m.lastWatch
}

// finalize asks the run loop to end the run: routes, pruning, probe.
func (m *machine) finalize(now time.Time, outcome Outcome, reason string, out *output) {
	st := m.st
	m.emit(out, now, Event{Type: EvFinishing, Outcome: outcome, Error: reason})
	m.cancel(out, gateWork, triggerWork)
	succeeded := outcome == OutcomeSucceeded
	m.begin(out, finalizeWork, Action{Kind: ActFinalize, Outcome: outcome, Reason: reason, Release: st.Info.Release,
		SettleRoute: succeeded && m.rules.routed, CohortOn: st.Cohort > 0,
		Prune:       succeeded && st.Info.Kind == KindDeploy && m.rules.keep > 0,
		KeepDrained: outcome == OutcomeFailed && m.rules.halt})
}

// finished writes the end of the run once ActFinalize is done: the
// rollback's RTO, the checklist the whole run showed, the report with its
// verdict, and RunFinished.
func (m *machine) finished(now time.Time, in finalInput, out *output) {
	a, ok := m.work[finalizeWork]
	if !ok {
		return
	}
	delete(m.work, finalizeWork)
	if len(in.events) > 0 {
		m.emit(out, now, in.events...)
	}
	st := m.st
	rep := &Report{
		Strategy: st.Info.Strategy, Hosts: len(st.Hosts), Duration: now.Sub(st.Started),
		Outcome: a.Outcome, Gates: slices.Clone(st.Gates), Probe: in.probe,
	}
	for _, h := range st.Hosts {
		if h.Phase == PhaseFailed {
			rep.Failed = append(rep.Failed, h.Name)
		}
	}
	if !st.RollbackAt.IsZero() && !st.RolledBackAt.IsZero() {
		rep.RTO = st.RolledBackAt.Sub(st.RollbackAt)
	}
	m.emit(out, now, untouched(st, a.Outcome)...)
	m.emit(out, now, finalChecklist(st, rep)...)
	rep.Checklist = slices.Clone(st.Checklist)
	rep.Verdict = verdict(a.Outcome, a.Reason)
	if h := hitless(rep.Probe, m.rules.sloP99); h != "" {
		if a.Outcome == OutcomeSucceeded {
			rep.Verdict = h
		} else {
			rep.Verdict += " · " + h
		}
	}
	m.emit(out, now, Event{Type: EvReport, Report: rep},
		Event{Type: EvRunFinished, Outcome: a.Outcome, Error: a.Reason, Release: st.Info.Release})
}

// untouched says, when a deploy did not succeed, which hosts it never
// switched: they still run the release they had, and no longer read as
// "prepared" for a release that will not come.
func untouched(st *State, o Outcome) []Event {
	if st.Info.Kind != KindDeploy || o == OutcomeSucceeded {
		return nil
	}
	var evs []Event
	for _, h := range st.Hosts {
		if h.Touched || (h.Phase != PhasePrepared && h.Phase != PhaseQueued) {
			continue
		}
		msg := "not switched by this run: no release yet"
		if h.Current != "" {
			msg = "not switched by this run: still on " + h.Current
		}
		evs = append(evs, Event{Type: EvHostPhase, Host: h.Name, Phase: PhaseSkipped, Message: msg})
	}
	return evs
}

// verdict is the report's one-line verdict on an outcome.
func verdict(o Outcome, reason string) string {
	switch o {
	case OutcomeSucceeded:
		return "SUCCEEDED"
	case OutcomeRolledBack:
		return "ROLLED BACK: " + reason
	case OutcomeAborted:
		return "ABORTED"
	}
	return "FAILED: " + reason
}

// rollbackPath journals the 3-2-1 rollback-path check (err: the hosts
// whose previous release is missing or damaged); a failed check ends the
// deploy before anything is switched (advance), unless the plan's
// operator overrode it.
func (m *machine) rollbackPath(now time.Time, err error, out *output) {
	st := m.st
	switch {
	case err == nil && st.Info.Previous != "":
		m.emit(out, now, ruleEvent(RuleRollbackPath, RuleCheck{Status: RuleOK, Note: "previous release " + st.Info.Previous + " verified intact on every host"}))
	case err == nil:
		m.emit(out, now, ruleEvent(RuleRollbackPath, RuleCheck{Status: RuleNA, Note: "first release: nothing to roll back to"}))
	case st.Status == StatusRollingBack:
		// Aborted while checking: nothing was switched forward, and the
		// check's answer no longer decides anything.
		m.emit(out, now, ruleEvent(RuleRollbackPath, RuleCheck{Status: RuleNA, Note: "not checked to the end: the run was rolled back first (" + err.Error() + ")"}))
	case m.rules.skipRollbackPath == "":
		// The run ends (advance finishes it once no prepare is in flight).
		m.emit(out, now, ruleEvent(RuleRollbackPath, RuleCheck{Status: RuleFailed, Note: err.Error()}))
	default:
		msg := fmt.Sprintf("rollback-path check overridden by %s (%s): %v", m.rules.overrideBy, m.rules.skipRollbackPath, err)
		m.emit(out, now, Event{Type: EvNotice, Actor: m.rules.overrideBy, Message: msg},
			ruleEvent(RuleRollbackPath, RuleCheck{Status: RuleOverridden, Note: msg}))
	}
}

func ruleEvent(part RulePart, rc RuleCheck) Event {
	return Event{Type: EvRule321, Rule: &RuleResult{Part: part, Status: rc.Status}, Message: rc.Note}
}
