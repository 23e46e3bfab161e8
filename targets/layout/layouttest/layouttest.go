// Package layouttest is the conformance suite of the release layout: the
// same cases run against every kind of host (a local directory, a server
// over SSH, ...), so that the layout's rules hold the same everywhere.
//
// A kind of host takes part by calling Run from its own tests with a
// Factory. The hosts' deploy_to must be reachable on this machine too
// (test sshd servers run here), because the cases damage releases and
// plant symlinks directly, as a colleague or an attacker would.
package layouttest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"flightdeck/engine"
)

// Factory makes hosts for the suite.
type Factory struct {
	// New returns a host whose deploy_to is the local directory deployTo
	// (which may not exist yet). Several hosts may share one deploy_to: each
	// must start with no memory of the others.
	New func(t *testing.T, name, deployTo string) engine.Host
	// NewFullVerify, when set, returns a host as New does whose Verify
	// hashes every file (the plan's verify_releases: full).
	NewFullVerify func(t *testing.T, name, deployTo string) engine.Host
	// Fsynced runs fn, which switches a host, and returns the names the
	// host fsynced meanwhile (observed from outside, e.g. with strace). Nil
	// skips the durability case with a message naming what is missing.
	Fsynced func(t *testing.T, deployTo string, fn func(h engine.Host)) []string
}

// Run runs every case of the suite as a subtest.
func Run(t *testing.T, f Factory) {
	cases := []struct {
		name string
		fn   func(*testing.T, Factory)
	}{
		{"PrepareSwitchRollback", testPrepareSwitchRollback},
		{"PrepareIdempotent", testPrepareIdempotent},
		{"ExistingReleaseVerifiedBeforeReuse", testExistingReleaseVerified},
		{"LinksOnlyIntactSameMode", testLinksOnlyIntactSameMode},
		{"LinksFromOlderReleasesWhenWorthIt", testLinksFromOlderReleases},
		{"LinksFromAReleaseJustCheckedEvenIfChangedSince", testLinksFromJustChecked},
		{"PrepareRejectsBadManifests", testPrepareRejects},
		{"SwitchRefusesIncompleteReleases", testSwitchRefuses},
		{"InspectChangesNothingCleanRemovesLeftovers", testInspectAndClean},
		{"SurveyIsCleanInspectAndCheck", Survey},
		{"Prune", testPrune},
		{"VerifyDetectsDamage", testVerifyDetects},
		{"VerifyRecordsWhatItHashed", testVerifyRecord},
		{"PlantedSymlinksAreNeverFollowed", testPlantedSymlinks},
		{"SpecialModeBits", testSpecialModeBits},
		{"RevisionsLogAndCurrentAreFsynced", testFsynced},
		{"PreparedReleaseDirectoriesAreFsynced", testPreparedFsynced},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, f) })
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// Tree is a release's source: path -> content. "->target" makes a
// symlink; paths ending in ".sh" are 0755, others 0644; Dirs sets a
// directory's mode after the files are written.
type Tree struct {
	Files map[string]string
	Dirs  map[string]fs.FileMode
}

