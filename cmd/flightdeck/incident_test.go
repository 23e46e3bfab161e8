package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestIncidentTools: a bad-canary demo started with a relative --dir keeps
// its fleet and journal there; `journal show -f DIR/flightdeck.yaml` works
// from where the demo started and, with the absolute path, from anywhere;
// `journal summary` names the failing measurement (the gate's, or the
// auto-rollback trigger's when it fired first) and the rollback's RTO;
// `journal show --only` keeps the kinds asked for.
func TestIncidentTools(t *testing.T) {
	if testing.Short() {
		t.Skip("demo runs skipped in -short mode")
	}
	base := t.TempDir()
	out, code := runIn(t, base, "", "demo", "--headless", "--dir", "fleet", "--strategy", "canary", "--scenario", "bad-canary", "--hosts", "4")
	dir := filepath.Join(base, "fleet")
	t.Cleanup(func() { chmodWritable(dir) })
	if code != 1 {
		t.Fatalf("bad-canary demo: exit %d, want 1:\n%s", code, out)
	}
	if _, err := os.Readlink(filepath.Join(dir, "hosts", "web-1", "current")); err != nil {
		t.Fatalf("the hosts are not under --dir fleet: %v", err)
	}

	// The plan resolves from its folder, whatever the working directory.
	show, code := runIn(t, base, "", "journal", "-f", "fleet/flightdeck.yaml", "show", "last")
	if code != 0 || !strings.Contains(show, "finished: ROLLED") {
		t.Fatalf("journal show -f fleet/flightdeck.yaml: exit %d:\n%s", code, show)
	}
	elsewhere := t.TempDir()
	sum, code := runIn(t, elsewhere, "", "journal", "-f", filepath.Join(dir, "flightdeck.yaml"), "summary", "last")
	if code != 0 {
		t.Fatalf("journal summary: exit %d:\n%s", code, sum)
	}
	for _, want := range []string{"### demo-shop/demo: deploy v1 → v2 — ROLLED BACK", "| time (UTC) | who | what |", "- **verdict**: ROLLED BACK"} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
	cause := regexp.MustCompile(`(?m)^- \*\*cause\*\*: (gate step \d+ failed: error rate [0-9.]+% > 0\.10%|rolled back by auto: auto-rollback trigger: error rate [0-9.]+% > 1%)`)
	if !cause.MatchString(sum) {
		t.Errorf("the summary does not name the failing gate or trigger measurement:\n%s", sum)
	}
	if !regexp.MustCompile(`(?m)^- \*\*rollback\*\*: to v1, started \d\d:\d\d:\d\d UTC by auto, RTO \d+(\.\d+)?m?s$`).MatchString(sum) {
		t.Errorf("the summary does not give the rollback's RTO:\n%s", sum)
	}
	if !regexp.MustCompile(`(?m)^\| \d\d:\d\d:\d\d \| trainee \| run .* started`).MatchString(sum) {
		t.Errorf("the timeline does not say who started the run:\n%s", sum)
	}

	gates, code := runIn(t, base, "", "journal", "-f", "fleet/flightdeck.yaml", "show", "last", "--only", "gates")
	if code != 0 {
		t.Fatalf("--only gates: exit %d:\n%s", code, gates)
	}
	for _, l := range strings.Split(strings.TrimSpace(gates), "\n") {
		if !strings.Contains(l, "gate step") && !strings.Contains(l, "step ") {
			t.Errorf("--only gates printed %q", l)
		}
	}
	acts, _ := runIn(t, base, "", "journal", "-f", "fleet/flightdeck.yaml", "show", "last", "--only", "actions,failures")
	if !strings.Contains(acts, "ROLLING BACK") || strings.Contains(acts, "preparing") {
		t.Errorf("--only actions,failures:\n%s", acts)
	}
	if bad, code := runIn(t, base, "", "journal", "-f", "fleet/flightdeck.yaml", "show", "last", "--only", "gatez"); code != 2 || !strings.Contains(bad, "unknown kind") {
		t.Errorf("--only gatez: exit %d, want 2 naming the unknown kind:\n%s", code, bad)
	}
	// replay: bad input exits 2 (the replay itself is tested in teatest).
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"last"}, "replay needs a terminal"},
		{[]string{"last", "--speed", "-1"}, "--speed -1"},
		{[]string{"../etc"}, "bad run id"},
	} {
		out, code := runIn(t, base, "", append([]string{"replay", "-f", "fleet/flightdeck.yaml"}, tt.args...)...)
		if code != 2 || !strings.Contains(out, tt.want) {
			t.Errorf("replay %v: exit %d, want 2 and %q:\n%s", tt.args, code, tt.want, out)
		}
	}
}
