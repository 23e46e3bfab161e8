package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"flightdeck/engine"
)

// TestAdoptIsJournaledAndAnInterruptedOneIsFinished: adopt writes a
// journaled run of kind adopt; a journal left by an adopt whose process
// died is finished (failed, nothing switched) by the next run rather than
// driven like a deploy.
func TestAdoptIsJournaledAndAnInterruptedOneIsFinished(t *testing.T) {
	f := newFleet(t, 2, "")
	f.deploy("r1")
	// r0 as another tool left it: no manifest, writable files.
	for _, h := range []string{"a", "b"} {
		root := filepath.Join(f.dir, "hosts", h, "releases", "r0")
		if err := os.MkdirAll(filepath.Join(root, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(root, "sub", "page.txt"), "old\n")
	}
	st, err := f.engine().Adopt(context.Background(), owner, []string{"r0"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if st.Info.Kind != engine.KindAdopt || st.Outcome != engine.OutcomeSucceeded {
		t.Fatalf("adopt run: kind %s outcome %s (%s)", st.Info.Kind, st.Outcome, st.Err)
	}
	for _, h := range f.hosts {
		if err := h.Verify(context.Background(), "r0"); err != nil {
			t.Errorf("%s: r0 after adopt: %v", h.Name(), err)
		}
	}
	f.assertAllOn("r1")

	// An adopt whose process died after RunStarted.
	j, err := engine.OpenJournal(f.stateDir, "prod-adopt-dead")
	if err != nil {
		t.Fatal(err)
	}
	start := engine.RunInfo{Kind: engine.KindAdopt, App: "shop", Env: "prod", Strategy: "adopt"}
	if err := j.Append(engine.Event{Seq: 1, Time: time.Now().Add(time.Second), Run: "prod-adopt-dead", Type: engine.EvRunStarted, Start: &start}); err != nil {
		t.Fatal(err)
	}
	j.Close()
	st, err = f.engine().Resume(context.Background(), owner, "test")
	if err != nil {
		t.Fatal(err)
	}
	if st == nil || st.Run != "prod-adopt-dead" || st.Outcome != engine.OutcomeFailed || !strings.Contains(st.Err, "adopt was interrupted") {
		t.Fatalf("resumed adopt: %+v", st)
	}
	f.assertAllOn("r1")
}