// Artifact writes tree under a new temporary directory and builds its
// manifest as release id.
func Artifact(t testing.TB, id string, tree Tree) *engine.Artifact {
	t.Helper()
	dir := t.TempDir()
	for p, content := range tree.Files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "->"); ok {
			if err := os.Symlink(target, full); err != nil {
				t.Fatal(err)
			}
			continue
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(p, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(full, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(full, mode); err != nil {
			t.Fatal(err)
		}
	}
	for d, mode := range tree.Dirs {
		full := filepath.Join(dir, filepath.FromSlash(d))
		if err := os.MkdirAll(full, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(full, mode); err != nil {
			t.Fatal(err)
		}
	}
	m, err := engine.BuildManifest(dir, id)
	if err != nil {
		t.Fatal(err)
	}
	return &engine.Artifact{ID: id, Dir: dir, Manifest: m}
}

// ManyFiles returns n files spread over 10 directories.
func ManyFiles(n int) map[string]string {
	files := make(map[string]string, n)
	for i := range n {
		files[fmt.Sprintf("d%02d/f%04d.txt", i%10, i)] = fmt.Sprintf("content of file %d\n", i)
	}
	return files
}

type env struct {
	t   *testing.T
	f   Factory
	dir string
	h   engine.Host
	ctx context.Context
}

func newEnv(t *testing.T, f Factory) *env {
	dir := filepath.Join(t.TempDir(), "app")
	return &env{t: t, f: f, dir: dir, h: f.New(t, "web1", dir), ctx: ctxT(t)}
}

// fresh is another host on the same deploy_to, with no memory.
func (e *env) fresh() engine.Host { return e.f.New(e.t, "web1", e.dir) }

func (e *env) rel(p ...string) string {
	return filepath.Join(append([]string{e.dir, engine.ReleasesDir}, p...)...)
}

func (e *env) prepare(id string, tree Tree) *engine.Artifact {
	e.t.Helper()
	a := Artifact(e.t, id, tree)
	if err := e.h.Prepare(e.ctx, a, nil); err != nil {
		e.t.Fatalf("prepare %s: %v", id, err)
	}
	return a
}

func (e *env) switchTo(id string) {
	e.t.Helper()
	if err := e.h.Switch(e.ctx, engine.SwitchInfo{Release: id, Actor: "tester"}); err != nil {
		e.t.Fatalf("switch to %s: %v", id, err)
	}
}

func (e *env) current() string {
	l, err := os.Readlink(filepath.Join(e.dir, engine.CurrentLink))
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(l, engine.ReleasesDir+"/")
}

// TempNames lists the names in dir that hold the temporary prefix.
func TempNames(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.Contains(e.Name(), engine.TempPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// Inode is the inode number of p (not following a final symlink).
func Inode(t testing.TB, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// AssertReadOnly fails t if a regular file under root is writable, or if
// root holds no file.
func AssertReadOnly(t testing.TB, root string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o222 != 0 {
			t.Errorf("%s is writable: %v", p, fi.Mode())
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Errorf("no files under %s", root)
	}
}

func wantErr(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want it to contain %q", err, want)
	}
}

func testPrepareSwitchRollback(t *testing.T, f Factory) {
	e := newEnv(t, f)
	big := strings.Repeat("x", 300<<10)
	files := ManyFiles(200)
	files["index.html"] = "v1"
	files["lib/big.bin"] = big
	files["bin/start.sh"] = "#!/bin/sh\necho start\n"
	files["latest"] = "->index.html"
	files["log"] = "->../../shared/log"
	a1 := Artifact(t, "r1", Tree{Files: files})
	var p1 engine.Progress
	calls := 0
	start := time.Now()
	if err := e.h.Prepare(e.ctx, a1, func(p engine.Progress) { p1 = p; calls++ }); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	n, size := a1.Manifest.Files()
	if p1.FilesDone != n || p1.FilesTotal != n || p1.BytesDone != size || p1.BytesSent != size {
		t.Errorf("r1 final progress %+v, want all %d files / %d bytes sent", p1, n, size)
	}
	// At most one call per 64 files or per 50 ms, plus the first and last.
	if limit := n/64 + int(elapsed/(50*time.Millisecond)) + 3; calls > limit {
		t.Errorf("%d progress callbacks for %d files in %v: not throttled (at most %d)", calls, n, elapsed, limit)
	}
	e.switchTo("r1")

	files["index.html"] = "v2 changed"
	a2 := Artifact(t, "r2", Tree{Files: files})
	var p2 engine.Progress
	if err := e.h.Prepare(e.ctx, a2, func(p engine.Progress) { p2 = p }); err != nil {
		t.Fatal(err)
	}
	if p2.FilesDone != n || p2.BytesSent != int64(len("v2 changed")) {
		t.Errorf("r2 final progress %+v, want %d files done and only the changed file sent", p2, n)
	}
	e.switchTo("r2")
	if err := e.h.Switch(e.ctx, engine.SwitchInfo{Release: "r1", Previous: "r2", Actor: "bob smith", Action: "rollback"}); err != nil {
		t.Fatal(err)
	}
	if got := e.current(); got != "r1" {
		t.Errorf("current -> %s, want r1", got)
	}
	log, err := os.ReadFile(filepath.Join(e.dir, engine.RevisionsLog))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(log), "\n"), "\n")
	want := []string{
		"deploy release=r1 previous=- actor=tester",
		"deploy release=r2 previous=r1 actor=tester",
		"rollback release=r1 previous=r2 actor=bob_smith",
	}
	if len(lines) != len(want) {
		t.Fatalf("revisions.log has %d lines, want %d:\n%s", len(lines), len(want), log)
	}
	for j, w := range want {
		if _, rest, _ := strings.Cut(lines[j], " "); rest != w {
			t.Errorf("revisions.log line %d = %q, want time + %q", j+1, lines[j], w)
		}
	}
	st, err := e.h.Inspect(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Current != "r1" || !slices.Equal(st.Releases, []string{"r1", "r2"}) {
		t.Errorf("Inspect = %+v", st)
	}
	shared := 0
	for p, content := range files {
		if strings.HasPrefix(content, "->") {
			continue
		}
		i1, i2 := Inode(t, e.rel("r1", p)), Inode(t, e.rel("r2", p))
		switch {
		case p == "index.html" && i1 == i2:
			t.Errorf("changed %s shares its inode with r1", p)
		case p != "index.html" && i1 != i2:
			t.Errorf("unchanged %s was copied, not linked", p)
		case p != "index.html":
			shared++
		}
	}
	if shared != n-1 {
		t.Errorf("%d files share their inode, want %d", shared, n-1)
	}
	for _, id := range []string{"r1", "r2"} {
		AssertReadOnly(t, e.rel(id))
		if fi, err := os.Stat(e.rel(id, "bin/start.sh")); err != nil || fi.Mode().Perm() != 0o555 {
			t.Errorf("%s/bin/start.sh mode %v (%v), want r-xr-xr-x", id, fi.Mode(), err)
		}
		if l, err := os.Readlink(e.rel(id, "latest")); err != nil || l != "index.html" {
			t.Errorf("%s/latest -> %q (%v)", id, l, err)
		}
		b, err := os.ReadFile(e.rel(id, engine.ManifestName))
		if err != nil {
			t.Fatal(err)
		}
		if pm, err := engine.ParseManifest(b); err != nil || pm.Release != id || len(pm.Entries) != len(a1.Manifest.Entries) {
			t.Errorf("%s: stored manifest %v", id, err)
		}
		if err := e.fresh().Verify(e.ctx, id); err != nil {
			t.Errorf("Verify %s: %v", id, err)
		}
	}
	if got := TempNames(t, e.rel()); len(got) != 0 {
		t.Errorf("temporary dirs left: %v", got)
	}
	if got := TempNames(t, e.dir); len(got) != 0 {
		t.Errorf("temporary links left: %v", got)
	}
	if fi, err := os.Lstat(filepath.Join(e.dir, engine.SharedDir)); err != nil || !fi.IsDir() {
		t.Errorf("shared/ not created: %v", err)
	}
}

func testPrepareIdempotent(t *testing.T, f Factory) {
	e := newEnv(t, f)
	files := ManyFiles(50)
	a := e.prepare("r1", Tree{Files: files})
	before := Inode(t, e.rel("r1", "d01/f0001.txt"))
	for _, h := range []engine.Host{e.h, e.fresh()} {
		var last engine.Progress
		calls := 0
		if err := h.Prepare(e.ctx, a, func(p engine.Progress) { last = p; calls++ }); err != nil {
			t.Fatal(err)
		}
		if calls == 0 || last.BytesSent != 0 || last.FilesDone != 50 || last.FilesTotal != 50 {
			t.Errorf("prepare of a complete release: %d calls, last %+v; want 50/50 files and 0 bytes sent", calls, last)
		}
	}
	if after := Inode(t, e.rel("r1", "d01/f0001.txt")); after != before {
		t.Error("a second prepare rewrote a file")
	}
	files["d01/f0001.txt"] = "other\n"
	err := e.h.Prepare(e.ctx, Artifact(t, "r1", Tree{Files: files}), nil)
	wantErr(t, err, "different content")
	if err := e.h.Verify(e.ctx, "r1"); err != nil {
		t.Error(err)
	}
}

// testExistingReleaseVerified: an existing release directory is verified
// before it is reused (over SSH it once was accepted as it was).
func testExistingReleaseVerified(t *testing.T, f Factory) {
	for _, damage := range []struct {
		name string
		fn   func(t *testing.T, root string)
	}{
		{"truncated file", func(t *testing.T, root string) {
			if err := os.Truncate(filepath.Join(root, "d03/f0003.txt"), 2); err != nil {
				t.Fatal(err)
			}
		}},
		{"same size, other bytes", func(t *testing.T, root string) {
			p := filepath.Join(root, "d02/f0002.txt")
			os.Chmod(p, 0o644)
			if err := os.WriteFile(p, []byte("CONTENT OF FILE 2\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			os.Chmod(p, 0o444)
		}},
		{"missing file", func(t *testing.T, root string) {
			if err := os.Remove(filepath.Join(root, "d05/f0005.txt")); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(damage.name, func(t *testing.T) {
			e := newEnv(t, f)
			a := e.prepare("r1", Tree{Files: ManyFiles(20)})
			damage.fn(t, e.rel("r1"))
			err := e.fresh().Prepare(e.ctx, a, nil)
			wantErr(t, err, "exists but is damaged")
			if err := e.fresh().Switch(e.ctx, engine.SwitchInfo{Release: "r1"}); err == nil && damage.name != "same size, other bytes" {
				t.Error("switch to the damaged release succeeded")
			}
		})
	}
}

func testLinksOnlyIntactSameMode(t *testing.T, f Factory) {
	e := newEnv(t, f)
	e.prepare("r1", Tree{Files: map[string]string{"a.sh": "same\n", "t.txt": "original\n", "k.txt": "kept\n"}})
	tampered := e.rel("r1", "t.txt")
	if err := os.Chmod(tampered, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tampered, []byte("ORIGINAL\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// r2: b.txt has a.sh's content with another mode; t.txt as r1 built it.
	e.prepare("r2", Tree{Files: map[string]string{"a.sh": "same\n", "b.txt": "same\n", "t.txt": "original\n", "k.txt": "kept\n"}})
	if Inode(t, e.rel("r1", "a.sh")) != Inode(t, e.rel("r2", "a.sh")) {
		t.Error("r2/a.sh (same content and mode) was not linked")
	}
	if Inode(t, e.rel("r1", "a.sh")) == Inode(t, e.rel("r2", "b.txt")) {
		t.Error("r2/b.txt (0644) shares the inode of r1/a.sh (0755): its mode would be wrong")
	}
	if Inode(t, tampered) == Inode(t, e.rel("r2", "t.txt")) {
		t.Error("r2/t.txt was linked to a writable (tampered) file of r1")
	}
	if Inode(t, e.rel("r1", "k.txt")) != Inode(t, e.rel("r2", "k.txt")) {
		t.Error("r2/k.txt was not linked")
	}
	if err := e.h.Verify(e.ctx, "r2"); err != nil {
		t.Error(err)
	}
}

// testLinksFromJustChecked: a host links from a release it found complete
// a moment ago (its switch checked it) without listing it again; a file
// of it removed or edited since is still not linked: the release written
// is complete and holds the built content.
func testLinksFromJustChecked(t *testing.T, f Factory) {
	files := map[string]string{"a.sh": "same\n", "t.txt": "original\n", "k.txt": "kept\n", "gone.txt": "gone\n"}
	for _, c := range []struct {
		name   string
		change func(t *testing.T, e *env)
		fresh  []string // files of r2 that must not be links into r1
	}{
		{"unchanged", func(*testing.T, *env) {}, nil},
		{"a file removed", func(t *testing.T, e *env) {
			if err := os.Remove(e.rel("r1", "gone.txt")); err != nil {
				t.Fatal(err)
			}
		}, []string{"gone.txt"}},
		{"a file made writable and edited", func(t *testing.T, e *env) {
			p := e.rel("r1", "t.txt")
			if err := os.Chmod(p, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("ORIGINAL\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{"t.txt"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, f)
			e.prepare("r1", Tree{Files: files})
			e.switchTo("r1") // checks r1 complete
			c.change(t, e)
			e.prepare("r2", Tree{Files: files})
			if err := e.fresh().Verify(e.ctx, "r2"); err != nil {
				t.Fatal(err)
			}
			if Inode(t, e.rel("r1", "a.sh")) != Inode(t, e.rel("r2", "a.sh")) {
				t.Error("r2/a.sh was not linked from r1")
			}
			for _, name := range c.fresh {
				if fi, err := os.Stat(e.rel("r1", name)); err == nil && Inode(t, e.rel("r1", name)) == Inode(t, e.rel("r2", name)) {
					t.Errorf("r2/%s is linked to r1's, changed since r1 was checked (%v)", name, fi.Mode())
				}
			}
		})
	}
}

// testLinksFromOlderReleases: a file current lacks is linked from an
// older release when what is missing outweighs that release's manifest;
// when it does not (a few bytes), the file is sent rather than the
// manifest read.
func testLinksFromOlderReleases(t *testing.T, f Factory) {
	e := newEnv(t, f)
	big := strings.Repeat("x", 64<<10)
	e.prepare("r1", Tree{Files: map[string]string{"big.bin": big, "small.txt": "s\n", "k.txt": "kept\n"}})
	e.switchTo("r1")
	e.prepare("r2", Tree{Files: map[string]string{"k.txt": "kept\n", "o.txt": "other\n"}})
	e.switchTo("r2")
	var last engine.Progress
	a := Artifact(t, "r3", Tree{Files: map[string]string{"big.bin": big, "small.txt": "s\n", "k.txt": "kept\n"}})
	if err := e.h.Prepare(e.ctx, a, func(p engine.Progress) { last = p }); err != nil {
		t.Fatal(err)
	}
	if last.BytesSent != 0 || Inode(t, e.rel("r1", "big.bin")) != Inode(t, e.rel("r3", "big.bin")) ||
		Inode(t, e.rel("r1", "small.txt")) != Inode(t, e.rel("r3", "small.txt")) {
		t.Errorf("r3: %d bytes sent; want big.bin and small.txt linked from r1 (current r2 lacks them)", last.BytesSent)
	}
	a = Artifact(t, "r4", Tree{Files: map[string]string{"small.txt": "s\n", "k.txt": "kept\n"}})
	if err := e.h.Prepare(e.ctx, a, func(p engine.Progress) { last = p }); err != nil {
		t.Fatal(err)
	}
	if last.BytesSent != 2 || Inode(t, e.rel("r3", "small.txt")) == Inode(t, e.rel("r4", "small.txt")) {
		t.Errorf("r4: %d bytes sent; want the 2-byte small.txt sent (smaller than any manifest that has it)", last.BytesSent)
	}
	if Inode(t, e.rel("r2", "k.txt")) != Inode(t, e.rel("r4", "k.txt")) {
		t.Error("r4/k.txt was not linked from current")
	}
}

func testPrepareRejects(t *testing.T, f Factory) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "a"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := engine.BuildManifest(src, "r1")
	if err != nil {
		t.Fatal(err)
	}
	good := m.Entries[0]
	dir := engine.ManifestEntry{Path: "d", Kind: engine.KindDir, Mode: 0o755}
	link := engine.ManifestEntry{Path: "l", Kind: engine.KindSymlink, Link: "/etc"}
	with := func(p string, base engine.ManifestEntry) engine.ManifestEntry { base.Path = p; return base }
	tests := []struct {
		name    string
		id      string
		entries []engine.ManifestEntry
		want    string
	}{
		{"parent escape", "r1", []engine.ManifestEntry{with("../a", good)}, "'..'"},
		{"absolute", "r1", []engine.ManifestEntry{with("/tmp/a", good)}, "relative"},
		{"unclean", "r1", []engine.ManifestEntry{dir, with("d/../a", good)}, "clean"},
		{"through symlink", "r1", []engine.ManifestEntry{link, with("l/passwd", good)}, "not a directory"},
		{"missing parent", "r1", []engine.ManifestEntry{with("x/a", good)}, "not a directory"},
		{"manifest name", "r1", []engine.ManifestEntry{with(engine.ManifestName, good)}, "reserved"},
		{"bad id", "../r1", []engine.ManifestEntry{good}, "release id"},
		{"source changed", "r1", []engine.ManifestEntry{func() engine.ManifestEntry { e := good; e.Hash = strings.Repeat("0", 64); return e }()}, "changed since"},
		{"source shorter than the manifest", "r1", []engine.ManifestEntry{func() engine.ManifestEntry { e := good; e.Size = 5; return e }()}, "changed since"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, f)
			a := &engine.Artifact{ID: tt.id, Dir: src, Manifest: &engine.Manifest{Release: tt.id, Entries: tt.entries}}
			wantErr(t, e.h.Prepare(e.ctx, a, nil), tt.want)
			st, err := e.h.Inspect(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Releases) != 0 || len(TempNames(t, e.rel())) != 0 {
				t.Errorf("after a refused prepare: releases %v, temp %v", st.Releases, TempNames(t, e.rel()))
			}
		})
	}
}

// testSwitchRefuses: Switch accepts only a complete release (a manifest
// alone is not enough), whatever Host value asks.
func testSwitchRefuses(t *testing.T, f Factory) {
	e := newEnv(t, f)
	e.prepare("r1", Tree{Files: ManyFiles(5)})
	e.switchTo("r1")
	for _, id := range []string{"missing", "short", "nomanifest"} {
		files := ManyFiles(6)
		for p := range files {
			files[p] = id + " " + p // not linked with r1's: the damage stays in this release
		}
		e.prepare(id, Tree{Files: files})
	}
	if err := os.Remove(e.rel("missing", "d03/f0003.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(e.rel("short", "d04/f0004.txt"), 3); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(e.rel("nomanifest", engine.ManifestName)); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(e.rel("legacy"), 0o755); err != nil {
		t.Fatal(err)
	}
	log0, _ := os.ReadFile(filepath.Join(e.dir, engine.RevisionsLog))
	for _, c := range []struct{ id, want string }{
		{"missing", "d03/f0003.txt: missing"},
		{"short", "d04/f0004.txt: size 3, want"},
		{"nomanifest", "read manifest"},
		{"legacy", "read manifest"},
		{"absent", "not on the host"},
		{"../r1", "release id"},
	} {
		for _, h := range []engine.Host{e.h, e.fresh()} {
			wantErr(t, h.Switch(e.ctx, engine.SwitchInfo{Release: c.id}), c.want)
			if err := h.Check(e.ctx, c.id); err == nil {
				t.Errorf("Check(%s) passed", c.id)
			}
		}
	}
	if got := e.current(); got != "r1" {
		t.Errorf("current -> %q after refused switches", got)
	}
	if log1, _ := os.ReadFile(filepath.Join(e.dir, engine.RevisionsLog)); string(log1) != string(log0) {
		t.Errorf("revisions.log changed by refused switches:\n%s", log1)
	}
	if got := TempNames(t, e.dir); len(got) != 0 {
		t.Errorf("temporary links left: %v", got)
	}
	if err := e.fresh().Check(e.ctx, "r1"); err != nil {
		t.Errorf("Check of a complete release: %v", err)
	}
}

// testInspectAndClean: Inspect (what read-only commands call) never
// deletes anything; Clean (the lock holder's) removes leftovers only.
func testInspectAndClean(t *testing.T, f Factory) {
	t.Run("missing deploy_to", func(t *testing.T) {
		e := newEnv(t, f)
		st, err := e.h.Inspect(e.ctx)
		if err != nil || st.Current != "" || len(st.Releases) != 0 {
			t.Fatalf("Inspect = %+v, %v", st, err)
		}
		if err := e.h.Clean(e.ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(e.dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Inspect or Clean created deploy_to (%v)", err)
		}
	})
	t.Run("leftovers", func(t *testing.T) {
		e := newEnv(t, f)
		e.prepare("20261125221000", Tree{Files: ManyFiles(3)})
		e.prepare("20261124080000", Tree{Files: ManyFiles(3)})
		leftover := e.rel(engine.TempPrefix + "r3-abc")
		if err := os.MkdirAll(filepath.Join(leftover, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(leftover, "sub/f"), []byte("x"), 0o444); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(e.rel(".git"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(e.rel("README"), []byte("not a release"), 0o644); err != nil {
			t.Fatal(err)
		}
		strayLink := filepath.Join(e.dir, engine.CurrentLink+engine.TempPrefix+"dead")
		if err := os.Symlink("releases/r3", strayLink); err != nil {
			t.Fatal(err)
		}
		// An absolute current link (written by other tools) is understood.
		if err := os.Symlink(e.rel("20261124080000"), filepath.Join(e.dir, engine.CurrentLink)); err != nil {
			t.Fatal(err)
		}
		want := engine.HostStatus{Current: "20261124080000", Releases: []string{"20261124080000", "20261125221000"}}
		for range 2 {
			st, err := e.h.Inspect(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Current != want.Current || !slices.Equal(st.Releases, want.Releases) {
				t.Errorf("Inspect = %+v, want %+v", st, want)
			}
			for _, p := range []string{leftover, strayLink} {
				if _, err := os.Lstat(p); err != nil {
					t.Fatalf("Inspect removed %s (%v): read-only commands must never delete", p, err)
				}
			}
		}
		if err := e.h.Clean(e.ctx); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{leftover, strayLink} {
			if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("leftover %s not removed by Clean (%v)", p, err)
			}
		}
		for _, p := range []string{e.rel(".git"), e.rel("README"), e.rel("20261125221000")} {
			if _, err := os.Lstat(p); err != nil {
				t.Errorf("Clean removed %s: %v", p, err)
			}
		}
	})
	t.Run("current outside releases", func(t *testing.T) {
		e := newEnv(t, f)
		if err := os.MkdirAll(e.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/etc", filepath.Join(e.dir, engine.CurrentLink)); err != nil {
			t.Fatal(err)
		}
		_, err := e.h.Inspect(e.ctx)
		wantErr(t, err, "outside")
	})
}

func testPrune(t *testing.T, f Factory) {
	tests := []struct {
		name    string
		keep    int
		current string
		protect []string
		removed []string
		left    []string
	}{
		{"keep 2", 2, "r5", nil, []string{"r1", "r2", "r3"}, []string{"r4", "r5"}},
		{"current kept after rollback", 2, "r2", nil, []string{"r1", "r3"}, []string{"r2", "r4", "r5"}},
		{"protected kept", 1, "r5", []string{"r1", "r3"}, []string{"r2", "r4"}, []string{"r1", "r3", "r5"}},
		{"keep 0 keeps current", 0, "r3", nil, []string{"r1", "r2", "r4", "r5"}, []string{"r3"}},
		{"nothing beyond keep", 5, "r5", nil, nil, []string{"r1", "r2", "r3", "r4", "r5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, f)
			files := ManyFiles(20)
			for i := 1; i <= 5; i++ {
				files["version"] = fmt.Sprint(i)
				e.prepare(fmt.Sprintf("r%d", i), Tree{Files: files})
			}
			// A read-only directory must not stop removal either.
			if err := os.Chmod(e.rel("r1", "d01"), 0o555); err != nil {
				t.Fatal(err)
			}
			e.switchTo(tt.current)
			removed, err := e.h.Prune(e.ctx, tt.keep, tt.protect)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(removed, tt.removed) {
				t.Errorf("removed %v, want %v", removed, tt.removed)
			}
			st, err := e.h.Inspect(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(st.Releases, tt.left) || st.Current != tt.current {
				t.Errorf("after prune: %+v, want releases %v current %s", st, tt.left, tt.current)
			}
			if got := TempNames(t, e.rel()); len(got) != 0 {
				t.Errorf("temporary dirs left: %v", got)
			}
			// Files shared by hard links with removed releases are intact.
			for _, id := range st.Releases {
				if err := e.fresh().Verify(e.ctx, id); err != nil {
					t.Error(err)
				}
			}
		})
	}
	e := newEnv(t, f)
	if _, err := e.h.Prune(e.ctx, -1, nil); err == nil {
		t.Error("negative keep accepted")
	}
}

func testVerifyDetects(t *testing.T, f Factory) {
	tests := []struct {
		name   string
		damage func(t *testing.T, root string)
		want   string
	}{
		{"intact", func(*testing.T, string) {}, ""},
		{"edited file, same size", func(t *testing.T, root string) {
			p := filepath.Join(root, "d02/f0002.txt")
			os.Chmod(p, 0o644)
			if err := os.WriteFile(p, []byte("CONTENT OF FILE 2\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			os.Chmod(p, 0o444)
		}, "d02/f0002.txt: content changed"},
		{"made writable", func(t *testing.T, root string) {
			if err := os.Chmod(filepath.Join(root, "d02/f0002.txt"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "d02/f0002.txt: mode"},
		{"missing file", func(t *testing.T, root string) {
			if err := os.Remove(filepath.Join(root, "d05/f0005.txt")); err != nil {
				t.Fatal(err)
			}
		}, "d05/f0005.txt: missing"},
		{"truncated file", func(t *testing.T, root string) {
			if err := os.Truncate(filepath.Join(root, "d03/f0003.txt"), 1); err != nil {
				t.Fatal(err)
			}
		}, "d03/f0003.txt: size 1"},
		{"file replaced by a symlink", func(t *testing.T, root string) {
			p := filepath.Join(root, "d03/f0003.txt")
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/etc/passwd", p); err != nil {
				t.Fatal(err)
			}
		}, "d03/f0003.txt: is a symbolic link"},
		{"directory replaced by a symlink", func(t *testing.T, root string) {
			p := filepath.Join(root, "d04")
			if err := os.Rename(p, p+".moved"); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("d04.moved", p); err != nil {
				t.Fatal(err)
			}
		}, "d04: is a symbolic link"},
		{"symlink retargeted", func(t *testing.T, root string) {
			p := filepath.Join(root, "log")
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/tmp", p); err != nil {
				t.Fatal(err)
			}
		}, `log: links to "/tmp"`},
		{"manifest gone", func(t *testing.T, root string) {
			if err := os.Remove(filepath.Join(root, engine.ManifestName)); err != nil {
				t.Fatal(err)
			}
		}, "read manifest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, f)
			files := ManyFiles(10)
			files["log"] = "->../shared/log"
			e.prepare("r1", Tree{Files: files})
			tt.damage(t, e.rel("r1"))
			err := e.fresh().Verify(e.ctx, "r1")
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("intact release: %v", err)
			case tt.want != "":
				wantErr(t, err, tt.want)
			}
		})
	}
	e := newEnv(t, f)
	if err := e.h.Verify(e.ctx, "nope"); err == nil {
		t.Error("verify of a missing release succeeded")
	}
}

// Age sets the modification time of every regular file under root to an
// hour ago, as if they had been written long before (a verification does
// not record files modified moments before it).
func Age(t testing.TB, root string) {
	t.Helper()
	old := time.Now().Add(-time.Hour)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		return os.Chtimes(p, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// VerifiedLines is the number of files releases/.verified vouches for
// under deployTo (0 when it is missing).
func VerifiedLines(t testing.TB, deployTo string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployTo, engine.ReleasesDir, ".verified"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n") - 1 // the header
}

// testVerifyRecord: Verify records the files it found intact in
// releases/.verified (not those modified moments before), a file changed
// since is hashed again and caught, a record that lies or is garbage is
// no reason to pass, and a record planted as a symlink is not followed.
func testVerifyRecord(t *testing.T, f Factory) {
	edit := func(t *testing.T, p, content string) {
		t.Helper()
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	record := func(e *env) string { return e.rel(".verified") }

	// setTimes sets the modification time of every file of release id.
	setTimes := func(t *testing.T, e *env, id string, at time.Time) {
		t.Helper()
		err := filepath.WalkDir(e.rel(id), func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			return os.Chtimes(p, at, at)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Run("files a second old are recorded, whole-second times are not", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			at   time.Time
			want int
		}{
			// The margin is a fraction of a second (a clock tick is 1-10
			// ms); this machine is the host.
			{"a second old", time.Now().Add(-time.Second).Truncate(time.Millisecond).Add(123456 * time.Nanosecond), 10},
			// Whole seconds: a file system that keeps no finer, where a
			// write in the same second leaves the time as it was.
			{"whole seconds", time.Now().Add(-time.Hour).Truncate(time.Second), 0},
		} {
			t.Run(tt.name, func(t *testing.T) {
				e := newEnv(t, f)
				e.prepare("r1", Tree{Files: ManyFiles(10)})
				setTimes(t, e, "r1", tt.at)
				if err := e.fresh().Verify(e.ctx, "r1"); err != nil {
					t.Fatal(err)
				}
				if n := VerifiedLines(t, e.dir); n != tt.want {
					t.Errorf("%d files recorded, want %d", n, tt.want)
				}
			})
		}
	})
	t.Run("files modified moments before are not recorded", func(t *testing.T) {
		e := newEnv(t, f)
		e.prepare("r1", Tree{Files: ManyFiles(10)})
		// Later than the host's clock: within any margin, however slow
		// this machine is between the write and the Verify.
		soon := time.Now().Add(time.Hour)
		err := filepath.WalkDir(e.rel("r1"), func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			return os.Chtimes(p, soon, soon)
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.fresh().Verify(e.ctx, "r1"); err != nil {
			t.Fatal(err)
		}
		if n := VerifiedLines(t, e.dir); n != 0 {
			t.Errorf("%d files recorded that were modified moments before, want 0", n)
		}
	})
	t.Run("changed content is caught", func(t *testing.T) {
		e := newEnv(t, f)
		e.prepare("r1", Tree{Files: ManyFiles(10)})
		Age(t, e.rel("r1"))
		if err := e.fresh().Verify(e.ctx, "r1"); err != nil {
			t.Fatal(err)
		}
		if n := VerifiedLines(t, e.dir); n != 10 {
			t.Fatalf("%d files recorded, want 10", n)
		}
		if err := e.fresh().Verify(e.ctx, "r1"); err != nil {
			t.Fatalf("second Verify of an intact release: %v", err)
		}
		// Same size, other content: the modification time moved.
		edit(t, e.rel("r1", "d02/f0002.txt"), "CONTENT OF FILE 2\n")
		wantErr(t, e.fresh().Verify(e.ctx, "r1"), "d02/f0002.txt: content changed")
	})
	t.Run("a record that lies or is garbage", func(t *testing.T) {
		e := newEnv(t, f)
		e.prepare("r1", Tree{Files: ManyFiles(10)})
		Age(t, e.rel("r1"))
		if err := e.fresh().Verify(e.ctx, "r1"); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(record(e))
		if err != nil {
			t.Fatal(err)
		}
		// Every recorded hash swapped for the hash of a damaged file:
		// the record vouches for content the manifest does not name.
		edit(t, e.rel("r1", "d03/f0003.txt"), "CONTENT OF FILE 3\n")
		Age(t, e.rel("r1", "d03"))
		lines := strings.Split(string(b), "\n")
		for i, l := range lines[1:] {
			if f := strings.Fields(l); len(f) == 6 {
				f[5] = strings.Repeat("0", 64)
				lines[i+1] = strings.Join(f, " ")
			}
		}
		if err := os.WriteFile(record(e), []byte(strings.Join(lines, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
		wantErr(t, e.fresh().Verify(e.ctx, "r1"), "d03/f0003.txt: content changed")
		if err := os.WriteFile(record(e), []byte("garbage\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		wantErr(t, e.fresh().Verify(e.ctx, "r1"), "d03/f0003.txt: content changed")
	})
	t.Run("a planted record symlink is not followed", func(t *testing.T) {
		e := newEnv(t, f)
		e.prepare("r1", Tree{Files: ManyFiles(10)})
		Age(t, e.rel("r1"))
		outside := filepath.Join(t.TempDir(), "outside")
		if err := os.WriteFile(outside, []byte("keep me\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(outside, record(e)); err != nil {
			t.Fatal(err)
		}
		if err := e.fresh().Verify(e.ctx, "r1"); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(outside); err != nil || string(b) != "keep me\n" {
			t.Errorf("the symlink's target changed: %q, %v", b, err)
		}
		if fi, err := os.Lstat(record(e)); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("record after Verify: %v, %v; want a regular file in the link's place", fi, err)
		}
	})
	t.Run("full verification", func(t *testing.T) {
		if f.NewFullVerify == nil {
			t.Skip("the factory has no NewFullVerify")
		}
		e := newEnv(t, f)
		e.prepare("r1", Tree{Files: ManyFiles(10)})
		Age(t, e.rel("r1"))
		if err := e.fresh().Verify(e.ctx, "r1"); err != nil {
			t.Fatal(err)
		}
		// Rewritten in place with its modification time set back: only
		// hashing every file sees it.
		p := e.rel("r1", "d04/f0004.txt")
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		edit(t, p, "CONTENT OF FILE 4\n")
		if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
		wantErr(t, f.NewFullVerify(t, "web1", e.dir).Verify(e.ctx, "r1"), "d04/f0004.txt: content changed")
	})
}

// testPlantedSymlinks: releases/, shared/, revisions.log and entries under
// them are untrusted; a symlink there is refused, naming it, and nothing
// outside deploy_to is touched.
func testPlantedSymlinks(t *testing.T, f Factory) {
	// outside is what a planted link points at: it must stay as it is.
	outsideTree := func(t *testing.T) string {
		out := filepath.Join(t.TempDir(), "outside")
		for _, d := range []string{"X11", "apt", "r1"} {
			if err := os.MkdirAll(filepath.Join(out, d), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(out, d, "keep"), []byte(d), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	assertOutside := func(t *testing.T, out string) {
		t.Helper()
		ents, err := os.ReadDir(out)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if !slices.Equal(names, []string{"X11", "apt", "r1"}) {
			t.Errorf("outside deploy_to now holds %v, want X11 apt r1", names)
		}
		for _, d := range []string{"X11", "apt", "r1"} {
			if b, err := os.ReadFile(filepath.Join(out, d, "keep")); err != nil || string(b) != d {
				t.Errorf("%s/keep: %q %v", d, b, err)
			}
		}
	}
	plant := func(t *testing.T, target, link string) {
		t.Helper()
		if err := os.RemoveAll(link); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("releases", func(t *testing.T) {
		e := newEnv(t, f)
		e.prepare("r0", Tree{Files: ManyFiles(3)})
		out := outsideTree(t)
		plant(t, out, e.rel())
		name := e.rel()
		wantErr(t, e.h.Prepare(e.ctx, Artifact(t, "r2", Tree{Files: ManyFiles(3)}), nil), name+" is a symbolic link")
		_, err := e.h.Prune(e.ctx, 0, nil)
		wantErr(t, err, name+" is a symbolic link")
		wantErr(t, e.h.Clean(e.ctx), name+" is a symbolic link")
		_, err = e.h.Inspect(e.ctx)
		wantErr(t, err, name+" is a symbolic link")
		wantErr(t, e.h.Switch(e.ctx, engine.SwitchInfo{Release: "r1"}), name+" is a symbolic link")
		wantErr(t, e.h.Verify(e.ctx, "r1"), name+" is a symbolic link")
		assertOutside(t, out)
	})
	t.Run("shared", func(t *testing.T) {
		e := newEnv(t, f)
		e.prepare("r0", Tree{Files: ManyFiles(3)})
		out := outsideTree(t)
		plant(t, out, filepath.Join(e.dir, engine.SharedDir))
		wantErr(t, e.h.Prepare(e.ctx, Artifact(t, "r2", Tree{Files: ManyFiles(3)}), nil),
			filepath.Join(e.dir, engine.SharedDir)+" is a symbolic link")
		assertOutside(t, out)
	})
	t.Run("revisions.log", func(t *testing.T) {
		e := newEnv(t, f)
		e.prepare("r1", Tree{Files: ManyFiles(3)})
		e.switchTo("r1")
		e.prepare("r2", Tree{Files: ManyFiles(4)})
		other := filepath.Join(t.TempDir(), "other.log")
		if err := os.WriteFile(other, []byte("precious\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		log := filepath.Join(e.dir, engine.RevisionsLog)
		plant(t, other, log)
		wantErr(t, e.h.Switch(e.ctx, engine.SwitchInfo{Release: "r2"}), log+" is a symbolic link")
		if b, _ := os.ReadFile(other); string(b) != "precious\n" {
			t.Errorf("the file revisions.log pointed at was written: %q", b)
		}
		if got := e.current(); got != "r1" {
			t.Errorf("current -> %s after the refused switch", got)
		}
	})
	t.Run("release entry", func(t *testing.T) {
		e := newEnv(t, f)
		e.prepare("r1", Tree{Files: ManyFiles(3)})
		e.switchTo("r1")
		out := outsideTree(t)
		// releases/X11 -> outside/X11: a release-looking name that is a link.
		plant(t, filepath.Join(out, "X11"), e.rel("X11"))
		st, err := e.h.Inspect(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(st.Releases, "X11") {
			t.Errorf("a symlink under releases/ is listed as a release: %v", st.Releases)
		}
		wantErr(t, e.h.Switch(e.ctx, engine.SwitchInfo{Release: "X11"}), e.rel("X11")+" is a symbolic link")
		if _, err := e.h.Prune(e.ctx, 0, nil); err != nil {
			t.Fatal(err)
		}
		wantErr(t, e.h.Prepare(e.ctx, Artifact(t, "X11", Tree{Files: ManyFiles(3)}), nil), e.rel("X11")+" is a symbolic link")
		assertOutside(t, out)
		if got := e.current(); got != "r1" {
			t.Errorf("current -> %s", got)
		}
	})
	t.Run("leftover name", func(t *testing.T) {
		e := newEnv(t, f)
		e.prepare("r1", Tree{Files: ManyFiles(3)})
		out := outsideTree(t)
		plant(t, out, e.rel(engine.TempPrefix+"evil"))
		if err := e.h.Clean(e.ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(e.rel(engine.TempPrefix + "evil")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the leftover link was not removed: %v", err)
		}
		assertOutside(t, out)
	})
}

// testSpecialModeBits: a directory's sticky and setgid bits and a file's
// mode survive into the release.
func testSpecialModeBits(t *testing.T, f Factory) {
	e := newEnv(t, f)
	e.prepare("r1", Tree{
		Files: map[string]string{"tmp/x": "x", "shared-group/y": "y", "bin/run.sh": "#!/bin/sh\n"},
		Dirs:  map[string]fs.FileMode{"tmp": 0o777 | fs.ModeSticky, "shared-group": 0o775 | fs.ModeSetgid, "private": 0o700},
	})
	for d, want := range map[string]fs.FileMode{"tmp": 0o777 | fs.ModeSticky, "shared-group": 0o775 | fs.ModeSetgid, "private": 0o700} {
		fi, err := os.Lstat(e.rel("r1", d))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() & (fs.ModePerm | fs.ModeSticky | fs.ModeSetgid | fs.ModeSetuid); got != want {
			t.Errorf("%s: mode %v, want %v", d, got, want)
		}
	}
	if err := e.fresh().Verify(e.ctx, "r1"); err != nil {
		t.Error(err)
	}
}

// testFsynced: current's directory and revisions.log are fsynced by a
// switch, on every kind of host.
func testFsynced(t *testing.T, f Factory) {
	if f.Fsynced == nil {
		t.Skip("this kind of host gives no way to observe fsync")
	}
	e := newEnv(t, f)
	e.prepare("r1", Tree{Files: ManyFiles(3)})
	got := f.Fsynced(t, e.dir, func(h engine.Host) {
		if err := h.Switch(e.ctx, engine.SwitchInfo{Release: "r1"}); err != nil {
			t.Error(err)
		}
	})
	for _, want := range []string{filepath.Join(e.dir, engine.RevisionsLog), e.dir} {
		if !slices.Contains(got, want) {
			t.Errorf("%s was not fsynced by the switch; fsynced: %v", want, got)
		}
	}
}

// testPreparedFsynced: a release prepared with one file changed (the rest
// hard-linked, after a verification of the previous one, as a deploy does)
// has every one of its directories fsynced before it is renamed into place.
func testPreparedFsynced(t *testing.T, f Factory) {
	if f.Fsynced == nil {
		t.Skip("this kind of host gives no way to observe fsync")
	}
	e := newEnv(t, f)
	files := ManyFiles(40)
	e.prepare("r1", Tree{Files: files})
	e.switchTo("r1")
	files["d03/f0003.txt"] = "changed\n"
	a := Artifact(t, "r2", Tree{Files: files})
	got := f.Fsynced(t, e.dir, func(h engine.Host) {
		if err := h.Verify(e.ctx, "r1"); err != nil {
			t.Error(err)
		}
		if err := h.Prepare(e.ctx, a, nil); err != nil {
			t.Error(err)
		}
	})
	for _, p := range got {
		if strings.HasPrefix(p, SyncFS+e.rel()) {
			return // the file system holding the release was flushed whole
		}
	}
	dirs := map[string]bool{".": true}
	for name := range files {
		dirs[path.Dir(name)] = true
	}
	for d := range dirs {
		found := false
		for _, p := range got {
			rel, ok := strings.CutPrefix(p, e.rel()+"/"+engine.TempPrefix+"r2-")
			if _, sub, _ := strings.Cut(rel, "/"); ok && (sub == d || (d == "." && !strings.Contains(rel, "/"))) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("directory %s of r2 was not fsynced while it was prepared; fsynced: %v", d, got)
		}
	}
}

// SyncFS marks, in what Strace returns, the path given to syncfs(2): the
// whole file system holding it was made durable.
const SyncFS = "syncfs:"

// Strace runs fn while strace(1) follows the process pid and its threads
// and children, and returns the paths of the files and directories that
// were fsynced meanwhile (SyncFS before a path given to syncfs). It skips the test when strace is not installed
// (fails under CI=true) and when the process cannot be traced.
func Strace(t *testing.T, pid int, fn func()) []string {
	t.Helper()
	bin, err := exec.LookPath("strace")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("strace not found: apt-get install strace")
		}
		t.Skip("strace not found: apt-get install strace")
	}
	out := filepath.Join(t.TempDir(), "strace.out")
	cmd := exec.Command(bin, "-f", "-y", "-e", "trace=fsync,fdatasync,syncfs", "-o", out, "-p", strconv.Itoa(pid))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// strace says "Process N attached" once it traces pid; only then does
	// fn run. Its other messages are drained until it exits.
	sc := bufio.NewScanner(stderr)
	attached := false
	var said []string
	for !attached && sc.Scan() {
		said = append(said, sc.Text())
		attached = strings.Contains(sc.Text(), "attached")
	}
	drained := make(chan struct{})
	go func() {
		for sc.Scan() {
		}
		close(drained)
	}()
	if !attached {
		_ = cmd.Wait()
		<-drained
		t.Skipf("strace could not trace pid %d: %s", pid, strings.Join(said, "; "))
	}
	fn()
	_ = cmd.Process.Signal(os.Interrupt)
	<-drained
	_ = cmd.Wait()
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// 123 fsync(5</path/of/it>) = 0, or, when another thread's call came
	// in between, 123 fsync(5</path/of/it> <unfinished ...> and later
	// 123 <... fsync resumed>) = 0.
	var names []string
	pending := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		pid, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest = strings.TrimSpace(rest) // strace pads the pid column
		ok := strings.HasSuffix(rest, "= 0")
		switch {
		case strings.HasPrefix(rest, "<... fsync resumed>"), strings.HasPrefix(rest, "<... fdatasync resumed>"),
			strings.HasPrefix(rest, "<... syncfs resumed>"):
			if ok && pending[pid] != "" {
				names = append(names, pending[pid])
			}
			delete(pending, pid)
		case strings.HasPrefix(rest, "fsync("), strings.HasPrefix(rest, "fdatasync("), strings.HasPrefix(rest, "syncfs("):
			_, after, found := strings.Cut(rest, "<")
			name, _, found2 := strings.Cut(after, ">")
			if !found || !found2 {
				continue
			}
			if strings.HasPrefix(rest, "syncfs(") {
				name = SyncFS + name
			}
			if strings.HasSuffix(rest, "<unfinished ...>") {
				pending[pid] = name
			} else if ok {
				names = append(names, name)
			}
		}
	}
	if len(names) == 0 {
		t.Logf("strace saw no fsync; its output begins:\n%.2000s", b)
	}
	return names
}

// Survey is the case of the suite for hosts that survey
// (engine.Surveyor), which a kind of host may also run on its own (with
// hosts that survey another way): a survey reports what Clean, Inspect and
// Check would, case by case, and removes what Clean would; where the
// target is not complete its error is Check's.
func Survey(t *testing.T, f Factory) {
	const r1, r2 = "20261124080000", "20261125221000"
	// setup prepares r1 and r2 with r2 current, plants leftovers and a
	// shared/ directory, then damages the deploy_to with damage.
	setup := func(t *testing.T, damage func(e *env)) *env {
		e := newEnv(t, f)
		e.prepare(r1, Tree{Files: map[string]string{"a.txt": "a\n", "b/c.txt": "c\n", "l": "->a.txt"}})
		e.prepare(r2, Tree{Files: ManyFiles(3)})
		e.switchTo(r2)
		if err := os.MkdirAll(e.rel(engine.TempPrefix+"r3-abc", "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("releases/r3", filepath.Join(e.dir, engine.CurrentLink+engine.TempPrefix+"dead")); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(e.dir, "shared", "log"), 0o755); err != nil {
			t.Fatal(err)
		}
		if damage != nil {
			damage(e)
		}
		return e
	}
	tests := []struct {
		name   string
		damage func(e *env)
		target string
		// checked: the target's check counts (present, not current).
		checked bool
	}{
		{name: "target complete", target: r1, checked: true},
		{name: "no target", target: ""},
		{name: "target current", target: r2},
		{name: "target absent", target: "20261120000000"},
		{name: "target lacks a file", target: r1, checked: true, damage: func(e *env) { removeInRelease(e.t, e.rel(r1), "b/c.txt") }},
		{name: "target's file made writable", target: r1, checked: true, damage: func(e *env) {
			if err := os.Chmod(e.rel(r1, "a.txt"), 0o644); err != nil {
				e.t.Fatal(err)
			}
		}},
		{name: "target's symlink changed", target: r1, checked: true, damage: func(e *env) {
			removeInRelease(e.t, e.rel(r1), "l")
			if err := os.Symlink("b/c.txt", e.rel(r1, "l")); err != nil {
				e.t.Fatal(err)
			}
		}},
		{name: "target holds another release's manifest", target: r1, checked: true, damage: func(e *env) {
			b, err := os.ReadFile(e.rel(r2, engine.ManifestName))
			if err != nil {
				e.t.Fatal(err)
			}
			removeInRelease(e.t, e.rel(r1), engine.ManifestName)
			if err := os.WriteFile(e.rel(r1, engine.ManifestName), b, 0o444); err != nil {
				e.t.Fatal(err)
			}
		}},
		{name: "target's manifest is a symlink", target: r1, checked: true, damage: func(e *env) {
			removeInRelease(e.t, e.rel(r1), engine.ManifestName)
			if err := os.Symlink("../"+r2+"/"+engine.ManifestName, e.rel(r1, engine.ManifestName)); err != nil {
				e.t.Fatal(err)
			}
		}},
		{name: "target is a symlink", target: r1, damage: func(e *env) {
			if err := os.Rename(e.rel(r1), filepath.Join(e.dir, "elsewhere")); err != nil {
				e.t.Fatal(err)
			}
			if err := os.Symlink("../elsewhere", e.rel(r1)); err != nil {
				e.t.Fatal(err)
			}
		}},
		{name: "releases is a symlink", target: r1, damage: func(e *env) {
			if err := os.Rename(e.rel(), filepath.Join(e.dir, "rels")); err != nil {
				e.t.Fatal(err)
			}
			if err := os.Symlink("rels", e.rel()); err != nil {
				e.t.Fatal(err)
			}
		}},
		{name: "current is a directory", target: r1, damage: func(e *env) {
			cur := filepath.Join(e.dir, engine.CurrentLink)
			if err := os.Remove(cur); err != nil {
				e.t.Fatal(err)
			}
			if err := os.Mkdir(cur, 0o755); err != nil {
				e.t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// What the three say, on one copy of the state.
			want := setup(t, tt.damage)
			wantCheck := error(nil)
			if tt.checked {
				wantCheck = want.fresh().Check(want.ctx, tt.target)
			}
			wantSt, wantErr := want.fresh().Inspect(want.ctx)
			cleanErr := want.fresh().Clean(want.ctx)
			if wantErr == nil {
				wantErr = cleanErr
			}
			// What a survey says, on another.
			e := setup(t, tt.damage)
			s, ok := e.fresh().(engine.Surveyor)
			if !ok {
				t.Skip("this kind of host does not survey")
			}
			// The two copies' errors differ by their deploy_to only.
			same := func(got, exp error) bool {
				return (got == nil) == (exp == nil) && (got == nil || got.Error() == strings.ReplaceAll(exp.Error(), want.dir, e.dir))
			}
			st, check, err := s.Survey(e.ctx, tt.target)
			if !same(err, wantErr) {
				t.Fatalf("Survey err = %v, want Inspect's or Clean's: %v", err, wantErr)
			}
			if err != nil {
				return
			}
			if st.Current != wantSt.Current || !slices.Equal(st.Releases, wantSt.Releases) {
				t.Errorf("Survey = %+v, Inspect = %+v", st, wantSt)
			}
			if !same(check, wantCheck) {
				t.Errorf("Survey's check = %v, Check = %v", check, wantCheck)
			}
			if names := append(TempNames(t, e.dir), TempNames(t, e.rel())...); len(names) != 0 {
				t.Errorf("Survey left %v (Clean removes them)", names)
			}
			if _, err := os.Stat(filepath.Join(e.dir, "shared", "log")); err != nil {
				t.Errorf("Survey touched shared/: %v", err)
			}
		})
	}
	t.Run("missing deploy_to", func(t *testing.T) {
		e := newEnv(t, f)
		s, ok := e.h.(engine.Surveyor)
		if !ok {
			t.Skip("this kind of host does not survey")
		}
		st, check, err := s.Survey(e.ctx, r1)
		if err != nil || check != nil || st.Current != "" || len(st.Releases) != 0 {
			t.Fatalf("Survey = %+v, %v, %v", st, check, err)
		}
		if _, err := os.Lstat(e.dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Survey created deploy_to (%v)", err)
		}
	})
}

// removeInRelease removes name from the read-only release directory rel,
// as someone with a shell on the host would.
func removeInRelease(t *testing.T, rel, name string) {
	t.Helper()
	dir := filepath.Dir(filepath.Join(rel, name))
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(rel, name)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}
