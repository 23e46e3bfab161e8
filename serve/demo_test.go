package serve

import (
	"context"
	"strings"
	"testing"
	"time"

	"flightdeck/engine"
	"flightdeck/engine/plan"
	"flightdeck/targets/demo"
	"flightdeck/tui"
)

// fleetBackend lets an owner start the demo's next release from a session.
type fleetBackend struct {
	*tui.EngineBackend
	fleet *demo.Fleet
	ctx   context.Context
	done  chan error
}

func (b *fleetBackend) Deploy(ctx context.Context, a engine.Actor) error {
	if err := engine.AuthorizeOwner(a, "start a deploy"); err != nil {
		return err
	}
	_, err := b.fleet.Deploy(ctx, a, false)
	return err
}

// startFleet starts a demo fleet of 3 hosts (canary 5 → 25 → 100, paced
// for people) on 127.0.0.1.
func startFleet(t testing.TB, approval bool) *fleetBackend {
	t.Helper()
	sc, err := demo.FindScenario("good")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f, err := demo.Start(ctx, demo.Options{Hosts: 3, Strategy: plan.Canary, Scenario: sc, Rate: 100,
		Dir: t.TempDir(), Binary: binary, Interactive: true})
	if err != nil {
		cancel()
		t.Fatalf("demo fleet: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	t.Cleanup(cancel) // runs first: interrupts a run still going
	if approval {
		f.Env.RequireApproval = []string{"promote"}
	}
	return &fleetBackend{EngineBackend: &tui.EngineBackend{Engine: f.Engine, Command: "serve test"}, fleet: f, ctx: ctx}
}

func journalOf(t *testing.T, b *fleetBackend, run string) []engine.Event {
	t.Helper()
	evs, err := engine.ReadJournal(b.fleet.Engine.StateDir, run)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestThreeOperatorsOneRelease is the acceptance: an owner, an operator
// and a viewer on one demo release, each with their own cockpit.
func TestThreeOperatorsOneRelease(t *testing.T) {
	owner := newUser(t, "olivia", engine.RoleOwner)
	op := newUser(t, "oscar", engine.RoleOperator)
	viewer := newUser(t, "victor", engine.RoleViewer)
	b := startFleet(t, false)
	ts := startServer(t, Options{Keys: keysFor(t, owner, op, viewer), Backend: b, App: "demo-shop", Env: "demo"})
	to := ts.open(t, owner, 200, 45)
	tp := ts.open(t, op, 180, 40) // each session has its own size
	tv := ts.open(t, viewer, 190, 40)
	for _, tm := range []*term{to, tp, tv} {
		tm.waitFor(10*time.Second, "olivia(owner)", "oscar(operator)", "victor(viewer)")
	}

	// Only an owner starts a release from a session.
	tp.keys("d")
	tp.waitFor(10*time.Second, "oscar (operator) may not start a deploy")
	if b.fleet.Engine.Active() != nil {
		t.Fatal("an operator started a deploy")
	}
	to.keys("d") // d asks first, like every action that changes the fleet
	to.waitFor(10*time.Second, "Deploy a new release of demo-shop/demo?")
	to.keys("y")
	st := waitState(t, b.fleet.Hub, 30*time.Second, "the owner's release to reach step 1", func(s *engine.State) bool {
		return s.Active() && s.Step >= 1
	})
	run := st.Run
	for _, tm := range []*term{to, tp, tv} {
		tm.waitFor(10*time.Second, "v1 → v2", "weight 5%")
	}
	out, _, err := ts.run(t, viewer, nil, "status --no-color")
	if err != nil || !strings.Contains(out, "run "+run+" (deploy)  release v1 → v2") {
		t.Fatalf("status: %v\n%s", err, out)
	}

	// The viewer's r is refused by the engine and journaled.
	tv.keys("r")
	tv.waitFor(10*time.Second, "refused rollback by victor")
	to.waitFor(10*time.Second, "refused rollback by victor")
	refused := false
	for _, e := range journalOf(t, b, run) {
		if e.Type == engine.EvCommandRefused && e.Actor == "victor" && e.Command == string(engine.CmdRollback) {
			refused = e.Fingerprint == fingerprint(viewer)
		}
	}
	if !refused {
		t.Fatal("the journal has no refused rollback by victor with his key's fingerprint")
	}

	// Killing the viewer's client mid-session leaves the run alone.
	tv.client.Close()
	<-tv.done
	if st := b.fleet.Hub.Snapshot(); !st.Active() || st.Status == engine.StatusRollingBack {
		t.Fatalf("the run changed when a client died: %s", st.Status)
	}

	// The operator rolls back (after confirming); all see who did it.
	tp.keys("r")
	tp.waitFor(5*time.Second, "Roll back ")
	tp.keys("y")
	// The events pane names him: while it runs ("ROLLBACK by oscar") and,
	// once finished, in the report and the last line ("rollback by oscar"),
	// which stay on screen however many events the rollback adds.
	to.waitFor(10*time.Second, "rollback by oscar")
	tp.waitFor(10*time.Second, "rollback by oscar")
	st = waitState(t, b.fleet.Hub, 60*time.Second, "the rollback to finish", func(s *engine.State) bool {
		return s.Status == engine.StatusFinished
	})
	if st.Outcome != engine.OutcomeRolledBack || st.RollbackBy != "oscar" {
		t.Fatalf("outcome %s by %q", st.Outcome, st.RollbackBy)
	}
	found := false
	for _, e := range journalOf(t, b, run) {
		if e.Type == engine.EvCommand && e.Command == string(engine.CmdRollback) {
			found = e.Actor == "oscar" && e.Fingerprint == fingerprint(op)
		}
	}
	if !found {
		t.Fatal("the journal does not attribute the rollback to oscar's key")
	}

	// The viewer reconnects and sees the current state.
	tv2 := ts.open(t, viewer, 190, 40)
	tv2.waitFor(10*time.Second, "ROLLED BACK by oscar", "olivia(owner)", "oscar(operator)", "victor(viewer)")
	out, _, _ = ts.run(t, viewer, nil, "status --no-color")
	if !strings.Contains(out, "ROLLED BACK by oscar") || !strings.Contains(out, "rollback by oscar") {
		t.Fatalf("status after reconnecting:\n%s", out)
	}
}

// TestFourEyesOverSSH: with require_approval: promote, the promotion to
// 100 % one operator asks for waits until a second operator approves.
func TestFourEyesOverSSH(t *testing.T) {
	alice := newUser(t, "alice", engine.RoleOperator)
	bob := newUser(t, "bob", engine.RoleOperator)
	b := startFleet(t, true)
	ts := startServer(t, Options{Keys: keysFor(t, alice, bob), Backend: b})
	go func() {
		_, _ = b.fleet.Deploy(b.ctx, engine.Actor{Name: "release-bot", Role: engine.RoleOwner, Via: "test"}, false)
	}()
	waitState(t, b.fleet.Hub, 30*time.Second, "step 1", func(s *engine.State) bool { return s.Active() && s.Step == 1 })
	ta := ts.open(t, alice, 140, 40)
	tb := ts.open(t, bob, 140, 40)
	tb.waitFor(10*time.Second, "alice(operator)")
	// An operator sets the canary's weight by number; it stays on step 1.
	if _, errOut, err := ts.run(t, bob, nil, "weight 12"); err != nil {
		t.Fatalf("weight 12: %v %s", err, errOut)
	}
	waitState(t, b.fleet.Hub, 10*time.Second, "12%", func(s *engine.State) bool { return s.StepTarget == 12 && s.Step == 1 })
	if _, errOut, err := ts.run(t, bob, nil, "weight 0"); err == nil || !strings.Contains(errOut, "more than 0 and at most 100") {
		t.Fatalf("weight 0: %v %q", err, errOut)
	}
	if _, errOut, err := ts.run(t, bob, nil, "weight lots"); err == nil || !strings.Contains(errOut, "not a number") {
		t.Fatalf("weight lots: %v %q", err, errOut)
	}
	ta.keys("P")
	waitState(t, b.fleet.Hub, 10*time.Second, "step 2", func(s *engine.State) bool { return s.Step == 2 })
	ta.keys("P")
	st := waitState(t, b.fleet.Hub, 10*time.Second, "alice's proposal", func(s *engine.State) bool { return s.Proposal != nil })
	if st.Proposal.By != "alice" || st.Step != 2 {
		t.Fatalf("proposal %+v at step %d", st.Proposal, st.Step)
	}
	out, _, _ := ts.run(t, bob, nil, "status --no-color")
	if !strings.Contains(out, "proposed by alice waits for a second operator's approval") {
		t.Fatalf("status does not show the proposal:\n%s", out)
	}
	if _, errOut, err := ts.run(t, alice, nil, "approve"); err == nil || !strings.Contains(errOut, "a second operator must approve it") {
		t.Fatalf("alice approving her own proposal: %v %q", err, errOut)
	}
	if b.fleet.Hub.Snapshot().Step != 2 {
		t.Fatal("the promotion went ahead without a second operator")
	}
	if out, errOut, err := ts.run(t, bob, nil, "approve"); err != nil {
		t.Fatalf("bob approves: %v %s", err, errOut)
	} else if !strings.Contains(out, "approve: done (as bob)") {
		t.Fatalf("approve: %q", out)
	}
	st = waitState(t, b.fleet.Hub, 10*time.Second, "step 3", func(s *engine.State) bool { return s.Step == 3 })
	if st.StepTarget != 100 || st.Proposal != nil {
		t.Fatalf("after approval: target %g proposal %+v", st.StepTarget, st.Proposal)
	}
	ta.waitFor(5*time.Second, "100%")
	var approved bool
	for _, e := range journalOf(t, b, st.Run) {
		if e.Type == engine.EvStepStarted && strings.Contains(e.Message, "proposed by alice, approved by bob") {
			approved = e.Actor == "bob" && e.Fingerprint == fingerprint(bob)
		}
	}
	if !approved {
		t.Fatal("the journal does not show bob's approval of alice's proposal")
	}
}
