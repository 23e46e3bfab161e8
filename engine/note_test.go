package engine_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"flightdeck/engine"
)

// deployHeldAtRestart deploys r1, then starts deploying r2 with a restart
// that waits until open is called, and returns once a host restarts: the
// run is in progress and takes commands. done yields the run's end state.
func deployHeldAtRestart(t *testing.T, f *fleet, setup ...func(*engine.Engine)) (ctx context.Context, eng *engine.Engine, sub *engine.Sub, open func(), done <-chan *engine.State) {
	t.Helper()
	f.deploy("r1")
	gate := filepath.Join(f.dir, "gate")
	f.plan.Restart = `while [ ! -e ` + gate + ` ]; do sleep 0.01; done`
	eng = f.engine()
	for _, fn := range setup {
		fn(eng)
	}
	sub = f.hub.Subscribe(4096)
	t.Cleanup(sub.Close)
	ch := make(chan *engine.State, 1)
	go func() {
		st, err := eng.Deploy(context.Background(), owner, f.build("r2"), "test")
		if err != nil {
			t.Error(err)
		}
		ch <- st
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	waitEvent(ctx, t, sub, func(e engine.Event) bool { return e.Type == engine.EvHostPhase && e.Phase == engine.PhaseRestart })
	return ctx, eng, sub, func() { writeFile(t, gate, "") }, ch
}

// TestNoteIsJournaled: a note (what happened outside the engine, e.g. a
// lab fault) sent during a run is journaled with its actor; a viewer's
// note and an empty one are refused.
func TestNoteIsJournaled(t *testing.T) {
	f := newFleet(t, 2, "")
	ctx, eng, _, open, done := deployHeldAtRestart(t, f)
	const msg = "lab: kill b: container killed"
	for _, tc := range []struct {
		actor  engine.Actor
		reason string
		ok     bool
	}{
		{viewer, msg, false},
		{op, "", false},
		{op, msg, true},
	} {
		err := eng.Send(ctx, engine.Command{Kind: engine.CmdNote, Actor: tc.actor, Reason: tc.reason})
		if (err == nil) != tc.ok {
			t.Errorf("note by %s %q: err %v, want ok=%v", tc.actor.Name, tc.reason, err, tc.ok)
		}
		if tc.actor == viewer && !errors.Is(err, engine.ErrNotAllowed) {
			t.Errorf("viewer's note: %v, want ErrNotAllowed", err)
		}
	}
	open()
	st := <-done
	evs, err := engine.ReadJournal(f.stateDir, st.Run)
	if err != nil {
		t.Fatal(err)
	}
	notes := 0
	for _, e := range evs {
		if e.Type == engine.EvNotice && e.Message == msg {
			notes++
			if e.Actor != op.Name {
				t.Errorf("note journaled as %q, want %q", e.Actor, op.Name)
			}
		}
	}
	if notes != 1 {
		t.Fatalf("%d notices %q in the journal, want 1", notes, msg)
	}
}
