package engine

import (
	"time"
)

// EventType names what happened.
type EventType string

// Event types. Everything that happens in a run is one of these.
const (
	EvRunStarted EventType = "RunStarted"
	EvRunResumed EventType = "RunResumed"
	EvHostPhase  EventType = "HostPhase"
	EvHostOutput EventType = "HostOutput"
	// EvHostObserved records what a host reported (Release = its current
	// release, Releases = its complete releases), e.g. when a run resumes.
	EvHostObserved   EventType = "HostObserved"
	EvWaveStarted    EventType = "WaveStarted"
	EvWaveDone       EventType = "WaveDone"
	EvWaiting        EventType = "Waiting"
	EvPaused         EventType = "Paused"
	EvResumed        EventType = "Resumed"
	EvCommand        EventType = "CommandAccepted"
	EvCommandRefused EventType = "CommandRefused"
	EvRollbackStart  EventType = "RollbackStarted"
	EvRolledBack     EventType = "RolledBack"
	EvWeightSet      EventType = "WeightSet"
	// EvCohortSet applies (Weight = percent of the cohort) or drops (0) the A/B cohort.
	EvCohortSet EventType = "CohortSet"
	// EvRule321 records a part of the 3-2-1 rule (Rule). Journals before
	// Rule existed carry the part in Wave and the status in Target.
	EvRule321 EventType = "Rule321"
	// EvApprovalRequested records a proposed promotion (Wave = step) that
	// waits for a second operator (require_approval: promote).
	EvApprovalRequested EventType = "ApprovalRequested"
	// EvStepStarted begins a traffic step (Wave = step number, Weight = its target).
	EvStepStarted   EventType = "StepStarted"
	EvGateResult    EventType = "GateResult"
	EvMetricSample  EventType = "MetricSample"
	EvChecklistItem EventType = "ChecklistItem"
	// EvObserved records a fact the run observed on a host (Observation),
	// from which the checklist is derived; a resumed run knows it.
	EvObserved EventType = "Observed"
	EvPruned   EventType = "Pruned"
	EvNotice   EventType = "Notice"
	EvReport   EventType = "Report"
	// EvSettling: the outcome is decided (Outcome) and the run probes
	// traffic with the release in service until Until before it ends.
	EvSettling EventType = "Settling"
	// EvFinishing: the run is being finished (routes settled, old releases
	// pruned, the report written); nothing changes it any more.
	EvFinishing   EventType = "Finishing"
	EvRunFinished EventType = "RunFinished"
)

// Phase is where a host is in a run.
type Phase string

// Host phases.
const (
	PhaseQueued    Phase = "queued"
	PhasePreparing Phase = "preparing"
	PhasePrepared  Phase = "prepared"
	PhaseDraining  Phase = "draining"
	PhaseSwitching Phase = "switching"
	PhaseRestart   Phase = "restarting"
	PhaseHealth    Phase = "health"
	PhaseLive      Phase = "live"
	// PhaseStandby: the new release runs in the host's idle slot (blue/green,
	// A/B) and is healthy, but current still names the old release.
	PhaseStandby   Phase = "standby"
	PhaseReverting Phase = "reverting"
	PhaseReverted  Phase = "reverted"
	PhaseFailed    Phase = "failed"
	PhaseSkipped   Phase = "skipped"
)

// Outcome is how a run ended.
type Outcome string

// Run outcomes.
const (
	OutcomeSucceeded  Outcome = "succeeded"
	OutcomeFailed     Outcome = "failed"
	OutcomeRolledBack Outcome = "rolled_back"
	OutcomeAborted    Outcome = "aborted"
)

// RunKind is what a run does.
type RunKind string

// Run kinds.
const (
	KindDeploy   RunKind = "deploy"
	KindRollback RunKind = "rollback"
)

