package main

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"flightdeck/engine"
	"flightdeck/internal/syncbuf"
	"flightdeck/targets/local"
)

// These tests pin the release layout's hardening (issue 14, items 1, 3, 4,
// 18 and 19) through the real binary. FLIGHTDECK_TEST_BINARY runs them
// against another build (see TestMain).

// TestReleasesDuringDeploysNeverMakeAHalfReleaseCurrent is the crash test's
// variant for read-only commands: `flightdeck releases` runs in a loop
// while deploys run and are killed at random points, then resumed; every
// host's current is always a complete release (and releases never deletes
// what a deploy is writing).
func TestReleasesDuringDeploysNeverMakeAHalfReleaseCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	const files = 800
	p := newProject(t, 2, files, rolling2, "")
	if out, code := p.run("deploy", "--headless", "--release", "base"); code != 0 {
		t.Fatalf("base deploy exit %d:\n%s", code, out)
	}
	hosts := []*local.Host{local.New("web-1", p.host(1)), local.New("web-2", p.host(2))}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 7))
	t.Logf("seed %d", seed)
	for i := range 4 {
		rel := fmt.Sprintf("q%02d", i)
		t.Run(rel, func(t *testing.T) {
			// Every file changes: each release is written in full, so the
			// window in which a temporary release exists is wide.
			for j := range files {
				sub := ""
				if j%2 == 1 {
					sub = "static"
				}
				writeFile(t, filepath.Join(p.dir, "build", sub, fmt.Sprintf("file%04d.txt", j)), fmt.Sprintf("%s %d\n", rel, j))
			}
			cmd := exec.Command(binary, "deploy", "--headless", "--release", rel)
			cmd.Dir = p.dir
			cmd.Env = append(os.Environ(), "FLIGHTDECK_ACTOR=tester")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var dout syncbuf.Buffer
			cmd.Stdout, cmd.Stderr = &dout, &dout
			exited := make(chan struct{})
			go func() { _ = cmd.Wait(); close(exited) }()
			// Readers: four loops of `releases`, as fast as they go, until
			// the deploy ends.
			var wg sync.WaitGroup
			var mu sync.Mutex
			readers := 0
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-exited:
							return
						default:
						}
						c := exec.Command(binary, "releases", "--json")
						c.Dir = p.dir
						_ = c.Run()
						mu.Lock()
						readers++
						mu.Unlock()
					}
				}()
			}
			killed := false
			if i%2 == 0 { // half the deploys are killed at a random point
				select {
				case <-exited:
				case <-time.After(time.Duration(50+rng.IntN(1500)) * time.Millisecond):
					_ = cmd.Process.Kill()
					killed = true
					<-exited
				}
			} else {
				<-exited
			}
			wg.Wait()
			t.Logf("%d `releases` runs during the deploy (killed: %v)", readers, killed)
			// Read-only commands must not disturb a deploy: one that was not
			// killed succeeds.
			if !killed && cmd.ProcessState.ExitCode() != 0 {
				t.Errorf("deploy exit %d while `releases` ran beside it:\n%s", cmd.ProcessState.ExitCode(), dout.String())
			}
			if out, code := p.run("resume", "--headless"); code != 0 && code != 1 {
				t.Fatalf("resume exit %d:\n%s", code, out)
			}
			for _, h := range hosts {
				cur := current(t, h.DeployTo())
				if err := h.Verify(context.Background(), cur); err != nil {
					t.Errorf("%s: current %s is not complete: %v", h.Name(), cur, err)
				}
				// Every release under its final name is complete too.
				st, err := h.Inspect(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				for _, id := range st.Releases {
					if err := h.Check(context.Background(), id); err != nil {
						t.Errorf("%s: release %s under its final name is incomplete: %v", h.Name(), id, err)
					}
				}
			}
			assertFleetConsistent(t, []*local.Host{hosts[0], hosts[1]})
		})
	}
}

