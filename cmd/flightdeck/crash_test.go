package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"flightdeck/engine"
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
	return len(ents)
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
			if strings.HasPrefix(e.Name(), ".") {
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
