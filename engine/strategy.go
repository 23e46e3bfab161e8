package engine

import (
	"fmt"
	"time"

	"flightdeck/engine/plan"
)

// ActionKind is what a planner asks the executor (or the run loop) to do.
type ActionKind int

// Actions. Prepare, Switch and Revert are I/O done by the executor for one
// host; the others change run state only and are done by the run loop.
const (
	ActPrepare ActionKind = iota + 1
	ActSwitch
	ActRevert
	ActWaveStart
	ActWaveDone
	ActWait
	ActStartRollback
	ActFinish
)

func (k ActionKind) String() string {
	switch k {
	case ActPrepare:
		return "prepare"
	case ActSwitch:
		return "switch"
	case ActRevert:
		return "revert"
	case ActWaveStart:
		return "wave-start"
	case ActWaveDone:
		return "wave-done"
	case ActWait:
		return "wait"
	case ActStartRollback:
		return "start-rollback"
	case ActFinish:
		return "finish"
	case ActStep:
		return "step"
	case ActRoute:
		return "route"
	case ActMeasure:
		return "measure"
	case ActStandby:
		return "standby"
	case ActAwait:
		return "await"
	case ActHold:
		return "hold"
	case ActMigrate:
		return "migrate"
	case ActVerify:
		return "verify"
	case ActTrigger:
		return "trigger"
	case ActCancel:
		return "cancel"
	case ActFinalize:
		return "finalize"
	}
	return fmt.Sprintf("action(%d)", int(k))
}

// Actions the step (not a planner) gives the run loop to perform.
const (
	// ActMigrate runs the plan's migrate hooks before the first switch
	// (on Host, or on this machine for local hooks).
	ActMigrate ActionKind = iota + 200
	// ActVerify checks every host's rollback path (its previous release
	// complete and intact) before anything is switched.
	ActVerify
	// ActTrigger takes one measurement for the auto-rollback trigger.
	ActTrigger
	// ActCancel stops a measurement in flight (Work says which).
	ActCancel
	// ActFinalize ends the run: routes settled, old releases pruned, probe
	// traffic summarised; its result lets the step write the report.
	ActFinalize
)

// Action is one thing to do: a planner's decision, or (from the step) the
// I/O the run loop performs.
type Action struct {
	Kind    ActionKind
	Host    string
	Release string
	// Wave is the wave (wave actions) or the traffic step (step, measure).
	Wave    int
	Until   time.Time
	Outcome Outcome
	Reason  string
	// Weight is the traffic weight of a step or route (percent).
	Weight float64
	// Cohort is the A/B cohort share a route applies (percent; 0 = none).
	Cohort float64

	// The fields below are filled in by the step for the run loop.

	// Smoke asks the host's work to run the plan's smoke checks against
	// the new release before it takes traffic; CacheCheck to ask its cache
	// namespace.
	Smoke, CacheCheck bool
	// Rebalance asks a host's switch or revert, once the host serves
	// again, to split traffic by capacity (the share of backends on each
	// release): rolling and symlink deploys, and rollback runs, whose
	// traffic follows the hosts rather than steps.
	Rebalance bool
	// Previous is the release that keeps the rest of the traffic (route),
	// and CohortOn says that a cohort rule is in force.
	Previous string
	CohortOn bool
	// Window is how long a measurement (measure, trigger) lasts, and Delay
	// how long a trigger measurement waits before it starts.
	Window, Delay time.Duration
	// Work names the work an ActCancel stops.
	Work WorkKey
	// SettleRoute (finalize) makes Release the router's only stable
	// release; Prune removes releases beyond keep_releases; KeepDrained
	// leaves the backends the run drained and did not put back out of
	// rotation (a failed run under on_failure: halt stops where it is).
	SettleRoute, Prune, KeepDrained bool
	// Serial tells apart the pieces of work the step began.
	Serial uint64
}

// Planner is a pure release strategy: given the run state and the time, it
// says what to do next. It does no I/O; the run loop performs the actions
// (skipping any already in flight) and feeds the resulting events back
// into the state. Planners are tested with table tests and no filesystem.
type Planner interface {
	Next(s *State, now time.Time) []Action
}

// WavePlanner releases to hosts wave by wave: every host is prepared
// first (so a failed upload touches no live host), then each wave is
// switched, with a pause between waves. The symlink strategy is one wave
// holding every host.
type WavePlanner struct {
	// Pause is the wait between the end of one wave and the start of the next.
	Pause time.Duration
	// Halt stops on a failed host instead of rolling back the run's switched hosts.
	Halt bool
	// MaxUnavailable bounds how many hosts of a wave are switched at once
	// (0: the whole wave).
	MaxUnavailable int
}