// Event is one thing that happened in a run. Events are journaled (JSON
// lines) before they are published; the run state is a pure fold over them.
// Fields are optional except Seq, Time, Run and Type.
type Event struct {
	Seq   uint64    `json:"seq"`
	Time  time.Time `json:"time"`
	Run   string    `json:"run"`
	Type  EventType `json:"type"`
	Actor string    `json:"actor,omitempty"`
	// Fingerprint is the SSH key fingerprint of the actor, when known.
	Fingerprint string `json:"fingerprint,omitempty"`

	Host    string `json:"host,omitempty"`
	Release string `json:"release,omitempty"`
	Phase   Phase  `json:"phase,omitempty"`
	Wave    int    `json:"wave,omitempty"` // 1-based wave number
	Message string `json:"msg,omitempty"`
	Error   string `json:"error,omitempty"`

	Progress *Progress `json:"progress,omitempty"`
	Start    *RunInfo  `json:"start,omitempty"`
	Outcome  Outcome   `json:"outcome,omitempty"`
	Until    time.Time `json:"until,omitzero"`
	Weight   *float64  `json:"weight,omitempty"`
	Command  string    `json:"command,omitempty"`
	Target   string    `json:"target,omitempty"`
	// Next says what comes when Until is reached (Waiting): "step 2
	// (50%)", "wave 3 of 4", "the gate's verdict on step 1".
	Next string `json:"next,omitempty"`

	Gate     *GateResult    `json:"gate,omitempty"`
	Rule     *RuleResult    `json:"rule,omitempty"`
	Observed *Observation   `json:"observed,omitempty"`
	Sample   *Measurement   `json:"sample,omitempty"`
	Item     *ChecklistItem `json:"item,omitempty"`
	Report   *Report        `json:"report,omitempty"`
	Removed  []string       `json:"removed,omitempty"`
	Releases []string       `json:"releases,omitempty"`
}

// RunInfo is the content of a RunStarted event.
type RunInfo struct {
	Kind     RunKind    `json:"kind"`
	App      string     `json:"app"`
	Env      string     `json:"env"`
	Strategy string     `json:"strategy"`
	Release  string     `json:"release"`
	Previous string     `json:"previous,omitempty"` // the fleet's release before the run
	Commit   string     `json:"commit,omitempty"`
	Hosts    []RunHost  `json:"hosts"`
	Waves    [][]string `json:"waves,omitempty"`
	Steps    []int      `json:"steps,omitempty"`
	// RequireApproval lists the actions that wait for a second operator
	// (require_approval in the plan, e.g. "promote").
	RequireApproval []string `json:"require_approval,omitempty"`
	// Cohort is the A/B rule the new release gets at its first step.
	Cohort *CohortRule `json:"cohort,omitempty"`
	Plan   string      `json:"plan,omitempty"`
	PID    int         `json:"pid,omitempty"`
	// Traffic is the kind of traffic layer the run moves traffic through
	// (flightdeck, haproxy, nginx; empty without one), and TrafficAt says
	// which one ("HAProxy backend app at /run/haproxy/admin.sock").
	Traffic   string `json:"traffic,omitempty"`
	TrafficAt string `json:"traffic_at,omitempty"`
}

// RunHost is a host as it was when the run started.
type RunHost struct {
	Name     string   `json:"name"`
	Current  string   `json:"current,omitempty"`
	Releases []string `json:"releases,omitempty"`
	// Backend is the router address that serves the new release on this
	// host; OldBackend serves the previous one (they differ for slots).
	Backend    string `json:"backend,omitempty"`
	OldBackend string `json:"old_backend,omitempty"`
	// Slot is the colour that gets the new release (blue/green, A/B).
	Slot Slot `json:"slot,omitempty"`
}

// RulePart is a part of the 3-2-1 rule.
type RulePart int

// The 3-2-1 rule's parts that are checked before a deploy (the two
// verifications are derived from the checklist and the gates: State.Rule2).
const (
	// RuleEnvironments: the release went through the earlier environments.
	RuleEnvironments RulePart = 3
	// RuleRollbackPath: one instant rollback path is ready.
	RuleRollbackPath RulePart = 1
)

// RuleStatus is how a part of the 3-2-1 rule went.
type RuleStatus string

// 3-2-1 rule statuses.
const (
	RuleOK         RuleStatus = "ok"
	RuleOverridden RuleStatus = "overridden"
	RuleFailed     RuleStatus = "failed"
	RuleNA         RuleStatus = "n/a"
)

// RuleResult is the content of a Rule321 event (the note is its Message).
type RuleResult struct {
	Part   RulePart   `json:"part"`
	Status RuleStatus `json:"status"`
}

// ObservationKind names a fact a run observes on its hosts.
type ObservationKind string

