package engine

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// canaryState is a canary run of r2 over r1 (steps 5, 25, 100) at step 2,
// with a checklist and four-eyes promotion, after evs.
func canaryState(evs ...Event) *State {
	s := NewState()
	s.Apply(Event{Seq: 1, Time: t0, Run: "run-1", Type: EvRunStarted, Start: &RunInfo{
		Kind: KindDeploy, App: "shop", Env: "prod", Strategy: "canary", Release: "r2", Previous: "r1",
		Steps: []int{5, 25, 100}, RequireApproval: []string{"promote"},
		Hosts: []RunHost{{Name: "a", Current: "r1"}, {Name: "b", Current: "r1"}},
	}})
	base := []Event{
		{Type: EvChecklistItem, Item: &ChecklistItem{ID: ItemDraining, State: ItemVerified}},
		{Type: EvChecklistItem, Item: &ChecklistItem{ID: ItemIdempotent, State: ItemUnknown}},
		{Type: EvChecklistItem, Item: &ChecklistItem{ID: ItemSmoke, State: ItemNA}},
		{Type: EvStepStarted, Wave: 1, Weight: ptr(5.0)},
		{Type: EvStepStarted, Wave: 2, Weight: ptr(25.0)},
	}
	for i, e := range append(base, evs...) {
		e.Seq, e.Time = uint64(i+2), t0
		s.Apply(e)
	}
	return s
}

// TestCheckEveryCommandInEveryStatus is the rule of every operator command
// (as an operator, the role that may do all but deploy) in every state a
// run can be in, and between runs.
func TestCheckEveryCommandInEveryStatus(t *testing.T) {
	finished := canaryState(Event{Type: EvRunFinished, Outcome: OutcomeSucceeded})
	states := []struct {
		name string
		st   *State
	}{
		{"no run", nil},
		{"idle", NewState()},
		{"running", canaryState()},
		{"paused", canaryState(Event{Type: EvPaused, Actor: "alice"})},
		{"proposed", canaryState(Event{Type: EvApprovalRequested, Actor: "bob", Wave: 3})},
		{"rolling back", canaryState(Event{Type: EvRollbackStart, Actor: "auto"})},
		{"settling", canaryState(Event{Type: EvSettling, Outcome: OutcomeSucceeded, Until: t0.Add(3 * time.Second)})},
		{"finishing", canaryState(Event{Type: EvSettling, Outcome: OutcomeSucceeded, Until: t0}, Event{Type: EvFinishing, Outcome: OutcomeSucceeded})},
		{"finished", finished},
	}
	cmds := []Command{
		{Kind: CmdPause}, {Kind: CmdResume}, {Kind: CmdPromote}, {Kind: CmdPromoteAll},
		{Kind: CmdSetWeight, Weight: 10}, {Kind: CmdStepUp}, {Kind: CmdStepDown},
		{Kind: CmdRollback}, {Kind: CmdAbort}, {Kind: CmdAck, Item: ItemIdempotent}, {Kind: CmdApprove}, {Kind: CmdDeploy},
	}
	// want[state][command]: "ok" (accepted: the event types it journals
	// after CommandAccepted), or a part of the refusal.
	const (
		noRun     = "no run in progress"
		finishing = "run is finishing"
		active    = "a run is in progress"
		owner     = "not allowed"
	)
	between := []string{noRun, noRun, noRun, noRun, noRun, noRun, noRun, "ok", noRun, noRun, noRun, owner}
	want := map[string][]string{
		"no run":   between,
		"idle":     between,
		"finished": between,
		"running": {"ok Paused", "cannot resume: run is running", "ok ApprovalRequested", "ok ApprovalRequested",
			"ok StepStarted", "ok ApprovalRequested", "ok StepStarted", "ok RollbackStarted", "ok RollbackStarted",
			"ok ChecklistItem", "no promotion waiting", owner},
		"paused": {"cannot pause: run is paused", "ok Resumed", "ok ApprovalRequested", "ok ApprovalRequested",
			"ok StepStarted", "ok ApprovalRequested", "ok StepStarted", "ok RollbackStarted", "ok RollbackStarted",
			"ok ChecklistItem", "no promotion waiting", owner},
		"proposed": {"ok Paused", "cannot resume: run is running", "already waits for a second operator", "already waits for a second operator",
			"ok StepStarted", "already waits for a second operator", "ok StepStarted", "ok RollbackStarted", "ok RollbackStarted",
			"ok ChecklistItem", "ok StepStarted", owner},
		"rolling back": {"cannot pause: run is rolling_back", "cannot resume: run is rolling_back", "cannot promote: run is rolling_back",
			"cannot promote-all: run is rolling_back", "cannot set-weight: run is rolling_back", "cannot step-up: run is rolling_back",
			"cannot step-down: run is rolling_back", "a rollback is already in progress", "a rollback is already in progress",
			"ok ChecklistItem", "no promotion waiting", owner},
		// A successful deploy that settles can still be taken back.
		"settling": {finishing, finishing, finishing, finishing, finishing, finishing, finishing, "ok RollbackStarted", "ok RollbackStarted",
			finishing, finishing, owner},
		"finishing": {finishing, finishing, finishing, finishing, finishing, finishing, finishing, finishing, finishing,
			finishing, finishing, owner},
	}
	alice := Actor{Name: "alice", Role: RoleOperator, Fingerprint: "SHA256:a"}
	for _, s := range states {
		for i, c := range cmds {
			t.Run(s.name+"/"+string(c.Kind), func(t *testing.T) {
				c.Actor = alice
				w := want[s.name][i]
				evs, err := decideCommand(s.st, c)
				if cerr := Check(s.st, c); fmt.Sprint(cerr) != fmt.Sprint(err) {
					t.Fatalf("Check says %v, the run would say %v", cerr, err)
				}
				if kinds, ok := strings.CutPrefix(w, "ok"); ok {
					if err != nil {
						t.Fatalf("refused: %v; want accepted", err)
					}
					if c.Kind == CmdRollback && s.st == nil || s.st != nil && !s.st.Active() {
						return // a new rollback run starts: no events in this one
					}
					var got []string
					for _, e := range evs[1:] {
						got = append(got, string(e.Type))
					}
					if evs[0].Type != EvCommand || evs[0].Actor != "alice" || strings.Join(got, " ") != strings.TrimSpace(kinds) {
						t.Fatalf("accepted as %s %v, want CommandAccepted%s", evs[0].Type, got, kinds)
					}
					return
				}
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Fatalf("got %v, want a refusal containing %q", err, w)
				}
			})
		}
	}
}