// Next implements Planner.
func (p WavePlanner) Next(s *State, now time.Time) []Action {
	switch s.Status {
	case StatusRollingBack:
		return RevertNext(s, p.MaxUnavailable)
	case StatusRunning:
	default:
		return nil // paused, finished, idle: nothing new starts
	}
	if acts := failOrPrepare(s, anyTouched(s), p.Halt); len(acts) > 0 {
		return acts
	}
	var acts []Action
	waves := s.Info.Waves
	if len(waves) == 0 {
		return []Action{{Kind: ActFinish, Outcome: OutcomeSucceeded}}
	}
	if s.Wave == 0 {
		return []Action{{Kind: ActWaveStart, Wave: 1}}
	}
	var wave []*HostState
	for _, name := range waves[s.Wave-1] {
		if h := s.Host(name); h != nil && h.Phase != PhaseLive {
			wave = append(wave, h)
		}
	}
	if len(wave) > 0 {
		limit := p.MaxUnavailable
		if limit <= 0 {
			limit = len(wave)
		}
		acts = limitSwitches(wave, s.Info.Release, limit)
		for i := range acts {
			acts[i].Wave = s.Wave
		}
		return acts
	}
	if s.WaveDone < s.Wave {
		return []Action{{Kind: ActWaveDone, Wave: s.Wave}}
	}
	if s.Wave >= len(waves) {
		return []Action{{Kind: ActFinish, Outcome: OutcomeSucceeded}}
	}
	if p.Pause > 0 {
		if until := s.HoldFrom.Add(p.Pause); now.Before(until) {
			return []Action{{Kind: ActWait, Until: until, Reason: fmt.Sprintf("wave %d of %d", s.Wave+1, len(waves))}}
		}
	}
	if blocking := blockingItems(s); len(blocking) > 0 {
		return []Action{{Kind: ActHold, Reason: blockReason(blocking)}}
	}
	return []Action{{Kind: ActWaveStart, Wave: s.Wave + 1}}
}

// RevertNext plans a rollback: every host this run touched goes back to
// the rollback target (or, with none named, to the release it had before
// the run). A host with nothing to go back to is left as it is and named.
// limit bounds how many hosts are reverted at once, so that reverting
// through a router never takes the whole fleet out of rotation (0: all).
func RevertNext(s *State, limit int) []Action {
	var acts []Action
	busy := 0
	for i, h := range s.Hosts {
		if !h.Touched || h.Reverted || h.RevertFailed {
			continue
		}
		target := s.RevertTo
		if target == "" {
			target = h.Previous
		}
		if target == "" {
			continue // first deploy to this host: nothing to go back to
		}
		if acts == nil {
			// Asked after every step of a fleet's rollback: one slice, not
			// one grown host by host (at 500 hosts that was most of what
			// the rollback run allocated).
			acts = make([]Action, 0, len(s.Hosts)-i)
		}
		a := Action{Kind: ActRevert, Host: h.Name, Release: target}
		if switching(h.Phase) || h.Phase == PhaseReverting {
			acts = append(acts, a) // in flight: asked again, skipped by the loop
			busy++
			continue
		}
		if limit > 0 && busy >= limit {
			continue
		}
		busy++
		acts = append(acts, a)
	}
	if len(acts) > 0 {
		return acts
	}
	outcome := OutcomeRolledBack
	if s.Aborted {
		outcome = OutcomeAborted
	}
	if s.Info.Kind == KindRollback {
		outcome = OutcomeSucceeded
	}
	var reason string
	for _, h := range s.Hosts {
		if h.RevertFailed {
			outcome = OutcomeFailed
			reason = fmt.Sprintf("host %s could not be rolled back: %s", h.Name, h.Err)
			break
		}
	}
	if s.Info.Kind == KindDeploy && s.Reason != "" && reason == "" {
		reason = s.Reason
	}
	return []Action{{Kind: ActFinish, Outcome: outcome, Reason: reason}}
}

// failOrPrepare is where every strategy starts: a failed host rolls the
// run back (when something was switched and the plan does not say halt)
// or ends it; otherwise every host is prepared before anything switches.
func failOrPrepare(s *State, switched, halt bool) []Action {
	if failed := firstFailed(s); failed != nil {
		reason := fmt.Sprintf("host %s failed: %s", failed.Name, failed.Err)
		if switched && !halt {
			return []Action{{Kind: ActStartRollback, Reason: reason}}
		}
		return []Action{{Kind: ActFinish, Outcome: OutcomeFailed, Reason: reason}}
	}
	var acts []Action
	for _, h := range s.Hosts {
		if !h.Prepared {
			acts = append(acts, Action{Kind: ActPrepare, Host: h.Name, Release: s.Info.Release})
		}
	}
	return acts
}

func firstFailed(s *State) *HostState {
	for _, h := range s.Hosts {
		if h.Phase == PhaseFailed {
			return h
		}
	}
	return nil
}

func anyTouched(s *State) bool {
	for _, h := range s.Hosts {
		if h.Touched {
			return true
		}
	}
	return false
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

// PlanWaves splits hosts into waves of size n (n ≥ 1).
func PlanWaves(hosts []string, n int) [][]string {
	if n < 1 {
		n = 1
	}
	var waves [][]string
	for i := 0; i < len(hosts); i += n {
		end := min(i+n, len(hosts))
		waves = append(waves, append([]string(nil), hosts[i:end]...))
	}
	return waves
}
