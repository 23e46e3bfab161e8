package engine

import (
	"slices"
	"time"
)

// Status is a run's overall state.
type Status string

// Run statuses.
const (
	StatusIdle        Status = "idle"
	StatusRunning     Status = "running"
	StatusPaused      Status = "paused"
	StatusRollingBack Status = "rolling_back"
	StatusFinished    Status = "finished"
	// StatusUnfinished is a run summary's status (never a State's): its
	// journal has no RunFinished event because its process died.
	StatusUnfinished Status = "unfinished"
)

// HostState is one host as the run knows it.
type HostState struct {
	Name string
	// Current is the release the host's current link points to.
	Current string
	// Previous is the release the host was on when the run started.
	Previous string
	Phase    Phase
	Since    time.Time
	Prepared bool
	// Switched is true once the host was switched by this run (and not reverted).
	Switched bool
	Wave     int
	// Touched is true once this run began switching the host.
	Touched bool
	// Reverted is true once the host was put back by a rollback.
	Reverted bool
	// RevertFailed is true when putting the host back failed.
	RevertFailed bool
	Progress     Progress
	Err          string
	Releases     []string
	// History is the host's phase history in this run, newest last.
	History []PhaseChange
}

// RuleCheck is one part of the 3-2-1 rule: ok, overridden, failed or n/a,
// with why.
type RuleCheck struct {
	Status RuleStatus
	Note   string
}

// Observed sums up the facts a run observed on its hosts (Observed
// events): what the checklist is derived from, and what a resumed run
// must not do again.
type Observed struct {
	// Restarts counts services asked for their health right after a
	// restart, and NotReady those that answered "not ready".
	Restarts, NotReady int
	// Smoke is set once the smoke checks ran (SmokeOK: they passed).
	Smoke, SmokeOK bool
	SmokeNote      string
	// Cache is set once the cache namespace was checked.
	Cache, CacheOK bool
	CacheNote      string
	// Migrated is set once the migrate hooks ran successfully (MigrateNote:
	// where); MigrateFailed when they failed.
	Migrated, MigrateFailed bool
	MigrateNote             string
}

// Rule2 reports the 3-2-1 rule's two verifications: an automated one (a
// smoke test or an SLO gate passed) and a manual one (an operator's
// acknowledgement, or canary metrics judged by the gate).
func (s *State) Rule2() (automated, manual bool) {
	for _, it := range s.Checklist {
		if it.ID == ItemSmoke && it.State == ItemVerified {
			automated = true
		}
		if it.State == ItemAcknowledged {
			manual = true
		}
	}
	for _, g := range s.Gates {
		if g.Verdict == VerdictPass {
			automated = true
			if len(s.Info.Steps) > 0 {
				manual = true // canary metrics on real traffic
			}
		}
	}
	return automated, manual
}

// Proposal is a promotion proposed by one operator (or by the planner,
// as auto) that a different operator must approve.
type Proposal struct {
	By          string
	Fingerprint string
	Step        int
	At          time.Time
}

// PhaseChange is one entry in a host's phase history.
type PhaseChange struct {
	Time  time.Time
	Phase Phase
	Note  string
}

