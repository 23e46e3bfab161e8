package tui

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"flightdeck/engine"
)

const hostile = "\x1b]0;owned\x07\x1b[2J\r\n09:31:00 run SUCCEEDED\x9b1m"

// failedHost is a rolling run where web-02 failed with a long wrapped
// error after a lot of restart output.
func failedHost(outputLines int, msg string) []engine.Event {
	var more []engine.Event
	for i := range outputLines {
		more = append(more, engine.Event{Type: engine.EvHostOutput, Host: "web-02", Command: "restart", Message: fmt.Sprintf("output line %d %s", i, msg)})
	}
	more = append(more, engine.Event{Type: engine.EvHostPhase, Host: "web-02", Phase: engine.PhaseFailed, Release: "r42",
		Error: "restart web-02: /srv/shop/releases/r42/bin/a-rather-long-path/start.sh: health check http://10.0.0.2:8080/healthz: dial tcp 10.0.0.2:8080: connect: connection refused"})
	return withEvents(rollingRun(4), 100*time.Millisecond, more...)
}

// TestFailureShowsItsCause: the fleet row leads with the cause, the
// details wrap the whole error (no ellipsis), and suggest a next step.
func TestFailureShowsItsCause(t *testing.T) {
	m, _ := loaded(failedHost(3, "ok"), 100, 40, nil)
	defer m.Close()
	if s := screen(m); !strings.Contains(s, "connection refused (restart web-02") {
		t.Fatalf("the fleet row does not lead with the cause:\n%s", s)
	}
	press(t, m, "j", "enter")
	s := screen(m)
	for _, want := range []string{"web-02 failed: connection refused", "next: the host or its service does not answer", "/start.sh"} {
		if !strings.Contains(s, want) {
			t.Errorf("details lack %q:\n%s", want, s)
		}
	}
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "while:") && strings.Contains(l, "…") {
			t.Errorf("the error is cut, not wrapped: %q", l)
		}
	}
}

// TestDetailsFollowOutput: with more output than fits, the details show
// the newest line; k scrolls back, and new output keeps the view where
// the operator left it until j returns to the end.
func TestDetailsFollowOutput(t *testing.T) {
	m, rec := loaded(failedHost(80, "x"), 100, 30, nil)
	defer m.Close()
	press(t, m, "j", "enter")
	if s := screen(m); !strings.Contains(s, "output line 79") {
		t.Fatalf("details do not show the newest output:\n%s", s)
	}
	up := strings.Split(strings.Repeat("k", 10), "")
	press(t, m, up...)
	if s := screen(m); strings.Contains(s, "output line 79") {
		t.Fatalf("k does not scroll back:\n%s", s)
	}
	press(t, m, strings.Split(strings.Repeat("j", 10), "")...)
	if s := screen(m); !strings.Contains(s, "output line 79") {
		t.Fatalf("j does not return to the newest output:\n%s", s)
	}
	// A new line arrives while following: it is shown.
	last := m.snap.Seq
	rec.hub.Publish(engine.Event{Seq: last + 1, Run: m.snap.Run, Time: t0.Add(time.Minute), Type: engine.EvHostOutput, Host: "web-02", Command: "restart", Message: "a new line arrives"})
	evs, lost := m.sub.Drain()
	m.apply(feedMsg{snap: m.snap, evs: evs, lost: lost, at: time.Now()})
	if s := screen(m); !strings.Contains(s, "a new line arrives") {
		t.Fatalf("the details do not follow new output:\n%s", s)
	}
}

// TestCockpitEscapesControls: a host's escape sequences reach neither
// the events pane, the fleet row nor the details as control characters.
func TestCockpitEscapesControls(t *testing.T) {
	evs := withEvents(rollingRun(4), time.Second,
		engine.Event{Type: engine.EvHostOutput, Host: "web-02", Command: "restart", Message: hostile},
		engine.Event{Type: engine.EvNotice, Message: hostile},
		engine.Event{Type: engine.EvHostPhase, Host: "web-02", Phase: engine.PhaseFailed, Error: hostile})
	m, _ := loaded(evs, 160, 48, nil)
	defer m.Close()
	for _, keys := range [][]string{nil, {"j", "enter"}} {
		press(t, m, keys...)
		raw := m.Render()
		for _, bad := range []string{"\x1b]0;", "\x1b[2J", "\r", "\x07", "\x9b", "\u009b"} {
			if strings.Contains(raw, bad) {
				t.Errorf("screen after %v carries %q", keys, bad)
			}
		}
		if !strings.Contains(raw, `\x1b]0;owned`) {
			t.Errorf("screen after %v does not show the escaped text", keys)
		}
	}
}

// TestVerdictLeadsWithTheCause: a failed run's status line says the
// verdict and, first, the cause of the failure.
func TestVerdictLeadsWithTheCause(t *testing.T) {
	evs := withEvents(failedHost(1, "x"), time.Second,
		engine.Event{Type: engine.EvReport, Report: &engine.Report{Outcome: engine.OutcomeFailed, Verdict: "FAILED"}},
		engine.Event{Type: engine.EvRunFinished, Outcome: engine.OutcomeFailed,
			Error: "wave 1: restart web-02: /srv/shop/releases/r42/bin/start.sh: connect: connection refused"})
	m, _ := loaded(evs, 100, 30, nil)
	defer m.Close()
	if s := screen(m); !strings.Contains(s, "verdict: FAILED — connection refused (wave 1: restart web-02:") {
		t.Fatalf("the verdict does not lead with the cause:\n%s", s)
	}
}
