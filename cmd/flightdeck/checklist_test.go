package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"flightdeck/engine"
)

func lastRun(t *testing.T, p *project) (engine.RunSummary, *engine.State) {
	t.Helper()
	runs, err := engine.ListRuns(filepath.Join(p.dir, ".flightdeck"))
	if err != nil || len(runs) == 0 {
		t.Fatalf("journal: %v", err)
	}
	r := runs[len(runs)-1]
	evs, err := engine.ReadJournal(filepath.Join(p.dir, ".flightdeck"), r.Run)
	if err != nil {
		t.Fatal(err)
	}
	return r, engine.Fold(evs)
}

// TestDestructiveMigrationBlocksRollingDeploy: a DROP COLUMN blocks the
// deploy, naming file and line; an ack with a reason lets it through and
// is journaled.
func TestDestructiveMigrationBlocksRollingDeploy(t *testing.T) {
	p := newProject(t, 2, 3, rolling2, "migrations: [db/*.sql]\n")
	os.MkdirAll(filepath.Join(p.dir, "db"), 0o755)
	writeFile(t, filepath.Join(p.dir, "db", "001_init.sql"), "CREATE TABLE users (id int, email text);\n")
	writeFile(t, filepath.Join(p.dir, "db", "002_drop_email.sql"), "-- users no longer need email\n\nALTER TABLE users DROP COLUMN email;\n")
	out, code := p.run("deploy", "--headless", "--release", "r1")
	if code != 1 || !strings.Contains(out, "002_drop_email.sql:3:") || !strings.Contains(out, "DROP COLUMN") {
		t.Fatalf("exit %d, want 1 naming the file and line:\n%s", code, out)
	}
	if _, err := os.Stat(p.host(1)); !os.IsNotExist(err) {
		t.Fatal("a blocked deploy touched a host")
	}
	out, code = p.run("deploy", "--headless", "--release", "r1", "--ack", "migrations=email unused since r41")
	if code != 0 {
		t.Fatalf("acknowledged deploy exit %d:\n%s", code, out)
	}
	_, st := lastRun(t, p)
	var item *engine.ChecklistItem
	for i := range st.Checklist {
		if st.Checklist[i].ID == engine.ItemMigrations {
			item = &st.Checklist[i]
		}
	}
	if item == nil || item.State != "acknowledged" || item.AckBy != "tester" || !strings.Contains(item.Evidence, "email unused since r41") {
		t.Fatalf("journaled migrations item: %+v", item)
	}
}

// TestPromotionNeedsEarlierEnvironment: a release reaches production only
// after it finished in staging; the override is journaled.
func TestPromotionNeedsEarlierEnvironment(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "build"), 0o755)
	writeFile(t, filepath.Join(dir, "build", "index.html"), "hi\n")
	writeFile(t, filepath.Join(dir, "flightdeck.yaml"), `app: shop
source: ./build
promotion: [staging, production]
environments:
  staging:
    hosts: [{name: s1, local: ./hosts/s1}]
  production:
    hosts: [{name: p1, local: ./hosts/p1}]
`)
	p := &project{t: t, dir: dir, plan: filepath.Join(dir, "flightdeck.yaml")}
	out, code := p.run("deploy", "--headless", "--env", "production", "--release", "r1")
	if code != 1 || !strings.Contains(out, "has not finished in staging") {
		t.Fatalf("exit %d, want a refusal naming staging:\n%s", code, out)
	}
	out, code = p.run("deploy", "--headless", "--env", "production", "--release", "r1", "--skip-promotion-check")
	if code != 2 || !strings.Contains(out, "--reason") {
		t.Fatalf("override without a reason: exit %d:\n%s", code, out)
	}
	if out, code := p.run("deploy", "--headless", "--env", "staging", "--release", "r1"); code != 0 {
		t.Fatalf("staging: exit %d:\n%s", code, out)
	}
	if out, code := p.run("deploy", "--headless", "--env", "production", "--release", "r1"); code != 0 {
		t.Fatalf("production after staging: exit %d:\n%s", code, out)
	}
	if _, st := lastRun(t, p); st.Rule3.Status != "ok" || st.Rule1.Status != "n/a" {
		t.Fatalf("3-2-1 after staging: rule3 %+v rule1 %+v", st.Rule3, st.Rule1)
	}
	if out, code := p.run("deploy", "--headless", "--env", "production", "--release", "r2", "--skip-promotion-check", "--reason", "hotfix for INC-42"); code != 0 {
		t.Fatalf("override: exit %d:\n%s", code, out)
	}
	r, st := lastRun(t, p)
	if st.Rule3.Status != "overridden" || st.Rule1.Status != "ok" {
		t.Fatalf("3-2-1 with the override: rule3 %+v rule1 %+v", st.Rule3, st.Rule1)
	}
	evs, _ := engine.ReadJournal(filepath.Join(dir, ".flightdeck"), r.Run)
	found := false
	for _, e := range evs {
		found = found || (e.Type == engine.EvNotice && strings.Contains(e.Message, "hotfix for INC-42") && strings.Contains(e.Message, "overridden by tester"))
	}
	if !found {
		t.Fatal("the override is not in the journal")
	}
}

// TestDamagedPreviousReleaseBlocksTheRun: one host's previous release is
// corrupted, so there is no instant rollback path: the run stops before
// any switch.
func TestDamagedPreviousReleaseBlocksTheRun(t *testing.T) {
	p := newProject(t, 3, 5, rolling2, "")
	if out, code := p.run("deploy", "--headless", "--release", "r1"); code != 0 {
		t.Fatalf("r1: exit %d:\n%s", code, out)
	}
	victim := filepath.Join(p.host(2), "releases", "r1", "file0000.txt")
	os.Chmod(victim, 0o644)
	writeFile(t, victim, "tampered\n")
	out, code := p.run("deploy", "--headless", "--release", "r2")
	if code != 1 || !strings.Contains(out, "no rollback path") || !strings.Contains(out, "web-2") {
		t.Fatalf("exit %d, want 1 naming web-2:\n%s", code, out)
	}
	for i := 1; i <= 3; i++ {
		if cur := current(t, p.host(i)); cur != "r1" {
			t.Fatalf("web-%d switched to %q despite no rollback path", i, cur)
		}
	}
	if _, st := lastRun(t, p); st.Rule1.Status != "failed" || !strings.Contains(st.Rule1.Note, "web-2") {
		t.Fatalf("3-2-1 rollback path in the journal: %+v", st.Rule1)
	}
	if out, code := p.run("deploy", "--headless", "--release", "r2", "--no-rollback-path", "--reason", "web-2 rebuilt from backup"); code != 0 {
		t.Fatalf("override: exit %d:\n%s", code, out)
	}
}