// State is the state of one run: a pure fold over its events (Apply).
type State struct {
	Run      string
	Info     RunInfo
	Status   Status
	Outcome  Outcome
	Started  time.Time
	Finished time.Time
	Seq      uint64

	Hosts []*HostState
	index map[string]int

	// Wave is the 1-based wave in progress (0 before the first).
	Wave      int
	WaveDone  int
	WaveEnded time.Time
	WaitUntil time.Time

	PausedBy string
	// PausedAt is when the run was paused (zero while it is not).
	PausedAt time.Time
	// HoldFrom is when the countdown in progress (a step's hold, the pause
	// between waves) began, moved on by the time the run spent paused: a
	// countdown stops while the run is paused.
	HoldFrom time.Time
	// WaitFor says what WaitUntil counts down to.
	WaitFor string
	// RevertTo is the release reverted hosts go back to ("" = each host's previous).
	RevertTo   string
	RollbackBy string
	// Aborted is true when the rollback was an operator's abort.
	Aborted      bool
	RollbackAt   time.Time
	RolledBackAt time.Time
	Reason       string

	// Weight is the share of traffic (percent) the router gives the new release.
	Weight float64
	// Cohort is the A/B cohort share (percent) in force, 0 when none.
	Cohort float64
	// Step is the traffic step in progress (1-based) and StepTarget its weight.
	Step       int
	StepTarget float64
	StepAt     time.Time
	// GateAck is how many gate results the operator has seen past (an
	// inconclusive result pauses the run until it is acknowledged by resuming).
	GateAck int
	// Rule3 and Rule1 are the 3-2-1 rule's environment and rollback-path
	// checks (see Rule2 for the verifications).
	Rule3, Rule1 RuleCheck
	// Proposal is a promotion waiting for a second operator's approval.
	Proposal *Proposal
	// TrafficErr is the last failure to change the router (cleared by a
	// successful change).
	TrafficErr string
	// StepGateFrom is the index in Gates where the current step's results start.
	StepGateFrom int
	Gates        []GateResult
	Samples      []Measurement
	Checklist    []ChecklistItem
	Report       *Report
	Err          string
	// Settling is the outcome of a run whose outcome is decided; it probes
	// traffic with the release in service until SettleUntil before it ends
	// ("" otherwise). A rollback may still take a succeeded deploy back.
	Settling    Outcome
	SettleUntil time.Time
	// SettleGateFrom is the index in Gates where the results measured while
	// settling start.
	SettleGateFrom int
	// Finishing is set once the run is being finished (report, prune):
	// nothing changes it any more.
	Finishing bool
	// Observed are the facts the run observed on its hosts.
	Observed Observed
}

// NewState returns the empty state of a run.
func NewState() *State { return &State{Status: StatusIdle, index: map[string]int{}} }

// Host returns the state of a host by name, or nil.
func (s *State) Host(name string) *HostState {
	if i, ok := s.index[name]; ok {
		return s.Hosts[i]
	}
	return nil
}

// Active reports whether the run has not finished.
func (s *State) Active() bool { return s.Status != StatusFinished && s.Status != StatusIdle }

// maxHistory bounds a host's phase history.
const maxHistory = 64

