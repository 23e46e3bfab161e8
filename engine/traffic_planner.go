package engine

import (
	"fmt"
	"math"
	"time"
)

// Traffic actions (see Action). Route, Measure and Standby are I/O done by
// the executor; Step, Await and Hold change run state in the step.
const (
	ActStep ActionKind = iota + 100
	ActRoute
	ActMeasure
	ActStandby
	// ActAwait pauses the run (actor auto) until an operator resumes it.
	ActAwait
	// ActHold says why the run does not move on (journaled once) while it
	// waits for something to change: an acknowledgement, a promotion.
	ActHold
)

// TrafficPlanner releases by moving traffic through the router: canary
// steps (hosts follow the weight so capacity follows traffic), a
// blue/green flip (the idle slot of every host gets the release, then all
// traffic flips), and A/B (a cohort goes to the release, then, once the
// gate passed, everyone). It is pure, like WavePlanner.
type TrafficPlanner struct {
	// Slots is true when the new release runs in each host's idle slot
	// (blue/green, A/B) and the current link flips only with the traffic.
	Slots bool
	// Cohort is true for A/B: the first step applies the cohort rule.
	Cohort bool
	// Gate judges each step; nil means steps only hold for Hold.
	Gate *GateSpec
	// Hold is the least time a step lasts (human pace in the demo).
	Hold time.Duration
	// AutoPromote moves to the next step when the gate passed; otherwise
	// the run waits for an operator's promote.
	AutoPromote bool
	Halt        bool
	// MaxUnavailable bounds how many hosts are out of rotation (being
	// switched) at once, so the stable pool keeps capacity (default 1).
	MaxUnavailable int
}

// HostsFor is how many of n hosts run the new release at weight w (percent):
// ceil(w × n), at least 1.
func HostsFor(w float64, n int) int {
	if n == 0 {
		return 0
	}
	k := int(math.Ceil(w / 100 * float64(n)))
	return max(1, min(k, n))
}

// limitSwitches asks for switches of the hosts not yet live, keeping at
// most limit of them out of rotation at once (those already being switched
// count, and are asked for again: the run loop skips work in flight).
func limitSwitches(hosts []*HostState, rel string, limit int) []Action {
	acts := make([]Action, 0, len(hosts)) // asked after every step of a wave: grown once
	busy := 0
	for _, h := range hosts {
		if switching(h.Phase) {
			busy++
			acts = append(acts, Action{Kind: ActSwitch, Host: h.Name, Release: rel})
		}
	}
	for _, h := range hosts {
		if busy >= limit {
			break
		}
		if h.Phase != PhaseLive && !switching(h.Phase) {
			busy++
			acts = append(acts, Action{Kind: ActSwitch, Host: h.Name, Release: rel})
		}
	}
	return acts
}

// switching reports whether a host is between drain and live.
func switching(p Phase) bool {
	switch p {
	case PhaseDraining, PhaseSwitching, PhaseRestart, PhaseHealth:
		return true
	}
	return false
}

// Next implements Planner.
func (p TrafficPlanner) Next(s *State, now time.Time) []Action {
	switch s.Status {
	case StatusRollingBack:
		if s.TrafficErr != "" {
			return []Action{{Kind: ActFinish, Outcome: OutcomeFailed, Reason: "rollback could not move traffic: " + s.TrafficErr}}
		}
		if s.Weight > 0 || s.Cohort > 0 {
			return []Action{{Kind: ActRoute, Weight: 0, Reason: "rollback: all traffic back to " + s.Info.Previous}}
		}
		limit := 0 // slots: only links flip, the old colour is still warm
		if !p.Slots {
			limit = max(1, p.MaxUnavailable)
		}
		return RevertNext(s, limit)
	case StatusRunning, StatusPaused:
		// Paused: the step in force (an operator may step while paused) is
		// carried out, but nothing moves on by itself.
	default:
		return nil
	}
	paused := s.Status == StatusPaused
	if paused && s.Step == 0 {
		return nil
	}
	if s.TrafficErr != "" {
		return []Action{{Kind: ActStartRollback, Reason: s.TrafficErr}}
	}
	if acts := failOrPrepare(s, anyTouched(s) || s.Weight > 0, p.Halt); len(acts) > 0 {
		return acts
	}
	var acts []Action
	steps := s.Info.Steps
	if len(steps) == 0 {
		return []Action{{Kind: ActFinish, Outcome: OutcomeFailed, Reason: "no traffic steps"}}
	}
	if s.Step == 0 {
		return []Action{{Kind: ActStep, Wave: 1, Weight: float64(steps[0])}}
	}
	w := s.StepTarget
	last := s.Step >= len(steps)

	// Capacity first: the hosts that will serve the new release run it.
	rel := s.Info.Release
	if p.Slots {
		for _, h := range s.Hosts {
			if h.Phase != PhaseStandby && h.Phase != PhaseLive {
				acts = append(acts, Action{Kind: ActStandby, Host: h.Name, Release: rel})
			}
		}
	} else {
		need := HostsFor(w, len(s.Hosts))
		pending := 0
		for _, h := range s.Hosts[:need] {
			if h.Phase != PhaseLive {
				pending++
			}
		}
		if pending > 0 {
			return limitSwitches(s.Hosts[:need], rel, max(1, p.MaxUnavailable))
		}
	}
	if len(acts) > 0 {
		return acts
	}

	// Then traffic.
	switch {
	case p.Cohort && !last:
		if s.Cohort != w {
			return []Action{{Kind: ActRoute, Cohort: w, Weight: s.Weight}}
		}
	case s.Weight != w || (last && s.Cohort > 0):
		return []Action{{Kind: ActRoute, Weight: w}}
	}
	if last {
		if p.Slots {
			for _, h := range s.Hosts {
				if h.Phase != PhaseLive {
					acts = append(acts, Action{Kind: ActSwitch, Host: h.Name, Release: rel})
				}
			}
			if len(acts) > 0 {
				return acts
			}
		}
		if paused {
			return nil
		}
		return []Action{{Kind: ActFinish, Outcome: OutcomeSucceeded}}
	}
	if paused {
		return nil
	}

	// Then analysis.
	if g := p.Gate; g != nil {
		sg := GateOfStep(s, s.Step)
		if g.Failed(sg) {
			return []Action{{Kind: ActStartRollback, Reason: fmt.Sprintf("SLO gate failed at step %d (%g%%): %s", s.Step, w, sg.Last.Reason)}}
		}
		if sg.Last != nil && sg.Last.Verdict == VerdictInconclusive && sg.LastIndex >= s.GateAck {
			return []Action{{Kind: ActAwait, Reason: "gate inconclusive: " + sg.Last.Reason + "; resume to measure again, promote or roll back"}}
		}
		if sg.Passes < g.Count {
			return []Action{{Kind: ActMeasure, Wave: s.Step, Release: rel}}
		}
	}
	if p.Hold > 0 {
		if until := s.HoldFrom.Add(p.Hold); now.Before(until) {
			return []Action{{Kind: ActWait, Until: until, Reason: fmt.Sprintf("step %d (%d%%)", s.Step+1, steps[s.Step])}}
		}
	}
	if blocking := blockingItems(s); len(blocking) > 0 {
		return []Action{{Kind: ActHold, Reason: blockReason(blocking)}}
	}
	if !p.AutoPromote {
		return []Action{{Kind: ActHold, Reason: fmt.Sprintf("step %d passed; waiting for an operator to promote", s.Step)}}
	}
	return []Action{{Kind: ActStep, Wave: s.Step + 1, Weight: float64(steps[s.Step])}}
}
