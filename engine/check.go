package engine

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// ErrRunActive is returned (wrapped) for a command that starts a run (a
// deploy) while a run is in progress.
var ErrRunActive = errors.New("a run is in progress")

// Check reports whether the engine would accept command c in state st:
// nil when it would, otherwise the very error the run would refuse it
// with. It is pure (no I/O, no clock): the cockpit asks it to grey out a
// key, and the run loop asks it before it accepts a command, so both
// answer with one rule.
//
// st is the run's state, or the last run's (finished) state between runs,
// or nil when no run was seen. Between runs (st nil or not active) only
// the commands that start a new run are available: CmdDeploy (role owner)
// and CmdRollback (role operator; a rollback run to c.To, or to the
// release live before the last successful deploy); every other command
// is refused with ErrNoRun.
func Check(st *State, c Command) error {
	_, err := decideCommand(st, c)
	return err
}

// decideCommand is the rule of every operator command: the events that
// accepting c in state st journals, or why it is refused. The events are
// not stamped (sequence, time, run): the caller does that.
func decideCommand(st *State, c Command) ([]Event, error) {
	if c.Kind == CmdDeploy {
		if err := AuthorizeOwner(c.Actor, "start a deploy"); err != nil {
			return nil, err
		}
	} else if err := Authorize(c.Actor, c.Kind); err != nil {
		return nil, err
	}
	if st == nil || !st.Active() {
		return nil, betweenRuns(c)
	}
	if c.Kind == CmdDeploy {
		return nil, fmt.Errorf("cannot deploy: %w (run %s is %s)", ErrRunActive, st.Run, st.Status)
	}
	if c.Kind == CmdNote {
		// A note changes nothing, so it is journaled while the run settles too.
		if c.Reason == "" {
			return nil, errors.New("a note needs a text")
		}
		return []Event{
			{Type: EvCommand, Command: string(c.Kind), Message: c.Reason, Actor: c.Actor.Name, Fingerprint: c.Actor.Fingerprint},
			{Type: EvNotice, Message: c.Reason, Actor: c.Actor.Name, Fingerprint: c.Actor.Fingerprint},
		}, nil
	}
	if err := settling(st, c); err != nil {
		return nil, err
	}
	accept := func(extra ...Event) []Event {
		evs := append([]Event{{Type: EvCommand, Command: string(c.Kind), Target: c.To, Message: c.Reason}}, extra...)
		if c.Kind == CmdSetWeight {
			evs[0].Weight = ptr(c.Weight)
		}
		for i := range evs {
			evs[i].Actor, evs[i].Fingerprint = c.Actor.Name, c.Actor.Fingerprint
		}
		return evs
	}
	switch c.Kind {
	case CmdPause:
		if st.Status != StatusRunning {
			return nil, fmt.Errorf("cannot pause: run is %s", st.Status)
		}
		return accept(Event{Type: EvPaused, Message: "paused by " + c.Actor.Name}), nil
	case CmdResume:
		if st.Status != StatusPaused {
			return nil, fmt.Errorf("cannot resume: run is %s", st.Status)
		}
		return accept(Event{Type: EvResumed, Message: "resumed by " + c.Actor.Name}), nil
	case CmdRollback, CmdAbort:
		if st.Status == StatusRollingBack {
			return nil, errors.New("a rollback is already in progress")
		}
		if st.Status != StatusRunning && st.Status != StatusPaused {
			return nil, fmt.Errorf("cannot %s: run is %s", c.Kind, st.Status)
		}
		if c.To != "" {
			if err := ValidateReleaseID(c.To); err != nil {
				return nil, err
			}
		}
		msg := c.Reason
		if msg == "" {
			msg = fmt.Sprintf("%s by %s", c.Kind, c.Actor.Name)
		}
		return accept(Event{Type: EvRollbackStart, Command: string(c.Kind), Target: c.To, Message: msg}), nil
	case CmdPromote, CmdStepUp, CmdStepDown, CmdPromoteAll, CmdSetWeight:
		next, weight, err := stepTarget(st, c)
		if err != nil {
			return nil, err
		}
		steps := st.Info.Steps
		if next == len(steps) && c.Kind != CmdStepDown && needsApproval(st, "promote") {
			if st.Proposal != nil {
				return nil, fmt.Errorf("promotion to %g%% proposed by %s already waits for a second operator's approval", weight, st.Proposal.By)
			}
			return accept(Event{Type: EvApprovalRequested, Wave: next,
				Message: fmt.Sprintf("%s proposes promotion to %g%%; waiting for a second operator's approval", c.Actor.Name, weight)}), nil
		}
		return accept(stepEvent(st, next, weight, fmt.Sprintf("%s by %s", c.Kind, c.Actor.Name))), nil
	case CmdAck:
		i := slices.IndexFunc(st.Checklist, func(it ChecklistItem) bool { return it.ID == c.Item })
		if i < 0 {
			return nil, fmt.Errorf("no checklist item %q in this run", c.Item)
		}
		found := st.Checklist[i]
		if found.State == ItemVerified || found.State == ItemNA {
			return nil, fmt.Errorf("%s is already %s; nothing to acknowledge", c.Item, found.State)
		}
		it := found
		it.State, it.AckBy = ItemAcknowledged, c.Actor.Name
		reason := c.Reason
		if reason == "" {
			reason = "acknowledged by " + c.Actor.Name
		}
		it.Evidence = joinNonEmpty(found.Evidence, reason)
		return accept(Event{Type: EvChecklistItem, Item: &it}), nil
	case CmdApprove:
		p := st.Proposal
		if p == nil {
			return nil, errors.New("there is no promotion waiting for approval")
		}
		if p.By == c.Actor.Name && p.Fingerprint == c.Actor.Fingerprint {
			return nil, fmt.Errorf("%s proposed this promotion; a second operator must approve it", c.Actor.Name)
		}
		return accept(stepEvent(st, p.Step, float64(st.Info.Steps[p.Step-1]), fmt.Sprintf("proposed by %s, approved by %s", p.By, c.Actor.Name))), nil
	}
	return nil, fmt.Errorf("%s is not supported by the %s strategy", c.Kind, st.Info.Strategy)
}

