package engine

import (
	"errors"
	"strings"
	"testing"

	"flightdeck/engine/plan"
)

// TestFourEyesPromotion: with require_approval: promote, a promotion to
// 100 % proposed by one operator waits for a second one; the proposer
// cannot approve it; a rollback never waits.
func TestFourEyesPromotion(t *testing.T) {
	env := &plan.Environment{Name: "prod", RequireApproval: []string{"promote"},
		Strategy: plan.Strategy{Kind: plan.Canary, Steps: []int{5, 25, 100}}}
	r, err := NewRun(RunConfig{Plan: &plan.Plan{App: "shop"}, Env: env, Kind: KindDeploy, Artifact: &Artifact{ID: "r2"}})
	if err != nil {
		t.Fatal(err)
	}
	r.emit(Event{Type: EvRunStarted, Start: &RunInfo{Kind: KindDeploy, Release: "r2", Previous: "r1", Steps: []int{5, 25, 100}, RequireApproval: []string{"promote"},
		Hosts: []RunHost{{Name: "a", Current: "r1"}}}})
	r.emit(Event{Type: EvStepStarted, Wave: 2, Weight: ptr(25.0)})
	alice := Actor{Name: "alice", Role: RoleOperator, Fingerprint: "SHA256:a"}
	bob := Actor{Name: "bob", Role: RoleOperator, Fingerprint: "SHA256:b"}
	vic := Actor{Name: "vic", Role: RoleViewer}

	if err := r.handle(Command{Kind: CmdPromote, Actor: alice}); err != nil {
		t.Fatalf("alice proposes: %v", err)
	}
	if r.state.Step != 2 || r.state.Proposal == nil || r.state.Proposal.By != "alice" {
		t.Fatalf("the promotion must wait: step %d proposal %+v", r.state.Step, r.state.Proposal)
	}
	if err := r.handle(Command{Kind: CmdApprove, Actor: alice}); err == nil || !strings.Contains(err.Error(), "second operator") {
		t.Fatalf("alice approving her own proposal: %v", err)
	}
	if err := r.handle(Command{Kind: CmdApprove, Actor: vic}); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("a viewer approving: %v", err)
	}
	if err := r.handle(Command{Kind: CmdApprove, Actor: bob}); err != nil {
		t.Fatalf("bob approves: %v", err)
	}
	if r.state.Step != 3 || r.state.StepTarget != 100 || r.state.Proposal != nil {
		t.Fatalf("after approval: step %d target %g proposal %+v", r.state.Step, r.state.StepTarget, r.state.Proposal)
	}
	// A rollback never waits for anyone.
	if err := r.handle(Command{Kind: CmdRollback, Actor: alice}); err != nil || r.state.Status != StatusRollingBack {
		t.Fatalf("rollback: %v, status %s", err, r.state.Status)
	}
}

// TestAutoPromotionWaitsForApproval: the planner's own promotion to the
// last step becomes a proposal by auto that any operator can approve.
func TestAutoPromotionWaitsForApproval(t *testing.T) {
	env := &plan.Environment{Name: "prod", RequireApproval: []string{"promote"},
		Strategy: plan.Strategy{Kind: plan.Canary, Steps: []int{5, 100}}}
	r, err := NewRun(RunConfig{Plan: &plan.Plan{App: "shop"}, Env: env, Kind: KindDeploy, Artifact: &Artifact{ID: "r2"}})
	if err != nil {
		t.Fatal(err)
	}
	r.emit(Event{Type: EvRunStarted, Start: &RunInfo{Kind: KindDeploy, Release: "r2", Previous: "r1", Steps: []int{5, 100}, RequireApproval: []string{"promote"},
		Hosts: []RunHost{{Name: "a", Current: "r1"}}}})
	r.emit(Event{Type: EvStepStarted, Wave: 1, Weight: ptr(5.0)})
	if changed := r.dispatch(nil, []Action{{Kind: ActStep, Wave: 2, Weight: 100}}); !changed {
		t.Fatal("the proposal was not recorded")
	}
	if r.state.Step != 1 || r.state.Proposal == nil || r.state.Proposal.By != "auto" {
		t.Fatalf("auto promotion: step %d proposal %+v", r.state.Step, r.state.Proposal)
	}
	if err := r.handle(Command{Kind: CmdApprove, Actor: Actor{Name: "alice", Role: RoleOperator}}); err != nil || r.state.Step != 2 {
		t.Fatalf("approve: %v step %d", err, r.state.Step)
	}
}