// Apply folds one event into the state. It does no I/O and never fails: an
// event naming an unknown host is ignored.
func (s *State) Apply(e Event) {
	if e.Seq > s.Seq {
		s.Seq = e.Seq
	}
	switch e.Type {
	case EvRunStarted:
		if e.Start == nil {
			return
		}
		s.Run = e.Run
		s.Info = *e.Start
		s.Status = StatusRunning
		s.Started = e.Time
		s.Hosts = make([]*HostState, 0, len(e.Start.Hosts))
		s.index = make(map[string]int, len(e.Start.Hosts))
		for i, h := range e.Start.Hosts {
			s.Hosts = append(s.Hosts, &HostState{
				Name: h.Name, Current: h.Current, Previous: h.Current,
				Phase: PhaseQueued, Since: e.Time, Releases: slices.Clone(h.Releases),
				Prepared: e.Start.Kind == KindRollback,
				Touched:  e.Start.Kind == KindRollback,
			})
			s.index[h.Name] = i
		}
		for w, names := range e.Start.Waves {
			for _, n := range names {
				if h := s.Host(n); h != nil {
					h.Wave = w + 1
				}
			}
		}
		if e.Start.Kind == KindRollback {
			s.Status = StatusRollingBack
			s.RevertTo = e.Start.Release
			s.RollbackBy = e.Actor
			s.RollbackAt = e.Time
		}
	case EvRunResumed:
		if s.Status == StatusFinished || s.Status == StatusIdle {
			return
		}
		// Work that was in flight when the process died is redone, and an
		// outcome decided but not journaled as finished is decided again.
		s.Settling, s.SettleUntil, s.Finishing = "", time.Time{}, false
		s.WaitUntil, s.WaitFor = time.Time{}, ""
		for _, h := range s.Hosts {
			if h.Phase == PhasePreparing || h.Phase == PhaseDraining || h.Phase == PhaseSwitching ||
				h.Phase == PhaseRestart || h.Phase == PhaseHealth || h.Phase == PhaseReverting {
				h.Phase = PhaseQueued
			}
		}
	case EvHostPhase:
		h := s.Host(e.Host)
		if h == nil {
			return
		}
		if h.Phase != e.Phase {
			h.Since = e.Time
			h.History = append(h.History, PhaseChange{Time: e.Time, Phase: e.Phase, Note: firstNonEmpty(e.Error, e.Message)})
			if len(h.History) > maxHistory {
				h.History = slices.Delete(h.History, 0, len(h.History)-maxHistory)
			}
		}
		h.Phase = e.Phase
		if e.Progress != nil {
			h.Progress = *e.Progress
		}
		switch e.Phase {
		case PhasePrepared:
			h.Prepared = true
			h.Err = ""
		case PhaseLive:
			h.Current = e.Release
			h.Switched = e.Release != h.Previous
			h.Err = ""
		case PhaseReverted:
			h.Current = e.Release
			h.Switched = false
			h.Reverted = true
			h.Err = ""
		case PhaseFailed:
			h.Err = e.Error
			// A revert that failed is given up; a deploy step that failed while
			// a rollback started is reverted like the others. (Journals written
			// before failures named their action count every failure during a
			// rollback as a failed revert.)
			if s.Status == StatusRollingBack && (e.Command == "" || e.Command == ActRevert.String()) {
				h.RevertFailed = true
			}
		case PhaseSwitching, PhaseStandby:
			h.Touched = true
		case PhaseRestart, PhaseHealth:
			// After the link was renamed, events carry the release it points to.
			if e.Release != "" {
				h.Current = e.Release
			}
		}
	case EvHostObserved:
		if h := s.Host(e.Host); h != nil {
			h.Current = e.Release
			h.Releases = slices.Clone(e.Releases)
		}
	case EvWaveStarted:
		s.Wave = e.Wave
		s.WaitUntil, s.WaitFor = time.Time{}, ""
	case EvWaveDone:
		s.WaveDone = e.Wave
		s.WaveEnded = e.Time
		s.startHold(e.Time)
	case EvWaiting:
		s.WaitUntil, s.WaitFor = e.Until, firstNonEmpty(e.Next, e.Message) // journals before Next: the message
	case EvPaused:
		if s.Status == StatusRunning {
			s.Status = StatusPaused
			s.PausedBy = e.Actor
			s.PausedAt = e.Time
		}
	case EvResumed:
		if s.Status == StatusPaused {
			s.Status = StatusRunning
			s.PausedBy = ""
			if !s.PausedAt.IsZero() && !s.HoldFrom.IsZero() {
				// The countdown stood still while the run was paused.
				shift := e.Time.Sub(s.PausedAt)
				s.HoldFrom = s.HoldFrom.Add(shift)
				if !s.WaitUntil.IsZero() {
					s.WaitUntil = s.WaitUntil.Add(shift)
				}
			}
			s.PausedAt = time.Time{}
		}
		s.GateAck = len(s.Gates)
	case EvRollbackStart:
		if s.Status == StatusFinished {
			return
		}
		s.Status = StatusRollingBack
		s.RevertTo = e.Target
		s.RollbackBy = e.Actor
		s.RollbackAt, s.RolledBackAt = e.Time, time.Time{}
		s.Reason = e.Message
		s.Aborted = e.Command == string(CmdAbort)
		s.Proposal = nil
		s.TrafficErr = ""
		s.PausedBy, s.PausedAt = "", time.Time{}
		s.Settling, s.SettleUntil = "", time.Time{}
		s.WaitUntil, s.WaitFor = time.Time{}, ""
	case EvRolledBack:
		s.RolledBackAt = e.Time
	case EvRule321:
		part, status := RulePart(e.Wave), RuleStatus(e.Target) // journals before Rule
		if e.Rule != nil {
			part, status = e.Rule.Part, e.Rule.Status
		}
		switch part {
		case RuleEnvironments:
			s.Rule3 = RuleCheck{Status: status, Note: e.Message}
		case RuleRollbackPath:
			s.Rule1 = RuleCheck{Status: status, Note: e.Message}
		}
	case EvApprovalRequested:
		s.Proposal = &Proposal{By: e.Actor, Fingerprint: e.Fingerprint, Step: e.Wave, At: e.Time}
	case EvStepStarted:
		s.Proposal = nil
		s.Step = e.Wave
		s.StepAt = e.Time
		s.StepGateFrom = len(s.Gates)
		s.WaitUntil, s.WaitFor = time.Time{}, ""
		s.startHold(e.Time)
		if e.Weight != nil {
			s.StepTarget = *e.Weight
		}
	case EvWeightSet:
		if e.Weight != nil {
			s.Weight = *e.Weight
		}
		s.TrafficErr = ""
	case EvNotice:
		if e.Command == ActRoute.String() && e.Error != "" {
			s.TrafficErr = e.Error
		}
	case EvCohortSet:
		if e.Weight != nil {
			s.Cohort = *e.Weight
		}
		s.TrafficErr = ""
	case EvGateResult:
		if e.Gate != nil {
			g := *e.Gate
			g.At = e.Time
			s.Gates = append(s.Gates, g)
		}
	case EvMetricSample:
		if e.Sample != nil {
			s.Samples = append(s.Samples, *e.Sample)
			if len(s.Samples) > 512 {
				s.Samples = slices.Delete(s.Samples, 0, len(s.Samples)-512)
			}
		}
	case EvChecklistItem:
		if e.Item != nil {
			s.setItem(*e.Item)
		}
	case EvSettling:
		s.Settling, s.SettleUntil = e.Outcome, e.Until
		s.SettleGateFrom = len(s.Gates)
		s.WaitUntil, s.WaitFor = time.Time{}, ""
	case EvFinishing:
		s.Finishing = true
		if s.Settling == "" {
			s.Settling = e.Outcome
		}
	case EvObserved:
		if o := e.Observed; o != nil {
			s.Observed.apply(*o)
		}
	case EvReport:
		s.Report = e.Report
	case EvRunFinished:
		s.Status = StatusFinished
		s.Outcome = e.Outcome
		s.Finished = e.Time
		s.Err = e.Error
		s.PausedBy, s.PausedAt = "", time.Time{}
		s.WaitUntil, s.WaitFor = time.Time{}, ""
	}
}

