package tui

import (
	"context"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"flightdeck/engine"
)

// histRecorder is a recorder that knows the environment's runs.
type histRecorder struct {
	*recorder
	runs []engine.RunSummary
}

func (h *histRecorder) History(context.Context) ([]engine.RunSummary, error) { return h.runs, nil }

// rolledBackRun is a rolling deploy r41 → r42 that was rolled back: every
// host is on r41 again.
func rolledBackRun() []engine.Event {
	more := []engine.Event{{Type: engine.EvRollbackStart, Actor: "auto", Message: "gate failed"}}
	for i := range 4 {
		more = append(more, engine.Event{Type: engine.EvHostPhase, Host: "web-0" + string(rune('1'+i)), Phase: engine.PhaseReverted, Release: "r41"})
	}
	more = append(more, engine.Event{Type: engine.EvRunFinished, Outcome: engine.OutcomeRolledBack})
	return withEvents(rollingRun(4), time.Second, more...)
}

// TestRollbackDialogBetweenRuns is issue 15's "a second r must not
// silently roll back a healthy release": after a deploy that was rolled
// back, r names the live release (since when, by whom) and the target the
// engine would pick, and warns that the fleet is already back.
func TestRollbackDialogBetweenRuns(t *testing.T) {
	runs := []engine.RunSummary{
		{Run: "a", Kind: engine.KindDeploy, Env: "prod", Release: "r40", Previous: "r39", Actor: "carol", Outcome: engine.OutcomeSucceeded,
			Status: engine.StatusFinished, Started: t0.Add(-2 * time.Hour), Finished: t0.Add(-2*time.Hour + time.Minute)},
		{Run: "b", Kind: engine.KindDeploy, Env: "prod", Release: "r41", Previous: "r40", Actor: "bob", Outcome: engine.OutcomeSucceeded,
			Status: engine.StatusFinished, Started: t0.Add(-time.Hour), Finished: t0.Add(-time.Hour + 4*time.Minute)},
		{Run: "prod-20250314T093000-abc", Kind: engine.KindDeploy, Env: "prod", Release: "r42", Previous: "r41", Actor: "olivia",
			Outcome: engine.OutcomeRolledBack, Status: engine.StatusFinished, Started: t0, Finished: t0.Add(time.Minute)},
	}
	h := &histRecorder{recorder: newRecorder(), runs: runs}
	m, rec := loadedOn(h, rolledBackRun(), 120, 40, nil)
	defer m.Close()
	runCmd(m, m.loadHistory())
	press(t, m, "r")
	s := screen(m)
	for _, want := range []string{
		"r41 (live since 08:34, deployed by bob) → r40",
		"The fleet is already on r41, the release live before the last run", "(r42 rolled back)",
		"Hosts affected: 4 of 4",
	} {
		if !strings.Contains(strings.Join(strings.Fields(s), " "), want) {
			t.Errorf("dialog lacks %q:\n%s", want, s)
		}
	}
	press(t, m, "y")
	if len(rec.rollbacks) != 1 || rec.rollbacks[0] != "r40" {
		t.Errorf("rollbacks %v, want [r40]", rec.rollbacks)
	}

	// The history overlay marks the live release and rolls back to the
	// selected one after naming both sides.
	press(t, m, "h")
	s = screen(m)
	if !strings.Contains(s, "✓ marks the release live now (r41)") || !strings.Contains(s, "rolled back") {
		t.Fatalf("history:\n%s", s)
	}
	press(t, m, "j", "j", "enter")
	if s := strings.Join(strings.Fields(screen(m)), " "); !strings.Contains(s, "r41 (live since 08:34, deployed by bob) → r40") {
		t.Fatalf("the history's rollback dialog:\n%s", screen(m))
	}
}