// TestCheckRoles: a viewer may do nothing, an operator all but deploy, an
// owner everything; the refusal wraps ErrNotAllowed in every state.
func TestCheckRoles(t *testing.T) {
	viewer := Actor{Name: "vic", Role: RoleViewer}
	ownerA := Actor{Name: "olivia", Role: RoleOwner}
	for _, st := range []*State{nil, canaryState()} {
		for _, k := range []CommandKind{CmdPause, CmdRollback, CmdAck, CmdApprove, CmdDeploy, CmdSetWeight} {
			if err := Check(st, Command{Kind: k, Actor: viewer}); !errors.Is(err, ErrNotAllowed) {
				t.Errorf("viewer %s: %v, want ErrNotAllowed", k, err)
			}
		}
	}
	if err := Check(nil, Command{Kind: CmdDeploy, Actor: ownerA}); err != nil {
		t.Errorf("owner deploy between runs: %v", err)
	}
	if err := Check(canaryState(), Command{Kind: CmdDeploy, Actor: ownerA}); !errors.Is(err, ErrRunActive) {
		t.Errorf("owner deploy during a run: %v, want ErrRunActive", err)
	}
	if err := Check(nil, Command{Kind: CmdRollback, Actor: ownerA, To: "../etc"}); err == nil {
		t.Error("a rollback to an invalid release id is accepted between runs")
	}
}

