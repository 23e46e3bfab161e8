package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"flightdeck/engine"
)

// TestGitSourceWithBuild: the release is built from a git ref in a clean
// workspace (never the working tree), build_output becomes the release,
// and the commit is recorded; a failing build touches no host.
func TestGitSourceWithBuild(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("git is missing: apt-get install git")
		}
		t.Skip("git is missing: apt-get install git")
	}
	dir := t.TempDir()
	repo := filepath.Join(dir, "app")
	os.MkdirAll(repo, 0o755)
	gitRun := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	gitRun("init", "-q", "-b", "main")
	writeFile(t, filepath.Join(repo, "page.txt"), "committed\n")
	gitRun("add", ".")
	gitRun("commit", "-q", "-m", "v1")
	sha := gitRun("rev-parse", "HEAD")
	// An uncommitted edit in the working tree must not reach the release.
	writeFile(t, filepath.Join(repo, "page.txt"), "uncommitted edit\n")

	plan := `app: shop
source: {git: {repo: ./app, ref: main}}
build: ["mkdir -p dist && cp page.txt dist/ && echo built > dist/stamp"]
build_output: dist
environments:
  production:
    hosts: [{name: web-1, local: ./hosts/web-1}]
`
	p := &project{t: t, dir: dir, plan: filepath.Join(dir, "flightdeck.yaml")}
	writeFile(t, p.plan, plan)
	if out, code := p.run("deploy", "--headless", "--release", "r1"); code != 0 {
		t.Fatalf("deploy exit %d:\n%s", code, out)
	}
	rel := filepath.Join(dir, "hosts", "web-1", "releases", "r1")
	if b, _ := os.ReadFile(filepath.Join(rel, "page.txt")); string(b) != "committed\n" {
		t.Fatalf("release has %q, want the committed content", b)
	}
	if _, err := os.Stat(filepath.Join(rel, "stamp")); err != nil {
		t.Fatal("the build output is not the release")
	}
	runs, _ := engine.ListRuns(filepath.Join(dir, ".flightdeck"))
	evs, _ := engine.ReadJournal(filepath.Join(dir, ".flightdeck"), runs[0].Run)
	if c := engine.Fold(evs).Info.Commit; c != sha {
		t.Fatalf("recorded commit %q, want %s", c, sha)
	}

	writeFile(t, p.plan, strings.Replace(plan, "echo built > dist/stamp", "echo compiler exploded; exit 3", 1))
	out, code := p.run("deploy", "--headless", "--release", "r2")
	if code != 1 || !strings.Contains(out, "compiler exploded") || !strings.Contains(out, "no host was touched") {
		t.Fatalf("failed build: exit %d:\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "hosts", "web-1", "releases", "r2")); !os.IsNotExist(err) {
		t.Fatal("a failed build touched a host")
	}
}