// TestReleasesNeverDeletes: a temporary release (a deploy writing it, or a
// crash's leftover) survives `flightdeck releases`; only a run, holding the
// lock, removes leftovers.
func TestReleasesNeverDeletes(t *testing.T) {
	p := newProject(t, 1, 3, rolling2, "")
	if out, code := p.run("deploy", "--headless", "--release", "r1"); code != 0 {
		t.Fatalf("deploy exit %d:\n%s", code, out)
	}
	tmp := filepath.Join(p.host(1), "releases", engine.TempPrefix+"r2-inflight")
	if err := os.MkdirAll(filepath.Join(tmp, "static"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(tmp, "file0000.txt"), "half\n")
	link := filepath.Join(p.host(1), "current"+engine.TempPrefix+"inflight")
	if err := os.Symlink("releases/r1", link); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if out, code := p.run("releases"); code != 0 {
			t.Fatalf("releases exit %d:\n%s", code, out)
		}
	}
	for _, n := range []string{tmp, link, filepath.Join(tmp, "file0000.txt")} {
		if _, err := os.Lstat(n); err != nil {
			t.Fatalf("`releases` deleted %s: %v", n, err)
		}
	}
	writeFile(t, filepath.Join(p.dir, "build", "file0000.txt"), "changed\n")
	if out, code := p.run("deploy", "--headless", "--release", "r2"); code != 0 {
		t.Fatalf("deploy exit %d:\n%s", code, out)
	}
	for _, n := range []string{tmp, link} {
		if _, err := os.Lstat(n); !os.IsNotExist(err) {
			t.Errorf("the run (holding the lock) did not remove the leftover %s: %v", n, err)
		}
	}
}

// snapshot records what a test must find unchanged on a host.
type snapshot struct {
	current, log string
	releases     []string
}

func snap(t *testing.T, host string) snapshot {
	t.Helper()
	log, _ := os.ReadFile(filepath.Join(host, engine.RevisionsLog))
	ents, _ := os.ReadDir(filepath.Join(host, engine.ReleasesDir))
	var rels []string
	for _, e := range ents {
		rels = append(rels, e.Name())
	}
	return snapshot{current: current(t, host), log: string(log), releases: rels}
}

func (s snapshot) assertSame(t *testing.T, host string) {
	t.Helper()
	now := snap(t, host)
	if now.current != s.current || now.log != s.log || !slices.Equal(now.releases, s.releases) {
		t.Errorf("%s changed: current %s→%s, releases %v→%v, revisions.log\n%s\n→\n%s", host, s.current, now.current, s.releases, now.releases, s.log, now.log)
	}
}

// TestRollbackToMissingReleaseTouchesNothing: `rollback --to ID` where ID
// is missing on some hosts, or is there but incomplete (a manifest is not
// enough), exits 2 naming those hosts, before any host is switched.
func TestRollbackToMissingReleaseTouchesNothing(t *testing.T) {
	p := newProject(t, 4, 10, rolling2, "")
	for _, rel := range []string{"r1", "r2"} {
		writeFile(t, filepath.Join(p.dir, "build", "file0000.txt"), rel+"\n")
		if out, code := p.run("deploy", "--headless", "--release", rel); code != 0 {
			t.Fatalf("deploy %s exit %d:\n%s", rel, code, out)
		}
	}
	// r1 is gone from web-2, and on web-4 one of its files is truncated.
	if err := os.RemoveAll(filepath.Join(p.host(2), "releases", "r1")); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(p.host(4), "releases", "r1", "static", "file0003.txt")
	if err := os.Truncate(victim, 2); err != nil {
		t.Fatal(err)
	}
	var before []snapshot
	for i := 1; i <= 4; i++ {
		before = append(before, snap(t, p.host(i)))
	}
	out, code := p.run("rollback", "--headless", "--to", "r1")
	if code != 2 {
		t.Fatalf("rollback --to r1: exit %d, want 2:\n%s", code, out)
	}
	for _, want := range []string{"web-2", "web-4", "static/file0003.txt"} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not name %q:\n%s", want, out)
		}
	}
	for _, host := range []string{"web-1:", "web-3:"} {
		if strings.Contains(out, host) {
			t.Errorf("output blames %s, which has r1:\n%s", host, out)
		}
	}
	for i := 1; i <= 4; i++ {
		before[i-1].assertSame(t, p.host(i))
	}
	// A release with a manifest but a missing file is refused as well.
	if err := os.Remove(filepath.Join(p.host(1), "releases", "r1", "file0002.txt")); err != nil {
		t.Fatal(err)
	}
	if out, code := p.run("rollback", "--headless", "--to", "r1"); code != 2 || !strings.Contains(out, "file0002.txt: missing") {
		t.Fatalf("rollback onto a release missing a file: exit %d, want 2 naming it:\n%s", code, out)
	}
	for i := 1; i <= 4; i++ {
		if cur := current(t, p.host(i)); cur != "r2" {
			t.Errorf("web-%d: current %s, want r2 (untouched)", i, cur)
		}
	}
}

