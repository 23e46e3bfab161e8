package engine

import (
	"errors"
	"strings"
	"testing"

	"flightdeck/engine/plan"
)

// canaryMachine is the step of a canary of r2 over r1 on host a (steps as
// given, four-eyes promotion), started and past its rollback-path check.
func canaryMachine(t *testing.T, steps []int, evs ...Event) *machine {
	t.Helper()
	env := &plan.Environment{Name: "prod", RequireApproval: []string{"promote"},
		Strategy: plan.Strategy{Kind: plan.Canary, Steps: steps}}
	m := newMachine(NewState(), PlannerFor(env, nil, 0), runRules{})
	out := m.step(t0, startInput{info: RunInfo{Kind: KindDeploy, Strategy: "canary", Release: "r2", Previous: "r1", Steps: steps,
		RequireApproval: env.RequireApproval, Hosts: []RunHost{{Name: "a", Current: "r1"}}}})
	m.step(t0, workInput{results: []workResult{{key: verifyWork, action: out.actions[0], done: true}}})
	m.emit(&output{}, t0, evs...)
	return m
}

// TestFourEyesPromotion: with require_approval: promote, a promotion to
// 100 % proposed by one operator waits for a second one; the proposer
// cannot approve it; a rollback never waits.
func TestFourEyesPromotion(t *testing.T) {
	m := canaryMachine(t, []int{5, 25, 100}, Event{Type: EvStepStarted, Wave: 2, Weight: ptr(25.0)})
	alice := Actor{Name: "alice", Role: RoleOperator, Fingerprint: "SHA256:a"}
	bob := Actor{Name: "bob", Role: RoleOperator, Fingerprint: "SHA256:b"}
	vic := Actor{Name: "vic", Role: RoleViewer}
	send := func(c Command) error { return m.step(t0, commandInput{cmd: c}).reply }

	if err := send(Command{Kind: CmdPromote, Actor: alice}); err != nil {
		t.Fatalf("alice proposes: %v", err)
	}
	if m.st.Step != 2 || m.st.Proposal == nil || m.st.Proposal.By != "alice" {
		t.Fatalf("the promotion must wait: step %d proposal %+v", m.st.Step, m.st.Proposal)
	}
	if err := send(Command{Kind: CmdApprove, Actor: alice}); err == nil || !strings.Contains(err.Error(), "second operator") {
		t.Fatalf("alice approving her own proposal: %v", err)
	}
	if err := send(Command{Kind: CmdApprove, Actor: vic}); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("a viewer approving: %v", err)
	}
	if err := send(Command{Kind: CmdApprove, Actor: bob}); err != nil {
		t.Fatalf("bob approves: %v", err)
	}
	if m.st.Step != 3 || m.st.StepTarget != 100 || m.st.Proposal != nil {
		t.Fatalf("after approval: step %d target %g proposal %+v", m.st.Step, m.st.StepTarget, m.st.Proposal)
	}
	// A rollback never waits for anyone.
	if err := send(Command{Kind: CmdRollback, Actor: alice}); err != nil || m.st.Status != StatusRollingBack {
		t.Fatalf("rollback: %v, status %s", err, m.st.Status)
	}
}

// TestAutoPromotionWaitsForApproval: the planner's own promotion to the
// last step becomes a proposal by auto that any operator can approve.
func TestAutoPromotionWaitsForApproval(t *testing.T) {
	m := canaryMachine(t, []int{5, 100}, Event{Type: EvStepStarted, Wave: 1, Weight: ptr(5.0)})
	var out output
	if changed := m.take(t0, Action{Kind: ActStep, Wave: 2, Weight: 100}, &out); !changed {
		t.Fatal("the proposal was not recorded")
	}
	if m.st.Step != 1 || m.st.Proposal == nil || m.st.Proposal.By != "auto" {
		t.Fatalf("auto promotion: step %d proposal %+v", m.st.Step, m.st.Proposal)
	}
	if err := m.step(t0, commandInput{cmd: Command{Kind: CmdApprove, Actor: Actor{Name: "alice", Role: RoleOperator}}}).reply; err != nil || m.st.Step != 2 {
		t.Fatalf("approve: %v step %d", err, m.st.Step)
	}
}
