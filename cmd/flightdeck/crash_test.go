package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"flightdeck/engine"
	"flightdeck/targets/layout"
	"flightdeck/targets/local"
)

// journalLines counts the lines of the newest journal file.
func journalLines(stateDir string) int {
	ents, err := os.ReadDir(filepath.Join(stateDir, engine.JournalDir))
	if err != nil {
		return 0
	}
	var newest string
	var newestMod time.Time
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".jsonl") {
			continue // a finished run's summary cache
		}
		if info, err := e.Info(); err == nil && info.ModTime().After(newestMod) {
			newest, newestMod = e.Name(), info.ModTime()
		}
	}
	f, err := os.Open(filepath.Join(stateDir, engine.JournalDir, newest))
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		n++
	}
	return n
}

// TestCrashAnywhereResumes kills a real `flightdeck deploy` with SIGKILL at
// 20 different points of a multi-wave run, resumes it, and checks that
// every host ends on exactly one complete release, the fleet agrees, no
// half-written release or link is left, and the journal tells the story.
func TestCrashAnywhereResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	p := newProject(t, 6, 200, rolling2, "restart: 'sleep 0.01'\n")
	stateDir := filepath.Join(p.dir, ".flightdeck")
	if out, code := p.run("deploy", "--headless", "--release", "base"); code != 0 {
		t.Fatalf("base deploy exit %d:\n%s", code, out)
	}
	// A full run's journal length tells where the 20 kill points fall.
	writeFile(t, filepath.Join(p.dir, "build", "file0000.txt"), "calibration\n")
	if out, code := p.run("deploy", "--headless", "--release", "calib"); code != 0 {
		t.Fatalf("calibration deploy exit %d:\n%s", code, out)
	}
	total := journalLines(stateDir)
	if total < 30 {
		t.Fatalf("calibration run journaled only %d events", total)
	}
	hosts := make([]*local.Host, 6)
	for i := range hosts {
		hosts[i] = local.New(fmt.Sprintf("web-%d", i+1), p.host(i+1))
	}
	for i := range 20 {
		point := 1 + i*(total-2)/19
		rel := fmt.Sprintf("c%02d", i)
		t.Run(fmt.Sprintf("kill-after-%d-of-%d-events", point, total), func(t *testing.T) {
			writeFile(t, filepath.Join(p.dir, "build", "file0001.txt"), rel+"\n")
			before := runCount(t, stateDir)
			cmd := exec.Command(binary, "deploy", "--headless", "--release", rel)
			cmd.Dir = p.dir
			cmd.Env = append(os.Environ(), "FLIGHTDECK_ACTOR=tester")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			killed := false
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			tick := time.NewTicker(200 * time.Microsecond)
			defer tick.Stop()
		watch:
			for {
				select {
				case <-exited:
					break watch // finished before the point: nothing to kill
				case <-ctx.Done():
					cmd.Process.Kill()
					t.Fatal("deploy neither reached the kill point nor exited")
				case <-tick.C:
					if runCount(t, stateDir) > before && journalLines(stateDir) >= point {
						cmd.Process.Kill() // SIGKILL
						<-exited
						killed = true
						break watch
					}
				}
			}
			out, code := p.run("resume", "--headless")
			if code != 0 && code != 1 {
				t.Fatalf("resume exit %d:\n%s", code, out)
			}
			if killed {
				if id, _, _ := engine.UnfinishedRun(stateDir, "production"); id != "" {
					t.Fatalf("run %s still unfinished after resume:\n%s", id, out)
				}
			}
			assertFleetConsistent(t, hosts)
			if _, err := engine.ReadLock(stateDir, "production"); err == nil {
				t.Fatal("the lock is still held after resume")
			}
		})
	}
	// The journal tells what happened: every killed run was resumed and finished.
	runs, err := engine.ListRuns(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	resumed := 0
	for _, r := range runs {
		if r.Status != "finished" {
			t.Errorf("run %s is unfinished", r.Run)
		}
		evs, _ := engine.ReadJournal(stateDir, r.Run)
		for _, e := range evs {
			if e.Type == engine.EvRunResumed {
				resumed++
			}
		}
	}
	if resumed < 15 {
		t.Errorf("only %d runs were resumed; the kill points did not land inside runs", resumed)
	}
}

