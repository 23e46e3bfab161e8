package tui

import (
	"strings"
	"testing"
	"time"

	"flightdeck/engine"
)

func slotRun(strategy string, more ...engine.Event) []engine.Event {
	b := &events{run: "prod-bg", at: t0}
	hosts := []engine.RunHost{{Name: "web-01", Current: "r41", Slot: engine.SlotGreen}, {Name: "web-02", Current: "r41", Slot: engine.SlotGreen}}
	b.add(0, engine.Event{Type: engine.EvRunStarted, Start: &engine.RunInfo{Kind: engine.KindDeploy, App: "shop", Env: "prod",
		Strategy: strategy, Release: "r42", Previous: "r41", Hosts: hosts, Steps: []int{100}}})
	for _, h := range hosts {
		b.add(time.Second, engine.Event{Type: engine.EvHostPhase, Host: h.Name, Phase: engine.PhaseStandby, Release: "r42"})
	}
	for _, e := range more {
		b.add(time.Second, e)
	}
	return b.evs
}

func pct(f float64) *float64 { return &f }

// TestSlotColumnAndWhereTrafficIs: blue/green and A/B show which slot
// serves each host, and the header says where traffic is, after a
// successful run too (never "weight 0 %").
func TestSlotColumnAndWhereTrafficIs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		evs      []engine.Event
		slot     string
		header   string
		notInHdr string
	}{
		{"blue/green before the flip", slotRun("bluegreen"), "blue", "traffic → r41 (blue)", ""},
		{"blue/green flipped", slotRun("bluegreen", engine.Event{Type: engine.EvWeightSet, Weight: pct(100), Release: "r42"}),
			"green", "traffic → r42 (green)", ""},
		{"blue/green succeeded", slotRun("bluegreen",
			engine.Event{Type: engine.EvWeightSet, Weight: pct(100), Release: "r42"},
			engine.Event{Type: engine.EvHostPhase, Host: "web-01", Phase: engine.PhaseLive, Release: "r42"},
			engine.Event{Type: engine.EvHostPhase, Host: "web-02", Phase: engine.PhaseLive, Release: "r42"},
			engine.Event{Type: engine.EvWeightSet, Weight: pct(0), Release: "r42", Message: "all traffic → r42 (stable)"},
			engine.Event{Type: engine.EvRunFinished, Outcome: engine.OutcomeSucceeded}),
			"green", "traffic: all → r42 (green)", "weight 0%"},
		{"A/B with a cohort", slotRun("ab", engine.Event{Type: engine.EvCohortSet, Weight: pct(10), Release: "r42"}),
			"green+blue", "cohort 10%", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := loaded(tc.evs, 160, 40, nil)
			defer m.Close()
			s := screen(m)
			head := strings.Join(strings.Split(s, "\n")[:2], "\n")
			if !strings.Contains(head, tc.header) || (tc.notInHdr != "" && strings.Contains(head, tc.notInHdr)) {
				t.Errorf("header %q: want %q, not %q", head, tc.header, tc.notInHdr)
			}
			if !strings.Contains(s, "SLOT") {
				t.Fatalf("no SLOT column:\n%s", s)
			}
			for _, l := range strings.Split(s, "\n") {
				if strings.Contains(l, "web-0") && !strings.Contains(l, "[web-0") && !strings.Contains(l, " "+tc.slot+" ") {
					t.Errorf("row %q lacks slot %q", l, tc.slot)
				}
			}
		})
	}
}