// settling refuses what a run whose outcome is decided no longer takes:
// everything once it is being finished; while a successful deploy still
// settles (measured, probe traffic with the release in service), all but
// a rollback or an abort, which take it back.
func settling(st *State, c Command) error {
	switch {
	case st.Finishing:
		return fmt.Errorf("cannot %s: %w: it %s; `flightdeck rollback` starts a new run", c.Kind, ErrRunFinishing, st.Settling)
	case st.Settling == "":
		return nil
	case st.Settling == OutcomeSucceeded && st.Info.Kind == KindDeploy && st.Status == StatusRunning &&
		(c.Kind == CmdRollback || c.Kind == CmdAbort):
		return nil
	}
	return fmt.Errorf("cannot %s: %w: it %s and probes traffic until %s; only a rollback or an abort takes it back",
		c.Kind, ErrRunFinishing, st.Settling, st.SettleUntil.Format("15:04:05"))
}

// betweenRuns answers a command when no run is in progress.
func betweenRuns(c Command) error {
	switch c.Kind {
	case CmdDeploy:
		return nil
	case CmdRollback:
		if c.To != "" {
			return ValidateReleaseID(c.To)
		}
		return nil
	}
	return fmt.Errorf("cannot %s: %w", c.Kind, ErrNoRun)
}

// stepTarget is the traffic step (1-based) and weight a stepping command
// moves to.
func stepTarget(st *State, c Command) (int, float64, error) {
	steps := st.Info.Steps
	if len(steps) == 0 {
		return 0, 0, fmt.Errorf("%s needs a traffic strategy (canary, bluegreen, ab); this run is %s", c.Kind, st.Info.Strategy)
	}
	if st.Status != StatusRunning && st.Status != StatusPaused {
		return 0, 0, fmt.Errorf("cannot %s: run is %s", c.Kind, st.Status)
	}
	next := st.Step + 1
	switch c.Kind {
	case CmdStepDown:
		next = st.Step - 1
	case CmdPromoteAll:
		next = len(steps)
	case CmdSetWeight:
		return weightStep(st, c.Weight)
	}
	if next < 1 || next > len(steps) {
		return 0, 0, fmt.Errorf("cannot %s: already at step %d of %d", c.Kind, st.Step, len(steps))
	}
	return next, float64(steps[next-1]), nil
}

// weightStep places an operator's weight among a canary's steps: the step
// is the last one whose weight it reaches (at least the first), so the
// next promotion goes on to the step above it.
func weightStep(st *State, w float64) (int, float64, error) {
	if st.Info.Strategy != "canary" {
		return 0, 0, fmt.Errorf("set-weight needs a canary; this run is %s", st.Info.Strategy)
	}
	if math.IsNaN(w) || w <= 0 || w > 100 {
		return 0, 0, fmt.Errorf("cannot set weight %g%%: choose more than 0 and at most 100 (roll back to take all traffic away)", w)
	}
	if st.Step > 0 && w == st.StepTarget {
		return 0, 0, fmt.Errorf("cannot set weight %g%%: the canary is already at %g%%", w, w)
	}
	step := 1
	for i, s := range st.Info.Steps {
		if float64(s) <= w {
			step = i + 1
		}
	}
	return step, w, nil
}

// needsApproval reports whether the run's policy makes action (e.g.
// "promote") wait for a second operator.
func needsApproval(st *State, action string) bool {
	return slices.Contains(st.Info.RequireApproval, action)
}

// stepEvent starts traffic step n at weight w; why says who moved it.
func stepEvent(st *State, n int, w float64, why string) Event {
	msg := fmt.Sprintf("step %d/%d: %g%% of traffic", n, len(st.Info.Steps), w)
	if why != "" {
		msg += " (" + why + ")"
	}
	return Event{Type: EvStepStarted, Wave: n, Weight: ptr(w), Release: st.Info.Release, Message: msg}
}

// refusal is the journal's record of a refused command.
func refusal(c Command, err error) Event {
	return Event{Type: EvCommandRefused, Actor: c.Actor.Name, Fingerprint: c.Actor.Fingerprint,
		Command: string(c.Kind), Error: err.Error()}
}
