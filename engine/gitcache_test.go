package engine

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"flightdeck/engine/plan"
)

// gitRepo makes a repository with files and returns a function running git
// in it.
func gitRepo(t *testing.T, files map[string]string) (string, func(args ...string) string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("git is missing: apt-get install git")
		}
		t.Skip("git is missing: apt-get install git")
	}
	repo := filepath.Join(t.TempDir(), "app")
	run := func(args ...string) string {
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
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	run("init", "-q", "-b", "main")
	commitFiles(t, repo, run, files, "v1")
	return repo, run
}

func commitFiles(t *testing.T, repo string, run func(...string) string, files map[string]string, msg string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(repo, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run("add", "-A")
	run("commit", "-q", "-m", msg)
}

// TestBuildCachedGit: a git source built through the build cache gives the
// manifest and content a fresh clone gives, build after build: new
// commits, a tag, an edit made in the cache's tree (put back), a file
// removed; a second build while the cache is in use builds without it.
func TestBuildCachedGit(t *testing.T) {
	repo, run := gitRepo(t, map[string]string{"a.txt": "one\n", "d/b.txt": "two\n", "d/e/c.txt": "three\n"})
	p := &plan.Plan{Dir: filepath.Dir(repo), Source: &plan.Source{Git: &plan.GitSource{Repo: "./app", Ref: "main"}}}
	cache := filepath.Join(t.TempDir(), "cache")
	ctx := context.Background()

	check := func(what, id string) *Artifact {
		t.Helper()
		a, cleanup, err := BuildWith(ctx, p, id, nil, BuildOptions{CacheDir: cache})
		if err != nil {
			t.Fatalf("%s: cached build: %v", what, err)
		}
		defer cleanup()
		fresh, fcleanup, err := Build(ctx, p, id, nil)
		if err != nil {
			t.Fatalf("%s: fresh build: %v", what, err)
		}
		defer fcleanup()
		if !strings.HasPrefix(a.Dir, cache) {
			t.Fatalf("%s: the cached build is in %s, not in the cache", what, a.Dir)
		}
		if a.Commit != fresh.Commit || a.Manifest.Commit != fresh.Commit {
			t.Fatalf("%s: commit %q/%q, want %q", what, a.Commit, a.Manifest.Commit, fresh.Commit)
		}
		if !reflect.DeepEqual(a.Manifest, fresh.Manifest) {
			t.Fatalf("%s: cached manifest\n%+v\nwant the fresh clone's\n%+v", what, a.Manifest.Entries, fresh.Manifest.Entries)
		}
		// The manifest holds the tree's real content.
		if m, err := BuildManifest(a.Dir, id); err != nil || !reflect.DeepEqual(m.Entries, a.Manifest.Entries) {
			t.Fatalf("%s: the cached tree does not hold what its manifest says (%v)", what, err)
		}
		return a
	}
	check("first build", "r1")
	commitFiles(t, repo, run, map[string]string{"d/b.txt": "two, changed\n"}, "v2")
	check("one file changed", "r2")

	// An edit in the cache's tree, made between builds, never reaches a
	// release; nor does a stray file.
	tree := filepath.Join(cache, mustOne(t, filepath.Join(cache, "git-*")), "tree")
	if err := os.WriteFile(filepath.Join(tree, "a.txt"), []byte("edited in the cache\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "stray.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	run("rm", "-q", "d/e/c.txt")
	run("commit", "-q", "-m", "v3")
	run("tag", "v3")
	a := check("edited cache, file removed", "r3")
	if b, _ := os.ReadFile(filepath.Join(a.Dir, "a.txt")); string(b) != "one\n" {
		t.Fatalf("a.txt holds %q after the cache was edited", b)
	}
	p.Source.Git.Ref = "v3"
	check("a tag", "r4")

	// The cache is in use (another build holds it): this build clones.
	held, cleanup, err := BuildWith(ctx, p, "r5", nil, BuildOptions{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	other, ocleanup, err := BuildWith(ctx, p, "r6", nil, BuildOptions{CacheDir: cache})
	if err != nil {
		t.Fatalf("build while the cache is in use: %v", err)
	}
	defer ocleanup()
	if strings.HasPrefix(other.Dir, cache) || other.Commit != held.Commit || !reflect.DeepEqual(other.Manifest.Entries, held.Manifest.Entries) {
		t.Fatalf("build while the cache is in use: dir %s commit %s, want a fresh clone of %s", other.Dir, other.Commit, held.Commit)
	}
}

func mustOne(t *testing.T, pattern string) string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil || len(m) != 1 {
		t.Fatalf("%s: %v %v", pattern, m, err)
	}
	return filepath.Base(m[0])
}