// TestPlantedSymlinksAreRefused: symlinks planted in deploy_to (releases,
// shared, revisions.log, an entry under releases) are never followed: the
// run refuses naming the path, and nothing outside deploy_to changes.
func TestPlantedSymlinksAreRefused(t *testing.T) {
	outside := func(t *testing.T) string {
		dir := filepath.Join(t.TempDir(), "usr-share")
		for _, d := range []string{"X11", "apt"} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, d, "keep"), d)
		}
		return dir
	}
	untouched := func(t *testing.T, dir string) {
		t.Helper()
		ents, _ := os.ReadDir(dir)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if !slices.Equal(names, []string{"X11", "apt"}) {
			t.Errorf("outside deploy_to, %s now holds %v", dir, names)
		}
		for _, d := range []string{"X11", "apt"} {
			if b, err := os.ReadFile(filepath.Join(dir, d, "keep")); err != nil || string(b) != d {
				t.Errorf("%s/%s/keep: %q %v", dir, d, b, err)
			}
		}
	}
	setup := func(t *testing.T) *project {
		p := newProject(t, 2, 5, rolling2, "")
		plan, err := os.ReadFile(p.plan)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, p.plan, strings.Replace(string(plan), "keep_releases: 5", "keep_releases: 2", 1))
		if out, code := p.run("deploy", "--headless", "--release", "r1"); code != 0 {
			t.Fatalf("deploy r1 exit %d:\n%s", code, out)
		}
		writeFile(t, filepath.Join(p.dir, "build", "file0000.txt"), "r2\n")
		return p
	}
	t.Run("releases", func(t *testing.T) {
		p := setup(t)
		out := outside(t)
		rel := filepath.Join(p.host(2), "releases")
		if err := os.Rename(rel, rel+".real"); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(out, rel); err != nil {
			t.Fatal(err)
		}
		res, code := p.run("deploy", "--headless", "--release", "r2")
		if code == 0 || !strings.Contains(res, rel+" is a symbolic link") {
			t.Fatalf("deploy with releases/ a symlink: exit %d, want a failure naming %s:\n%s", code, rel, res)
		}
		res, code = p.run("releases")
		if code == 0 || !strings.Contains(res, rel+" is a symbolic link") {
			t.Errorf("releases: exit %d, want the host's error naming %s:\n%s", code, rel, res)
		}
		untouched(t, out)
		if cur := current(t, p.host(1)); cur != "r1" {
			t.Errorf("web-1 on %s, want r1 (the fleet stays on one release)", cur)
		}
	})
	t.Run("shared", func(t *testing.T) {
		p := setup(t)
		out := outside(t)
		shared := filepath.Join(p.host(1), "shared")
		if err := os.RemoveAll(shared); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(out, shared); err != nil {
			t.Fatal(err)
		}
		res, code := p.run("deploy", "--headless", "--release", "r2")
		if code == 0 || !strings.Contains(res, shared+" is a symbolic link") {
			t.Fatalf("deploy with shared/ a symlink: exit %d, want a failure naming %s:\n%s", code, shared, res)
		}
		untouched(t, out)
	})
	t.Run("revisions.log", func(t *testing.T) {
		p := setup(t)
		other := filepath.Join(t.TempDir(), "authorized_keys")
		writeFile(t, other, "precious\n")
		log := filepath.Join(p.host(2), engine.RevisionsLog)
		if err := os.Remove(log); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(other, log); err != nil {
			t.Fatal(err)
		}
		res, code := p.run("deploy", "--headless", "--release", "r2")
		if code == 0 || !strings.Contains(res, log+" is a symbolic link") {
			t.Fatalf("deploy with revisions.log a symlink: exit %d, want a failure naming it:\n%s", code, res)
		}
		if b, _ := os.ReadFile(other); string(b) != "precious\n" {
			t.Errorf("the file revisions.log pointed at was appended to: %q", b)
		}
		for i := 1; i <= 2; i++ {
			if cur := current(t, p.host(i)); cur != "r1" {
				t.Errorf("web-%d on %s after the failed run, want r1", i, cur)
			}
		}
	})
	t.Run("release entry", func(t *testing.T) {
		p := setup(t)
		out := outside(t)
		// releases/X11 -> /usr/share/X11: prune (keep_releases 2) must not
		// follow it, and it is no release.
		if err := os.Symlink(filepath.Join(out, "X11"), filepath.Join(p.host(1), "releases", "X11")); err != nil {
			t.Fatal(err)
		}
		for _, rel := range []string{"r2", "r3"} {
			writeFile(t, filepath.Join(p.dir, "build", "file0000.txt"), rel+"\n")
			if res, code := p.run("deploy", "--headless", "--release", rel); code != 0 {
				t.Fatalf("deploy %s exit %d:\n%s", rel, code, res)
			}
		}
		untouched(t, out)
		if res, code := p.run("rollback", "--headless", "--to", "X11"); code != 2 {
			t.Errorf("rollback --to X11 (a symlink): exit %d, want 2:\n%s", code, res)
		}
		if cur := current(t, p.host(1)); cur != "r3" {
			t.Errorf("web-1 on %s, want r3", cur)
		}
	})
}