func runCount(t *testing.T, stateDir string) int {
	ents, _ := os.ReadDir(filepath.Join(stateDir, engine.JournalDir))
	n := 0
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".jsonl") {
			n++
		}
	}
	return n
}

// assertFleetConsistent checks that every host is on one complete release,
// the same one, with no temporary release or link left behind.
func assertFleetConsistent(t *testing.T, hosts []*local.Host) {
	t.Helper()
	var want string
	for _, h := range hosts {
		ents, err := os.ReadDir(filepath.Join(h.DeployTo(), engine.ReleasesDir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			// The record of the last verification is no leftover.
			if strings.HasPrefix(e.Name(), ".") && e.Name() != layout.VerifiedName {
				t.Errorf("%s: leftover %s in releases/", h.Name(), e.Name())
			}
		}
		top, _ := os.ReadDir(h.DeployTo())
		for _, e := range top {
			if strings.HasPrefix(e.Name(), "current.") || strings.HasPrefix(e.Name(), engine.TempPrefix) {
				t.Errorf("%s: leftover %s", h.Name(), e.Name())
			}
		}
		cur := current(t, h.DeployTo())
		if cur == "" {
			t.Fatalf("%s has no current release", h.Name())
		}
		if err := h.Verify(context.Background(), cur); err != nil {
			t.Errorf("%s: current release %s is not complete: %v", h.Name(), cur, err)
		}
		if want == "" {
			want = cur
		} else if cur != want {
			t.Errorf("fleet split: %s on %s, others on %s", h.Name(), cur, want)
		}
	}
}

// TestCrashAfterMigrateRunsItOnce kills a real `flightdeck deploy` with
// SIGKILL after its migrate hook ran, while the first host's before_switch
// hook waits, and resumes it: the migrate hook ran exactly once for the
// release, and the run finished with the fleet on it. Before the migration
// was journaled, the resumed run ran the hook a second time.
func TestCrashAfterMigrateRunsItOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	tmp := t.TempDir()
	counter, mark, gate := filepath.Join(tmp, "migrations.log"), filepath.Join(tmp, "switching"), filepath.Join(tmp, "go-on")
	p := newProject(t, 4, 20, rolling2, fmt.Sprintf("restart: 'sleep 0.01'\nhooks:\n"+
		"  migrate:\n    - {run: 'echo \"$RELEASE_VERSION\" >> %s', local: true}\n"+
		"  before_switch:\n    - 'touch %s; while [ ! -e %s ]; do sleep 0.01; done'\n", counter, mark, gate))
	writeFile(t, gate, "")
	if out, code := p.run("deploy", "--headless", "--release", "base"); code != 0 {
		t.Fatalf("base deploy exit %d:\n%s", code, out)
	}
	os.Remove(gate)
	os.Remove(mark)
	writeFile(t, filepath.Join(p.dir, "build", "file0000.txt"), "r2\n")
	cmd := exec.Command(binary, "deploy", "--headless", "--release", "r2")
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), "FLIGHTDECK_ACTOR=tester")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for switching := false; !switching; {
		select {
		case err := <-exited:
			t.Fatalf("the deploy ended (%v) before a host began to switch", err)
		case <-ctx.Done():
			cmd.Process.Kill()
			t.Fatal("no host began to switch")
		case <-tick.C:
			_, err := os.Stat(mark)
			switching = err == nil
		}
	}
	cmd.Process.Kill() // SIGKILL, after the migration, while a host's switch waits
	<-exited
	writeFile(t, gate, "")
	out, code := p.run("resume", "--headless")
	if code != 0 {
		t.Fatalf("resume exit %d:\n%s", code, out)
	}
	b, err := os.ReadFile(counter)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(b)); !slices.Equal(got, []string{"base", "r2"}) {
		t.Fatalf("migrate hook runs: %v, want [base r2] (once per deploy):\n%s", got, out)
	}
	hosts := make([]*local.Host, 4)
	for i := range hosts {
		hosts[i] = local.New(fmt.Sprintf("web-%d", i+1), p.host(i+1))
	}
	assertFleetConsistent(t, hosts)
	if cur := current(t, p.host(1)); cur != "r2" {
		t.Fatalf("fleet on %s after resume, want r2:\n%s", cur, out)
	}
	if !strings.Contains(out, "resumed by tester") {
		t.Errorf("the resume does not say it resumed the run:\n%s", out)
	}
}
