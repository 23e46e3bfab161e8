package lines

import (
	"slices"
	"testing"

	"flightdeck/engine"
)

func TestKindsOf(t *testing.T) {
	for _, tt := range []struct {
		name string
		e    engine.Event
		want []Kind
	}{
		{"operator command", engine.Event{Type: engine.EvCommand, Actor: "alice", Command: "pause"}, []Kind{KindActions}},
		{"refused command", engine.Event{Type: engine.EvCommandRefused, Actor: "bob"}, []Kind{KindActions, KindFailures}},
		{"auto rollback", engine.Event{Type: engine.EvRollbackStart, Actor: "auto"}, []Kind{KindActions, KindRollbacks}},
		{"rolled back", engine.Event{Type: engine.EvRolledBack}, []Kind{KindRollbacks}},
		{"gate pass", engine.Event{Type: engine.EvGateResult, Gate: &engine.GateResult{Verdict: engine.VerdictPass}}, []Kind{KindGates}},
		{"gate fail", engine.Event{Type: engine.EvGateResult, Gate: &engine.GateResult{Verdict: engine.VerdictFail}}, []Kind{KindGates, KindFailures}},
		{"weight by the engine", engine.Event{Type: engine.EvWeightSet}, []Kind{KindTraffic}},
		{"weight by an operator", engine.Event{Type: engine.EvWeightSet, Actor: "alice"}, []Kind{KindTraffic, KindActions}},
		{"host failed", engine.Event{Type: engine.EvHostPhase, Phase: engine.PhaseFailed, Error: "connection refused"}, []Kind{KindFailures}},
		{"host live", engine.Event{Type: engine.EvHostPhase, Phase: engine.PhaseLive}, nil},
		{"notice with error", engine.Event{Type: engine.EvNotice, Error: "router unreachable"}, []Kind{KindFailures}},
		{"run succeeded", engine.Event{Type: engine.EvRunFinished, Outcome: engine.OutcomeSucceeded}, []Kind{KindRun}},
		{"run rolled back", engine.Event{Type: engine.EvRunFinished, Outcome: engine.OutcomeRolledBack}, []Kind{KindRun, KindFailures}},
		{"measurement", engine.Event{Type: engine.EvMetricSample}, nil},
	} {
		if got := KindsOf(tt.e); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
	if _, err := ParseKinds("gates, failures"); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"gatez", "", " , "} {
		if _, err := ParseKinds(bad); err == nil {
			t.Errorf("ParseKinds(%q) accepted", bad)
		}
	}
}
