package tui

import (
	"fmt"
	"strings"
	"testing"

	"flightdeck/engine"
)

// TestHeaderNeverCutsPresence: at 80 columns, with many operators whose
// names say what they are doing, every one of them is on screen, whole.
func TestHeaderNeverCutsPresence(t *testing.T) {
	m, rec := loaded(withEvents(rollingRun(4), 0, engine.Event{Type: engine.EvPaused, Actor: "alice"}), 80, 24, nil)
	defer m.Close()
	var want []string
	for i := range 6 {
		p := Presence{Name: fmt.Sprintf("op-%d: confirming rollback", i), Role: engine.RoleOperator, Via: "ssh"}
		rec.presence = append(rec.presence, p)
		want = append(want, p.Name+"(operator)")
	}
	m.apply(feedMsg{snap: m.snap})
	s := screen(m)
	for _, w := range append(want, "PAUSED by alice for") {
		if !strings.Contains(s, w) {
			t.Errorf("the header cuts %q:\n%s", w, s)
		}
	}
	if n := len(strings.Split(s, "\n")); n != 24 {
		t.Errorf("screen has %d lines, want 24", n)
	}
}

// TestScenarioInTheCockpit: the header names the scenario, ? shows its
// briefing and the legend of the 3-2-1 marks.
func TestScenarioInTheCockpit(t *testing.T) {
	m, _ := loaded(rollingRun(4), 120, 40, func(o *Options) {
		o.Scenario = Scenario{Name: "bad-canary", Briefing: "The new release answers 5% of requests with a 500. Watch the gate roll it back."}
	})
	defer m.Close()
	if s := screen(m); !strings.Contains(s, "scenario bad-canary") {
		t.Fatalf("the header does not name the scenario:\n%s", s)
	}
	press(t, m, "?")
	s := screen(m)
	for _, want := range []string{"Scenario bad-canary", "Watch the gate roll it back.", "3-2-1 rule", "one instant rollback path", "● live"} {
		if !strings.Contains(s, want) {
			t.Errorf("help lacks %q:\n%s", want, s)
		}
	}
}

// TestFilterByPhase: /failed keeps the failed hosts, /prep the preparing
// and prepared ones.
func TestFilterByPhase(t *testing.T) {
	m, _ := loaded(failedHost(1, "x"), 100, 30, nil)
	defer m.Close()
	press(t, m, strings.Split("/failed", "")...)
	if m.fleetLen() != 1 || m.hostAt(0).Name != "web-02" {
		t.Fatalf("/failed matched %d hosts", m.fleetLen())
	}
	press(t, m, "esc")
	press(t, m, strings.Split("/prep", "")...)
	for i := range m.fleetLen() {
		if ph := m.hostAt(i).Phase; ph != engine.PhasePreparing && ph != engine.PhasePrepared {
			t.Errorf("/prep matched %s in phase %s", m.hostAt(i).Name, ph)
		}
	}
	if m.fleetLen() != 2 { // web-03 preparing, web-04 prepared
		t.Errorf("/prep matched %d hosts, want 2", m.fleetLen())
	}
}