// TestStickyAndSetgidDirectoriesKeepTheirBits: a source directory's
// sticky and setgid bits reach the release (they were dropped), from a
// plain source and through the build workspace.
func TestStickyAndSetgidDirectoriesKeepTheirBits(t *testing.T) {
	for name, extra := range map[string]string{"source": "", "build steps": "build: ['true']\n"} {
		t.Run(name, func(t *testing.T) {
			p := newProject(t, 1, 3, rolling2, extra)
			modes := map[string]fs.FileMode{"tmp": 0o777 | fs.ModeSticky, "uploads": 0o775 | fs.ModeSetgid}
			for d, mode := range modes {
				dir := filepath.Join(p.dir, "build", d)
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(dir, "x"), d)
				if err := os.Chmod(dir, mode); err != nil {
					t.Fatal(err)
				}
			}
			if out, code := p.run("deploy", "--headless", "--release", "r1"); code != 0 {
				t.Fatalf("deploy exit %d:\n%s", code, out)
			}
			for d, want := range modes {
				fi, err := os.Stat(filepath.Join(p.host(1), "releases", "r1", d))
				if err != nil {
					t.Fatal(err)
				}
				if got := fi.Mode() & (fs.ModePerm | fs.ModeSticky | fs.ModeSetgid | fs.ModeSetuid); got != want {
					t.Errorf("releases/r1/%s: mode %v, want %v", d, got, want)
				}
			}
		})
	}
}

