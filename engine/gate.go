package engine

import (
	"fmt"
	"math"
	"time"

	"flightdeck/engine/plan"
)

// GateSpec is an SLO gate: thresholds, how many measurements a step takes,
// and how failures and thin data are judged.
type GateSpec struct {
	ErrorRate    float64 // fraction: 0.001 = 0.1 %
	P99          time.Duration
	Interval     time.Duration
	Count        int
	FailureLimit int
	Cumulative   bool
	MinRequests  int
	NoData       string // hold | fail | pass
}

// GateFromPlan converts a plan's gate (nil when the plan has none).
func GateFromPlan(g *plan.Gate) *GateSpec {
	if g == nil {
		return nil
	}
	return &GateSpec{
		ErrorRate: g.ErrorRate.Value / 100, P99: g.P99.Duration, Interval: g.Interval.Duration,
		Count: max(1, g.Count), FailureLimit: max(1, g.FailureLimit), Cumulative: g.Cumulative,
		MinRequests: g.MinRequests, NoData: g.NoData,
	}
}

// Evaluate judges one measurement. It is pure: the verdict depends only on
// the measurement and the spec, and the reason states the numbers.
func (g *GateSpec) Evaluate(step int, m Measurement) GateResult {
	r := GateResult{Step: step}
	if m.NoData || m.Requests == 0 || math.IsNaN(m.ErrorRate) {
		r.Reason = "no data for " + m.Release
		switch g.NoData {
		case "fail":
			r.Verdict = VerdictFail
		case "pass":
			r.Verdict = VerdictPass
		default:
			r.Verdict = VerdictInconclusive
		}
		return r
	}
	if m.Requests < float64(g.MinRequests) {
		r.Verdict = VerdictInconclusive
		r.Reason = fmt.Sprintf("%.0f requests < min %d: too little traffic to judge", m.Requests, g.MinRequests)
		return r
	}
	var breaches []string
	if m.ErrorRate > g.ErrorRate {
		breaches = append(breaches, fmt.Sprintf("error rate %.2f%% > %.2f%%", m.ErrorRate*100, g.ErrorRate*100))
	}
	if g.P99 > 0 && m.P99 > g.P99 {
		breaches = append(breaches, fmt.Sprintf("p99 %s > %s", m.P99.Round(time.Millisecond), g.P99))
	}
	if len(breaches) > 0 {
		r.Verdict = VerdictFail
		r.Reason = joinAnd(breaches) + fmt.Sprintf(" over %.0f requests", m.Requests)
		return r
	}
	r.Verdict = VerdictPass
	r.Reason = fmt.Sprintf("error rate %.2f%% ≤ %.2f%%, p99 %s ≤ %s over %.0f requests",
		m.ErrorRate*100, g.ErrorRate*100, m.P99.Round(time.Millisecond), g.P99, m.Requests)
	return r
}

// Failure judges a measurement that could not be taken: inconclusive, or
// a failure when the gate says no_data: fail.
func (g *GateSpec) Failure(step int, err error) GateResult {
	r := GateResult{Step: step, Verdict: VerdictInconclusive, Reason: "measurement failed: " + err.Error()}
	if g.NoData == "fail" {
		r.Verdict = VerdictFail
	}
	return r
}

// StepGate summarises the gate results of one step.
type StepGate struct {
	Passes, Failures, Consecutive int
	// Last is the newest result of the step, and LastIndex its index in
	// State.Gates (-1 when the step has none).
	Last      *GateResult
	LastIndex int
}

// GateOfStep folds the gate results of the step in progress (a step
// visited again, after stepping down, starts afresh).
func GateOfStep(s *State, step int) StepGate {
	sg := StepGate{LastIndex: -1}
	for i := s.StepGateFrom; i < len(s.Gates); i++ {
		g := &s.Gates[i]
		if g.Step != step {
			continue
		}
		switch g.Verdict {
		case VerdictPass:
			sg.Passes++
			sg.Consecutive = 0
		case VerdictFail:
			sg.Failures++
			sg.Consecutive++
		}
		sg.Last, sg.LastIndex = g, i
	}
	return sg
}

// Failed reports whether the step's failures reached the limit.
func (g *GateSpec) Failed(sg StepGate) bool {
	if g.Cumulative {
		return sg.Failures >= g.FailureLimit
	}
	return sg.Consecutive >= g.FailureLimit
}

func joinAnd(parts []string) string {
	switch len(parts) {
	case 0:
		return ""
	case 1:
		return parts[0]
	}
	out := parts[0]
	for _, p := range parts[1:] {
		out += " and " + p
	}
	return out
}