// startHold starts a countdown at t; one started while the run is paused
// starts counting when it resumes.
func (s *State) startHold(t time.Time) {
	s.HoldFrom = t
	if s.Status == StatusPaused && !s.PausedAt.IsZero() {
		s.HoldFrom = s.PausedAt
	}
}

// Countdown says what the run counts down to and how long is left at now;
// running is false while the run is paused (the countdown stands still).
// ok is false when nothing counts down.
func (s *State) Countdown(now time.Time) (what string, left time.Duration, running, ok bool) {
	switch {
	case !s.WaitUntil.IsZero():
		what, left = s.WaitFor, s.WaitUntil.Sub(now)
	case s.Settling != "" && !s.SettleUntil.IsZero():
		what, left = "end of the run (probing with the release in service)", s.SettleUntil.Sub(now)
	default:
		return "", 0, false, false
	}
	if s.Status == StatusPaused && !s.PausedAt.IsZero() {
		left = s.WaitUntil.Sub(s.PausedAt)
		return what, max(left, 0), false, true
	}
	return what, max(left, 0), true, true
}

func (o *Observed) apply(ob Observation) {
	switch ob.Kind {
	case ObsHealth:
		o.Restarts++
		if ob.OK {
			o.NotReady++
		}
	case ObsSmoke:
		o.Smoke, o.SmokeOK, o.SmokeNote = true, ob.OK, ob.Note
	case ObsCacheNamespace:
		o.Cache, o.CacheOK, o.CacheNote = true, ob.OK, ob.Note
	case ObsMigrated:
		o.Migrated, o.MigrateFailed, o.MigrateNote = ob.OK, !ob.OK, ob.Note
	}
}

func (s *State) setItem(it ChecklistItem) {
	for i := range s.Checklist {
		prev := s.Checklist[i]
		if prev.ID != it.ID {
			continue
		}
		it.Required = it.Required || prev.Required
		if it.Title == "" {
			it.Title = prev.Title
		}
		if prev.State == ItemAcknowledged && it.State == ItemUnknown {
			return // an acknowledgement stands until something is verified
		}
		s.Checklist[i] = it
		return
	}
	s.Checklist = append(s.Checklist, it)
}

// Clone returns a deep copy that shares nothing mutable with s, for
// publishing snapshots to other goroutines.
func (s *State) Clone() *State {
	c := *s
	c.Hosts = make([]*HostState, len(s.Hosts))
	for i, h := range s.Hosts {
		hc := *h
		hc.Releases = slices.Clone(h.Releases)
		hc.History = slices.Clone(h.History)
		c.Hosts[i] = &hc
	}
	c.index = s.index // read-only after RunStarted
	c.Gates = slices.Clone(s.Gates)
	c.Samples = slices.Clone(s.Samples)
	c.Checklist = slices.Clone(s.Checklist)
	return &c
}

// Fold replays events into a fresh state.
func Fold(events []Event) *State {
	s := NewState()
	for _, e := range events {
		s.Apply(e)
	}
	return s
}

func firstNonEmpty(a ...string) string {
	for _, s := range a {
		if s != "" {
			return s
		}
	}
	return ""
}
