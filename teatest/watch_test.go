package teatest

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"flightdeck/engine"
)

// TestTmuxWatchIsReadOnly (acceptance 6 of issue 15): a deploy started in
// one terminal (the demo, journal in local files) is shown by
// `flightdeck watch` in another, read-only: its keys change nothing, and
// it follows the run when the first terminal resumes it.
func TestTmuxWatchIsReadOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("the tmux demo is skipped in -short mode")
	}
	t.Parallel()
	d := startDemo(t, []string{"FLIGHTDECK_ACTOR=pilot"}, nil, "--hosts", "4", "--strategy", "rolling")
	// Hold the release: pause it from the demo's own cockpit.
	d.waitText(waitLong, "RUNNING", "v1 → v2")
	d.keys("p")
	d.waitText(waitLong, "PAUSED by pilot")

	// The second terminal: same tmux server, its own session.
	plan := filepath.Join(d.dir, "flightdeck.yaml")
	d.run("new-session", "-d", "-s", "watch", "-x", "160", "-y", "48", "-e", "FLIGHTDECK_ACTOR=watcher",
		"-e", "XDG_CONFIG_HOME="+filepath.Join(filepath.Dir(d.dir), "config"), binary, "watch", "-f", plan)
	screen := func() string { return d.run("capture-pane", "-p", "-t", "watch") }
	waitWatch := func(what string, ok func(string) bool) string {
		t.Helper()
		deadline := time.Now().Add(waitLong)
		for {
			s := screen()
			if ok(s) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("watch: waiting for %s; screen:\n%s", what, s)
			}
			time.Sleep(100 * time.Millisecond) // poll interval, not synchronisation
		}
	}
	s := waitWatch("the paused run", func(s string) bool {
		return strings.Contains(s, "PAUSED") && strings.Contains(s, "v1 → v2") && strings.Contains(s, "read-only") && strings.Contains(s, "web-4")
	})
	if !strings.Contains(s, "SLO live flightdeck") {
		t.Errorf("the watching cockpit does not sample the plan's router:\n%s", s)
	}
	if strings.Contains(s, "r rollback") || strings.Contains(s, "p resume") || strings.Contains(s, "p pause") {
		t.Errorf("the watching cockpit offers actions:\n%s", s)
	}
	// Every action key of the watcher: nothing changes.
	for _, k := range []string{"p", "r", "y", "a", "y", "+", "P", "d", "y"} {
		d.run("send-keys", "-t", "watch", k)
	}
	waitWatch("the keys handled", func(s string) bool { return strings.Contains(s, "PAUSED") })
	if s := d.screen(false); !strings.Contains(s, "PAUSED by pilot") {
		t.Errorf("the demo's run is not paused any more after the watcher's keys:\n%s", s)
	}
	runs, err := engine.ListRuns(filepath.Join(d.dir, ".flightdeck"))
	if err != nil || len(runs) < 2 {
		t.Fatalf("journal: %v, %d runs", err, len(runs))
	}
	evs, err := engine.ReadJournal(filepath.Join(d.dir, ".flightdeck"), runs[len(runs)-1].Run)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Actor == "watcher" {
			t.Errorf("the watcher's keys reached the run: %s by %s", e.Type, e.Actor)
		}
	}
	// The run goes on from the first terminal; the watcher follows it.
	d.keys("p")
	waitWatch("the run finished", func(s string) bool {
		return strings.Contains(s, "SUCCEEDED") || strings.Contains(s, "NOT HITLESS")
	})
	d.run("send-keys", "-t", "watch", "q")
	if code := d.quit(); code != 0 && code != 1 {
		t.Errorf("the demo exited with status %d", code)
	}
}