// TestCheckStepping pins where each stepping command goes.
func TestCheckStepping(t *testing.T) {
	alice := Actor{Name: "alice", Role: RoleOperator, Fingerprint: "SHA256:a"}
	noApproval := func(evs ...Event) *State {
		s := canaryState(evs...)
		s.Info.RequireApproval = nil
		return s
	}
	atStep := func(n int, w float64) *State { return noApproval(Event{Type: EvStepStarted, Wave: n, Weight: ptr(w)}) }
	tests := []struct {
		name   string
		st     *State
		c      Command
		step   int
		weight float64
		err    string
	}{
		{"step up", noApproval(), Command{Kind: CmdStepUp}, 3, 100, ""},
		{"step down", noApproval(), Command{Kind: CmdStepDown}, 1, 5, ""},
		{"step down from the first step", atStep(1, 5), Command{Kind: CmdStepDown}, 0, 0, "already at step 1 of 3"},
		{"step up from the last step", atStep(3, 100), Command{Kind: CmdStepUp}, 0, 0, "already at step 3 of 3"},
		{"promote all", atStep(1, 5), Command{Kind: CmdPromoteAll}, 3, 100, ""},
		{"weight between steps stays on the lower step", noApproval(), Command{Kind: CmdSetWeight, Weight: 10}, 1, 10, ""},
		{"weight on a step", noApproval(), Command{Kind: CmdSetWeight, Weight: 25.5}, 2, 25.5, ""},
		{"weight below the first step", noApproval(), Command{Kind: CmdSetWeight, Weight: 0.5}, 1, 0.5, ""},
		{"weight 100 is the last step", noApproval(), Command{Kind: CmdSetWeight, Weight: 100}, 3, 100, ""},
		{"weight 0", noApproval(), Command{Kind: CmdSetWeight, Weight: 0}, 0, 0, "more than 0 and at most 100"},
		{"weight over 100", noApproval(), Command{Kind: CmdSetWeight, Weight: 101}, 0, 0, "more than 0 and at most 100"},
		{"the weight in force", noApproval(), Command{Kind: CmdSetWeight, Weight: 25}, 0, 0, "already at 25%"},
		{"weight on a blue/green run", func() *State { s := noApproval(); s.Info.Strategy = "bluegreen"; return s }(),
			Command{Kind: CmdSetWeight, Weight: 50}, 0, 0, "set-weight needs a canary; this run is bluegreen"},
		{"steps on a rolling run", startState(KindDeploy, [][]string{{"a"}}, nil), Command{Kind: CmdStepUp}, 0, 0,
			"step-up needs a traffic strategy (canary, bluegreen, ab); this run is rolling"},
		{"approve another's proposal", canaryState(Event{Type: EvApprovalRequested, Actor: "bob", Fingerprint: "SHA256:b", Wave: 3}),
			Command{Kind: CmdApprove}, 3, 100, ""},
		{"approve one's own proposal", canaryState(Event{Type: EvApprovalRequested, Actor: "alice", Fingerprint: "SHA256:a", Wave: 3}),
			Command{Kind: CmdApprove}, 0, 0, "a second operator must approve it"},
		{"the same name with another key is another operator", canaryState(Event{Type: EvApprovalRequested, Actor: "alice", Fingerprint: "SHA256:other", Wave: 3}),
			Command{Kind: CmdApprove}, 3, 100, ""},
		{"ack a verified item", noApproval(), Command{Kind: CmdAck, Item: ItemDraining}, 0, 0, "draining is already verified"},
		{"ack an item not in the run", noApproval(), Command{Kind: CmdAck, Item: "nope"}, 0, 0, `no checklist item "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.c
			c.Actor = alice
			evs, err := decideCommand(tt.st, c)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			last := evs[len(evs)-1]
			if tt.step > 0 && (last.Type != EvStepStarted || last.Wave != tt.step || *last.Weight != tt.weight) {
				t.Fatalf("got %s step %d weight %v, want step %d at %g%%", last.Type, last.Wave, last.Weight, tt.step, tt.weight)
			}
			st := tt.st.Clone()
			for _, e := range evs {
				st.Apply(e)
			}
			if tt.step > 0 && (st.Step != tt.step || st.StepTarget != tt.weight) {
				t.Fatalf("folded: step %d target %g", st.Step, st.StepTarget)
			}
		})
	}
}

// TestCheckSteppingWhilePausedStaysPaused: an operator who paused and
// then steps keeps the run paused.
func TestCheckSteppingWhilePausedStaysPaused(t *testing.T) {
	for _, k := range []CommandKind{CmdStepUp, CmdStepDown, CmdPromote, CmdSetWeight} {
		st := canaryState(Event{Type: EvPaused, Actor: "alice"})
		st.Info.RequireApproval = nil
		evs, err := decideCommand(st, Command{Kind: k, Weight: 7, Actor: Actor{Name: "alice", Role: RoleOperator}})
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		for _, e := range evs {
			st.Apply(e)
		}
		if st.Status != StatusPaused {
			t.Errorf("%s while paused: status %s, want paused", k, st.Status)
		}
	}
}