// capistranoRelease writes a release as Capistrano leaves it: no manifest,
// writable files, a REVISION file, current pointing at it.
func capistranoRelease(t *testing.T, host, id string, files map[string]string, live bool) {
	t.Helper()
	root := filepath.Join(host, "releases", id)
	for p, c := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o775); err != nil {
			t.Fatal(err)
		}
		writeFile(t, full, c)
	}
	writeFile(t, filepath.Join(root, "REVISION"), "4f2a9c1e8b7d6a5f4e3d2c1b0a99887766554433\n")
	if err := os.Symlink("../../shared/log", filepath.Join(root, "log")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(host, "shared", "log"), 0o755); err != nil {
		t.Fatal(err)
	}
	if live {
		tmp := filepath.Join(host, "current.cap")
		if err := os.Symlink(filepath.Join(host, "releases", id), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(host, "current")); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAdoptCapistranoHosts: hosts deployed by Capistrano (releases without
// manifests) are refused a deploy with a pointer to `flightdeck adopt`;
// after adopt, the deploy goes through, reuses the unchanged files by hard
// links, and a rollback to the Capistrano release works.
func TestAdoptCapistranoHosts(t *testing.T) {
	p := newProject(t, 2, 20, rolling2, "")
	// The Capistrano release holds the same files as the build (and a
	// REVISION and log link that the build does not have).
	files := map[string]string{}
	for i := range 20 {
		sub := ""
		if i%2 == 1 {
			sub = "static/"
		}
		files[fmt.Sprintf("%sfile%04d.txt", sub, i)] = fmt.Sprintf("content of file %d\n", i)
	}
	for i := 1; i <= 2; i++ {
		capistranoRelease(t, p.host(i), "20240101120000", files, false)
		capistranoRelease(t, p.host(i), "20240102120000", files, true)
	}
	// The refused deploy may prepare its release beside the rollback-path
	// check (it never switches): a release of its own, so that the deploy
	// after adopt below has to link from the adopted one.
	out, code := p.run("deploy", "--headless", "--release", "r0")
	if code != 1 || !strings.Contains(out, "flightdeck adopt") {
		t.Fatalf("deploy onto Capistrano hosts: exit %d, want 1 pointing to `flightdeck adopt`:\n%s", code, out)
	}
	if cur := current(t, p.host(1)); !strings.HasSuffix(cur, "20240102120000") {
		t.Fatalf("current moved to %s", cur)
	}
	out, code = p.run("adopt", "--headless")
	if code != 0 {
		t.Fatalf("adopt exit %d:\n%s", code, out)
	}
	if !strings.Contains(out, "adopted 20240102120000: 21 files") || !strings.Contains(out, "commit 4f2a9c1e") {
		t.Errorf("adopt output does not say what it did:\n%s", out)
	}
	for i := 1; i <= 2; i++ {
		h := local.New(fmt.Sprintf("web-%d", i), p.host(i))
		for _, id := range []string{"20240101120000", "20240102120000"} {
			if err := h.Verify(context.Background(), id); err != nil {
				t.Errorf("web-%d: adopted %s does not verify: %v", i, id, err)
			}
		}
	}
	runs, err := engine.ListRuns(filepath.Join(p.dir, ".flightdeck"))
	if err != nil {
		t.Fatal(err)
	}
	if last := runs[len(runs)-1]; last.Kind != engine.KindAdopt || last.Outcome != engine.OutcomeSucceeded {
		t.Errorf("the adopt run is not journaled as a succeeded adopt: %+v", last)
	}
	out, code = p.run("deploy", "--headless", "--release", "r1")
	if code != 0 {
		t.Fatalf("deploy after adopt: exit %d:\n%s", code, out)
	}
	a := filepath.Join(p.host(1), "releases", "20240102120000", "static", "file0001.txt")
	b := filepath.Join(p.host(1), "releases", "r1", "static", "file0001.txt")
	if inode(t, a) != inode(t, b) {
		t.Error("the deploy after adopt did not hard-link the adopted release's unchanged files")
	}
	out, code = p.run("rollback", "--headless")
	if code != 0 {
		t.Fatalf("rollback to the Capistrano release: exit %d:\n%s", code, out)
	}
	for i := 1; i <= 2; i++ {
		if cur := current(t, p.host(i)); cur != "20240102120000" {
			t.Errorf("web-%d on %s after rollback, want 20240102120000", i, cur)
		}
	}
}
