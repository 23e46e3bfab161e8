package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"flightdeck/internal/syncbuf"
)

// binary is the flightdeck binary built once for these tests.
var binary string

func TestMain(m *testing.M) {
	// FLIGHTDECK_TEST_BINARY runs the tests against a build of another
	// version (to show which tests fail on it) instead of this source.
	if b := os.Getenv("FLIGHTDECK_TEST_BINARY"); b != "" {
		binary = b
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "flightdeck-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "flightdeck")
	args := []string{"build", "-o", binary}
	if os.Getenv("FLIGHTDECK_TEST_RACE") != "" {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build flightdeck: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// project is a plan directory with a source of n files and local hosts.
type project struct {
	t    *testing.T
	dir  string
	plan string
}

func newProject(t *testing.T, hosts, files int, strategy, extra string) *project {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "build")
	os.MkdirAll(filepath.Join(src, "static"), 0o755)
	for i := range files {
		sub := ""
		if i%2 == 1 {
			sub = "static"
		}
		writeFile(t, filepath.Join(src, sub, fmt.Sprintf("file%04d.txt", i)), fmt.Sprintf("content of file %d\n", i))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "app: shop\nsource: ./build\nkeep_releases: 5\n%senvironments:\n  production:\n    hosts:\n", extra)
	for i := range hosts {
		fmt.Fprintf(&b, "      - name: web-%d\n        local: %s\n", i+1, filepath.Join(dir, "hosts", fmt.Sprintf("web-%d", i+1)))
	}
	fmt.Fprintf(&b, "    strategy:\n%s", strategy)
	p := &project{t: t, dir: dir, plan: filepath.Join(dir, "flightdeck.yaml")}
	writeFile(t, p.plan, b.String())
	return p
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// run runs flightdeck in the project dir and returns its output and exit code.
func (p *project) run(args ...string) (string, int) {
	p.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), "FLIGHTDECK_ACTOR=tester", "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		p.t.Fatalf("run %v: %v", args, err)
	}
	return string(out), code
}

func (p *project) host(i int) string { return filepath.Join(p.dir, "hosts", fmt.Sprintf("web-%d", i)) }

func current(t *testing.T, host string) string {
	t.Helper()
	l, err := os.Readlink(filepath.Join(host, "current"))
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(l, "releases/")
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

const rolling2 = "      kind: rolling\n      wave_size: 2\n      pause: 0s\n"

// TestAcceptanceRollingDeployIncrementalRollback walks acceptance points 1–3
// of the engine spine as a user would, through the binary.
func TestAcceptanceRollingDeployIncrementalRollback(t *testing.T) {
	p := newProject(t, 4, 1000, rolling2, "")
	out, code := p.run("deploy", "--headless", "--release", "r1")
	if code != 0 {
		t.Fatalf("deploy r1 exit %d:\n%s", code, out)
	}
	if !strings.Contains(out, "wave 1/2: web-1, web-2") || !strings.Contains(out, "wave 2/2: web-3, web-4") {
		t.Errorf("output does not show two waves:\n%s", out)
	}
	for i := 1; i <= 4; i++ {
		if c := current(t, p.host(i)); c != "r1" {
			t.Fatalf("web-%d current = %q", i, c)
		}
	}
	writeFile(t, filepath.Join(p.dir, "build", "file0000.txt"), "changed\n")
	if out, code := p.run("deploy", "--headless", "--release", "r2"); code != 0 {
		t.Fatalf("deploy r2 exit %d:\n%s", code, out)
	}
	shared, distinct := 0, 0
	for i := range 1000 {
		sub := ""
		if i%2 == 1 {
			sub = "static"
		}
		name := filepath.Join(sub, fmt.Sprintf("file%04d.txt", i))
		for _, rel := range []string{"r1", "r2"} {
			fi, err := os.Stat(filepath.Join(p.host(1), "releases", rel, name))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm()&0o222 != 0 {
				t.Fatalf("%s/%s is writable (%v)", rel, name, fi.Mode())
			}
		}
		if inode(t, filepath.Join(p.host(1), "releases/r1", name)) == inode(t, filepath.Join(p.host(1), "releases/r2", name)) {
			shared++
		} else {
			distinct++
		}
	}
	if shared != 999 || distinct != 1 {
		t.Fatalf("r2 shares %d inodes with r1 and has %d own files; want 999 and 1", shared, distinct)
	}
	// Make r1's directory look newer than r2's: rollback must not care.
	future := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(p.host(1), "releases", "r2"), future.Add(-2*time.Hour), future.Add(-2*time.Hour))
	if out, code := p.run("rollback", "--headless"); code != 0 {
		t.Fatalf("rollback exit %d:\n%s", code, out)
	}
	out, code = p.run("releases", "--json")
	if code != 0 {
		t.Fatalf("releases exit %d: %s", code, out)
	}
	var rows []struct {
		Host     string   `json:"host"`
		Current  string   `json:"current"`
		Releases []string `json:"releases"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("releases --json: %v\n%s", err, out)
	}
	if len(rows) != 4 {
		t.Fatalf("releases rows %d", len(rows))
	}
	for _, r := range rows {
		if r.Current != "r1" || strings.Join(r.Releases, ",") != "r1,r2" {
			t.Errorf("%s: current %q releases %v, want r1 of r1,r2", r.Host, r.Current, r.Releases)
		}
	}
	log, _ := os.ReadFile(filepath.Join(p.host(3), "revisions.log"))
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	if len(lines) != 3 || !strings.Contains(lines[2], "rollback release=r1 previous=r2 actor=tester") {
		t.Errorf("revisions.log:\n%s", log)
	}
}

// TestBadInputTouchesNothing: typos and bad YAML exit 2 with file:line:col.
func TestBadInputTouchesNothing(t *testing.T) {
	tests := []struct {
		name     string
		strategy string
		want     string
	}{
		{"typo", "      kind: rolling\n      wave_sise: 2\n", `flightdeck.yaml:13:7: unknown key "wave_sise" in strategy (did you mean "wave_size"?)`},
		{"bad yaml", "      kind: rolling\n     wave_size: [2\n", "flightdeck.yaml:"},
		{"bad value", "      kind: rolling\n      pause: 5\n", "flightdeck.yaml:13:14: expected a duration"},
		{"unknown strategy", "      kind: yolo\n", "flightdeck.yaml:12:13: unknown strategy \"yolo\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newProject(t, 2, 3, tt.strategy, "")
			for _, args := range [][]string{{"deploy", "--headless", "--release", "r1"}, {"check"}, {"rollback", "--headless", "--to", "r1"}} {
				out, code := p.run(args...)
				if code != 2 {
					t.Fatalf("%v: exit %d, want 2:\n%s", args, code, out)
				}
				if !strings.Contains(out, tt.want) {
					t.Fatalf("%v: output does not contain %q:\n%s", args, tt.want, out)
				}
			}
			if _, err := os.Stat(filepath.Join(p.dir, "hosts")); !os.IsNotExist(err) {
				t.Fatalf("a host directory was created for a bad plan")
			}
			if _, err := os.Stat(filepath.Join(p.dir, ".flightdeck")); !os.IsNotExist(err) {
				t.Fatalf("the state directory was created for a bad plan")
			}
		})
	}
	p := newProject(t, 1, 1, rolling2, "")
	for _, args := range [][]string{{"deploy", "--headless", "--release", "../x"}, {"deploy", "--bogus"}, {"rollback", "--to", ".hidden"}, {"deploy", "--env", "nope"},
		{"deploy", "--theme", "neon"}, {"demo", "--theme", "./no-such-theme.yaml"}} {
		if out, code := p.run(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2:\n%s", args, code, out)
		}
	}
}

// TestSecondDeployIsLockedOut: exit 3 naming the holder.
func TestSecondDeployIsLockedOut(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "gate")
	p := newProject(t, 2, 3, rolling2, fmt.Sprintf("restart: 'while [ ! -e %s ]; do sleep 0.01; done'\n", gate))
	first := exec.Command(binary, "deploy", "--headless", "--release", "r1")
	first.Dir = p.dir
	first.Env = append(os.Environ(), "FLIGHTDECK_ACTOR=alice")
	var firstOut syncbuf.Buffer
	first.Stdout, first.Stderr = &firstOut, &firstOut
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		writeFile(t, gate, "")
		first.Wait()
	}()
	waitFor(t, func() bool { return strings.Contains(firstOut.String(), "restarting") })
	out, code := p.run("deploy", "--headless", "--release", "r2")
	if code != 3 {
		t.Fatalf("second deploy exit %d, want 3:\n%s", code, out)
	}
	if !strings.Contains(out, "locked by alice") || !strings.Contains(out, fmt.Sprintf("pid %d", first.Process.Pid)) {
		t.Fatalf("message should name the holder:\n%s", out)
	}
}

// waitFor polls cond until it holds or 30 s pass.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal("condition not met within 30s")
		case <-tick.C:
		}
	}
}