// Observations.
const (
	// ObsHealth: a restarted service's health check, asked once right after
	// the restart; OK is true when it answered "not ready" (non-2xx or
	// refused), as a service that reports its start-up should.
	ObsHealth ObservationKind = "health"
	// ObsSmoke: the smoke checks ran on the host (OK: all passed).
	ObsSmoke ObservationKind = "smoke"
	// ObsCacheNamespace: the service's cache namespace was asked (OK: it is
	// the release).
	ObsCacheNamespace ObservationKind = "cache_namespace"
	// ObsMigrated: the migrate hooks ran (OK) or failed, before the first switch.
	ObsMigrated ObservationKind = "migrated"
)

// Observation is one fact a run observed (an Observed event).
type Observation struct {
	Kind ObservationKind `json:"kind"`
	OK   bool            `json:"ok"`
	// Note is the evidence: what passed, what failed, where.
	Note string `json:"note,omitempty"`
}

// Slot is one of a host's two colours (blue/green, A/B).
type Slot string

// Slot colours.
const (
	SlotBlue  Slot = "blue"
	SlotGreen Slot = "green"
)

// Other is the other colour.
func (s Slot) Other() Slot {
	if s == SlotBlue {
		return SlotGreen
	}
	return SlotBlue
}

// GateResult is one SLO gate decision.
type GateResult struct {
	Step     int     `json:"step"`
	Verdict  Verdict `json:"verdict"`
	Reason   string  `json:"reason"`
	Failures int     `json:"failures"`
	// At is when the result was journaled (set by State.Apply from the
	// event's time, so that the cockpit marks it on the SLO time axis).
	At time.Time `json:"-"`
}

// Verdict of an SLO gate measurement.
type Verdict string

// Gate verdicts.
const (
	VerdictPass         Verdict = "pass"
	VerdictFail         Verdict = "fail"
	VerdictInconclusive Verdict = "inconclusive"
)

// ChecklistItem is one production checklist item's state.
type ChecklistItem struct {
	ID       string    `json:"id"`
	Title    string    `json:"title"`
	State    ItemState `json:"state"`
	Evidence string    `json:"evidence,omitempty"`
	AckBy    string    `json:"ack_by,omitempty"`
	Required bool      `json:"required,omitempty"`
}

// Report is the end-of-run summary (the hitless report).
type Report struct {
	Strategy  string          `json:"strategy"`
	Hosts     int             `json:"hosts"`
	Duration  time.Duration   `json:"duration"`
	Outcome   Outcome         `json:"outcome"`
	Verdict   string          `json:"verdict"`
	RTO       time.Duration   `json:"rto,omitempty"`
	Failed    []string        `json:"failed_hosts,omitempty"`
	Probe     *ProbeSummary   `json:"probe,omitempty"`
	Checklist []ChecklistItem `json:"checklist,omitempty"`
	Gates     []GateResult    `json:"gates,omitempty"`
}

// ProbeSummary is the probe traffic of a run window.
type ProbeSummary struct {
	Rate       float64       `json:"rate"`
	Requests   int64         `json:"requests"`
	Failed     int64         `json:"failed"`
	P50        time.Duration `json:"p50"`
	P99        time.Duration `json:"p99"`
	LongestGap time.Duration `json:"longest_gap"`
	// Releases splits the probe's requests by the release that answered.
	Releases map[string]ReleaseProbe `json:"releases,omitempty"`
	// ReleaseErrors are the failed requests a release answered itself
	// with an error status (its own 500s): they count against the
	// release, not as connections lost while services restarted.
	ReleaseErrors int64 `json:"release_errors,omitempty"`
}

// Lost is how many probe requests failed without an answer from a
// release: refused, reset, timed out, dropped, or answered by the traffic
// layer itself (no backend to take them). Restarts that shut down
// gracefully lose none.
func (p *ProbeSummary) Lost() int64 { return p.Failed - p.ReleaseErrors }

// ReleaseProbe is the probe traffic one release answered.
type ReleaseProbe struct {
	Requests int64         `json:"requests"`
	Failed   int64         `json:"failed"`
	P99      time.Duration `json:"p99"`
	// Errors are the failed requests it answered with an error status.
	Errors int64 `json:"errors,omitempty"`
}