// TestUntouchedHostsSayUnchanged: after a run rolled back before it
// reached them, hosts that were only prepared say "unchanged".
func TestUntouchedHostsSayUnchanged(t *testing.T) {
	evs := withEvents(rollingRun(4), time.Second,
		engine.Event{Type: engine.EvRollbackStart, Actor: "auto"},
		engine.Event{Type: engine.EvHostPhase, Host: "web-01", Phase: engine.PhaseReverted, Release: "r41"},
		engine.Event{Type: engine.EvHostPhase, Host: "web-02", Phase: engine.PhaseReverted, Release: "r41"},
		engine.Event{Type: engine.EvRunFinished, Outcome: engine.OutcomeRolledBack})
	m, _ := loaded(evs, 120, 40, nil)
	defer m.Close()
	s := screen(m)
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "web-04") && !strings.Contains(l, "[web-04]") && !strings.Contains(l, "unchanged") {
			t.Errorf("untouched host row: %q", l)
		}
		if strings.Contains(l, "web-01") && !strings.Contains(l, "[web-01]") && !strings.Contains(l, "reverted") {
			t.Errorf("reverted host row: %q", l)
		}
	}
}

// TestQuitWarning: a cockpit whose quitting deletes something (the demo's
// temporary journal) asks first, between runs too.
func TestQuitWarning(t *testing.T) {
	m, _ := loaded(finishedRun(), 100, 30, func(o *Options) { o.QuitWarning = "The demo's journal is deleted on quit." })
	defer m.Close()
	press(t, m, "q")
	if s := screen(m); !strings.Contains(s, "Quit the cockpit?") || !strings.Contains(s, "journal is deleted on quit") {
		t.Fatalf("q does not warn:\n%s", s)
	}
	msgs := press(t, m, "y")
	if len(msgs) != 1 || msgs[0] != tea.Quit() {
		t.Fatalf("y does not quit: %v", msgs)
	}
}

// TestStaleHistoryIsNotUsed: a history read before the shown run ended
// names neither the rollback's target nor rows to act on.
func TestStaleHistoryIsNotUsed(t *testing.T) {
	stale := []engine.RunSummary{
		{Run: "a", Kind: engine.KindDeploy, Env: "prod", Release: "r41", Previous: "r40", Outcome: engine.OutcomeSucceeded, Status: engine.StatusFinished},
	}
	h := &histRecorder{recorder: newRecorder(), runs: stale}
	m, _ := loadedOn(h, finishedRun(), 120, 40, nil) // r41 → r42 succeeded, not in the history read
	defer m.Close()
	runCmd(m, m.loadHistory())
	if got := m.rollbackTarget(); got != "r41" {
		t.Fatalf("rollback target %q with a stale history, want r41 (the finished run's previous)", got)
	}
	press(t, m, "h")
	if s := screen(m); !strings.Contains(s, "reading the journal") {
		t.Fatalf("a stale history is shown:\n%s", s)
	}
}

// TestConfirmingNamesTheOpenDialog: what serve tells the other sessions.
func TestConfirmingNamesTheOpenDialog(t *testing.T) {
	m, _ := loaded(canaryRun(), 120, 40, nil)
	defer m.Close()
	for _, tc := range []struct{ key, want string }{{"r", "confirming rollback"}, {"a", "confirming abort"}, {"ctrl+p", "confirming promote all"}} {
		press(t, m, tc.key)
		if got := m.Confirming(); got != tc.want {
			t.Errorf("after %s: %q, want %q", tc.key, got, tc.want)
		}
		press(t, m, "esc")
		if got := m.Confirming(); got != "" {
			t.Errorf("after esc: %q", got)
		}
	}
}

// TestNoEarlierRelease: when the journal's only deploy was the first, r
// says there is nothing to roll back to (and points at the history).
func TestNoEarlierRelease(t *testing.T) {
	runs := []engine.RunSummary{{Run: "prod-20250314T093000-abc", Kind: engine.KindDeploy, Env: "prod", Release: "r42",
		Outcome: engine.OutcomeSucceeded, Status: engine.StatusFinished}}
	m, rec := loadedOn(&histRecorder{recorder: newRecorder(), runs: runs}, finishedRun(), 120, 40, nil)
	defer m.Close()
	runCmd(m, m.loadHistory())
	press(t, m, "r")
	if s := screen(m); m.overlay == overlayConfirm || !strings.Contains(s, "no earlier release in the journal") {
		t.Fatalf("r with nothing to roll back to:\n%s", s)
	}
	if len(rec.rollbacks) != 0 {
		t.Fatalf("rollbacks %v", rec.rollbacks)
	}
}
