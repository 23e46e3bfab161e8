package tui

import (
	"strings"
	"testing"
	"time"

	"flightdeck/engine"
)

// TestAvailabilityIsTheEngines is issue 13's acceptance 4: over states ×
// actors × actions, the cockpit offers an action exactly when the
// engine's pure check accepts its command, and says the engine's reason
// when it does not.
func TestAvailabilityIsTheEngines(t *testing.T) {
	canary := func(extra ...engine.Event) []engine.Event {
		return withEvents(canaryRun(), time.Second, extra...)
	}
	finished := finishedRun()
	states := map[string][]engine.Event{
		"rolling running":        rollingRun(4),
		"rolling paused":         withEvents(rollingRun(4), time.Second, engine.Event{Type: engine.EvPaused, Actor: "bob"}),
		"rolling rolling back":   withEvents(rollingRun(4), time.Second, engine.Event{Type: engine.EvRollbackStart, Actor: "bob"}),
		"canary step 1":          canaryRun(),
		"canary last step":       canary(engine.Event{Type: engine.EvStepStarted, Wave: 3, Weight: ptrF(100)}),
		"canary proposed by me":  canary(engine.Event{Type: engine.EvApprovalRequested, Actor: "alice", Wave: 3}),
		"canary proposed by bob": canary(engine.Event{Type: engine.EvApprovalRequested, Actor: "bob", Wave: 3}),
		"canary settling":        canary(engine.Event{Type: engine.EvSettling, Outcome: engine.OutcomeSucceeded, Until: t0.Add(time.Hour)}),
		"canary finishing":       canary(engine.Event{Type: engine.EvFinishing}),
		"finished":               finished,
		"finished rolled back": withEvents(rollingRun(4), time.Second,
			engine.Event{Type: engine.EvRollbackStart, Actor: "auto"},
			engine.Event{Type: engine.EvRunFinished, Outcome: engine.OutcomeRolledBack}),
	}
	actors := []engine.Actor{alice, olga, {Name: "vic", Role: engine.RoleViewer}}
	checked := 0
	for name, evs := range states {
		for _, actor := range actors {
			for _, cursor := range []int{0, 1} { // checklist item: verified, then one that needs an ack
				m, _ := loadedOn(&faultRecorder{recorder: newRecorder(), fault: "500s"}, evs, 120, 40, func(o *Options) { o.Actor = actor })
				m.checkCursor = cursor
				for _, b := range bindings {
					if b.command == nil {
						continue
					}
					c := b.command(m)
					c.Actor = actor
					want := engine.Check(m.snap, c)
					got := m.avail(b.act)
					if got.hidden {
						t.Errorf("%s as %s: %s hidden (%s)", name, actor.Role, b.act, got.detail)
						continue
					}
					checked++
					if got.ok != (want == nil) {
						t.Errorf("%s as %s, item %d: %s available = %v (%s), engine says %v", name, actor.Role, cursor, b.act, got.ok, got.detail, want)
						continue
					}
					if want != nil && got.detail != fullReason(c, want) {
						t.Errorf("%s as %s: %s refused with %q, engine says %q", name, actor.Role, b.act, got.detail, want)
					}
				}
				m.Close()
			}
		}
	}
	if checked < 300 {
		t.Fatalf("only %d state × action pairs checked", checked)
	}
}

func ptrF(f float64) *float64 { return &f }

// TestSetWeightByNumber: w, a number and enter set a canary's weight;
// the number is checked by the engine's rule before it is sent.
func TestSetWeightByNumber(t *testing.T) {
	m, rec := loaded(canaryRun(), 120, 40, nil)
	defer m.Close()
	press(t, m, "w", "1", "5", "0", "enter") // 150 %: the engine's rule refuses it here
	if len(rec.commands()) != 0 || !strings.Contains(screen(m), "set weight: cannot set weight 150%") {
		t.Fatalf("150%% sent or not refused: %v\n%s", rec.commands(), screen(m))
	}
	press(t, m, "backspace", "backspace", "enter")
	got := rec.commands()
	if len(got) != 1 || got[0].Kind != engine.CmdSetWeight || got[0].Weight != 1 {
		t.Fatalf("commands %+v, want set-weight 1", got)
	}
	r, _ := loaded(rollingRun(4), 120, 40, nil)
	defer r.Close()
	press(t, r, "w")
	if s := screen(r); r.weightOn || !strings.Contains(s, "weight: set-weight needs a traffic strategy") {
		t.Fatalf("w on a rolling run:\n%s", s)
	}
}
