package engine

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestGateEvaluate(t *testing.T) {
	g := &GateSpec{ErrorRate: 0.001, P99: 200 * time.Millisecond, MinRequests: 10}
	noData := func(mode string) *GateSpec { c := *g; c.NoData = mode; return &c }
	tests := []struct {
		name   string
		g      *GateSpec
		m      Measurement
		want   Verdict
		reason string
	}{
		{"within both", g, Measurement{Release: "r2", Requests: 1000, Errors: 0, P99: 50 * time.Millisecond}, VerdictPass,
			"error rate 0.00% ≤ 0.10%, p99 50ms ≤ 200ms over 1000 requests"},
		{"error rate over", g, Measurement{Requests: 1000, Errors: 5, ErrorRate: 0.005, P99: 50 * time.Millisecond}, VerdictFail,
			"error rate 0.50% > 0.10% over 1000 requests"},
		{"p99 over", g, Measurement{Requests: 1000, P99: 600 * time.Millisecond}, VerdictFail, "p99 600ms > 200ms over 1000 requests"},
		{"both over", g, Measurement{Requests: 100, ErrorRate: 0.05, P99: time.Second}, VerdictFail,
			"error rate 5.00% > 0.10% and p99 1s > 200ms over 100 requests"},
		{"at the threshold passes", g, Measurement{Requests: 1000, ErrorRate: 0.001, P99: 200 * time.Millisecond}, VerdictPass, "error rate 0.10% ≤ 0.10%"},
		{"too few requests: inconclusive, not a pass", g, Measurement{Requests: 9, P99: time.Millisecond}, VerdictInconclusive,
			"9 requests < min 10: too little traffic to judge"},
		{"too few requests, even failing", g, Measurement{Requests: 9, ErrorRate: 1}, VerdictInconclusive, "too little traffic"},
		{"no data: hold (default)", g, Measurement{Release: "r2", NoData: true}, VerdictInconclusive, "no data for r2"},
		{"no data: fail", noData("fail"), Measurement{Release: "r2", NoData: true}, VerdictFail, "no data for r2"},
		{"no data: pass", noData("pass"), Measurement{Release: "r2", NoData: true}, VerdictPass, "no data for r2"},
		{"zero requests is no data", g, Measurement{Release: "r2"}, VerdictInconclusive, "no data"},
		{"NaN error rate is no data", g, Measurement{Release: "r2", Requests: 100, ErrorRate: math.NaN()}, VerdictInconclusive, "no data"},
		{"no p99 threshold", &GateSpec{ErrorRate: 0.01}, Measurement{Requests: 10, P99: time.Hour}, VerdictPass, "error rate 0.00%"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.g.Evaluate(3, tt.m)
			if r.Step != 3 || r.Verdict != tt.want || !strings.Contains(r.Reason, tt.reason) {
				t.Fatalf("Evaluate = %+v, want %s with %q", r, tt.want, tt.reason)
			}
		})
	}
	if r := g.Failure(2, errors.New("refused")); r.Verdict != VerdictInconclusive || r.Reason != "measurement failed: refused" {
		t.Errorf("a failed measurement: %+v", r)
	}
	if r := noData("fail").Failure(2, errors.New("refused")); r.Verdict != VerdictFail {
		t.Errorf("a failed measurement with no_data: fail: %+v", r)
	}
}

// TestGateOfStepAndFailureLimit: a step's results, and the failure limit
// counted in a row (consecutive, the default) or in total (cumulative).
func TestGateOfStepAndFailureLimit(t *testing.T) {
	P, F, I := VerdictPass, VerdictFail, VerdictInconclusive
	tests := []struct {
		name                string
		verdicts            []Verdict // of step 2, after results of step 1
		passes, fails, cons int
		consecutive2        bool // failed with failure_limit 2 (consecutive)
		cumulative2         bool // failed with failure_limit 2, cumulative
	}{
		{"nothing yet", nil, 0, 0, 0, false, false},
		{"passes", []Verdict{P, P}, 2, 0, 0, false, false},
		{"one failure", []Verdict{F}, 0, 1, 1, false, false},
		{"two in a row", []Verdict{P, F, F}, 1, 2, 2, true, true},
		{"two apart", []Verdict{F, P, F}, 1, 2, 1, false, true},
		{"inconclusive neither breaks nor extends a run", []Verdict{F, I, F}, 0, 2, 2, true, true},
		{"a pass resets the run", []Verdict{F, F, P}, 1, 2, 0, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs := []Event{gate(1, F), gate(1, F), step(2, 50)}
			for _, v := range tt.verdicts {
				evs = append(evs, gate(2, v))
			}
			s := trafficState("canary", []int{25, 50, 100}, evs...)
			sg := GateOfStep(s, 2)
			if sg.Passes != tt.passes || sg.Failures != tt.fails || sg.Consecutive != tt.cons {
				t.Fatalf("GateOfStep = %+v, want passes %d failures %d consecutive %d", sg, tt.passes, tt.fails, tt.cons)
			}
			if n := len(tt.verdicts); n > 0 && (sg.Last == nil || sg.Last.Verdict != tt.verdicts[n-1] || sg.LastIndex != len(s.Gates)-1) {
				t.Fatalf("last result %+v at %d", sg.Last, sg.LastIndex)
			}
			if got := (&GateSpec{FailureLimit: 2}).Failed(sg); got != tt.consecutive2 {
				t.Errorf("consecutive limit 2: failed %v, want %v", got, tt.consecutive2)
			}
			if got := (&GateSpec{FailureLimit: 2, Cumulative: true}).Failed(sg); got != tt.cumulative2 {
				t.Errorf("cumulative limit 2: failed %v, want %v", got, tt.cumulative2)
			}
		})
	}
	// The failures of step 1 before it were not counted for step 2.
	s := trafficState("canary", []int{25, 50, 100}, gate(1, F), gate(1, F), step(2, 50))
	if sg := GateOfStep(s, 1); sg.Failures != 0 {
		t.Errorf("results before the step in force count: %+v", sg)
	}
}
