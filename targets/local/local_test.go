package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"flightdeck/engine"
	"flightdeck/internal/syncbuf"
)

// writeTree creates files (path -> content) under dir; paths ending in
// "@" followed by a target are symlinks ("a/l@../x").
func writeTree(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// artifact builds an artifact from dir.
func artifact(t testing.TB, id, dir string) *engine.Artifact {
	t.Helper()
	m, err := engine.BuildManifest(dir, id)
	if err != nil {
		t.Fatal(err)
	}
	return &engine.Artifact{ID: id, Dir: dir, Manifest: m}
}

// manyFiles returns n files spread over 10 directories.
func manyFiles(n int) map[string]string {
	files := make(map[string]string, n)
	for i := range n {
		files[fmt.Sprintf("d%02d/f%04d.txt", i%10, i)] = fmt.Sprintf("content of file %d\n", i)
	}
	return files
}

func newHost(t testing.TB, opts ...Option) *Host {
	t.Helper()
	return New("web1", filepath.Join(t.TempDir(), "app"), opts...)
}

// prepared prepares release id from files on h and returns its artifact.
func prepared(t testing.TB, h *Host, id string, files map[string]string) *engine.Artifact {
	t.Helper()
	src := t.TempDir()
	writeTree(t, src, files)
	a := artifact(t, id, src)
	if err := h.Prepare(context.Background(), a, nil); err != nil {
		t.Fatalf("prepare %s: %v", id, err)
	}
	return a
}

func inode(t testing.TB, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// assertReadOnly fails if any regular file under root is writable.
func assertReadOnly(t *testing.T, root string) {
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

// tempNames lists names starting with the temporary prefix in dir.
func tempNames(t *testing.T, dir string) []string {
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

func TestPrepareIncrementalHardLinks(t *testing.T) {
	h := newHost(t)
	files := manyFiles(1000)
	files["bin/run"] = "#!/bin/sh\necho run\n"
	src := t.TempDir()
	writeTree(t, src, files)
	if err := os.Chmod(filepath.Join(src, "bin/run"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../shared/log", filepath.Join(src, "log")); err != nil {
		t.Fatal(err)
	}
	a1 := artifact(t, "r1", src)
	var p1 engine.Progress
	if err := h.Prepare(context.Background(), a1, func(p engine.Progress) { p1 = p }); err != nil {
		t.Fatal(err)
	}
	n, size := a1.Manifest.Files()
	if p1.FilesDone != n || p1.FilesTotal != n || p1.BytesDone != size || p1.BytesSent != size {
		t.Errorf("r1 final progress %+v, want all %d files / %d bytes sent", p1, n, size)
	}

	const changed = "d03/f0123.txt"
	if err := os.WriteFile(filepath.Join(src, changed), []byte("new content\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a2 := artifact(t, "r2", src)
	var p2 engine.Progress
	calls := 0
	if err := h.Prepare(context.Background(), a2, func(p engine.Progress) { p2 = p; calls++ }); err != nil {
		t.Fatal(err)
	}
	if p2.FilesDone != n || p2.BytesSent != int64(len("new content\n")) {
		t.Errorf("r2 final progress %+v, want %d files done and only the changed file sent", p2, n)
	}
	if calls > n/progressFiles+3 {
		t.Errorf("%d progress callbacks for %d files: not throttled", calls, n)
	}

	r1, r2 := h.ReleasePath("r1"), h.ReleasePath("r2")
	shared := 0
	for p := range files {
		i1 := inode(t, filepath.Join(r1, p))
		i2 := inode(t, filepath.Join(r2, p))
		if p == changed {
			if i1 == i2 {
				t.Errorf("%s: changed file shares its inode with r1", p)
			}
			continue
		}
		if i1 != i2 {
			t.Errorf("%s: unchanged file was copied, not linked", p)
			continue
		}
		shared++
	}
	if shared != len(files)-1 {
		t.Errorf("%d files share their inode, want %d", shared, len(files)-1)
	}
	for _, r := range []string{r1, r2} {
		assertReadOnly(t, r)
		if _, err := readManifest(r); err != nil {
			t.Errorf("manifest of %s: %v", r, err)
		}
		if fi, err := os.Stat(filepath.Join(r, "bin/run")); err != nil || fi.Mode().Perm() != 0o555 {
			t.Errorf("bin/run mode: %v, %v; want r-xr-xr-x", fi.Mode(), err)
		}
		if l, err := os.Readlink(filepath.Join(r, "log")); err != nil || l != "../shared/log" {
			t.Errorf("log symlink: %q, %v", l, err)
		}
	}
	for _, id := range []string{"r1", "r2"} {
		if err := h.Verify(context.Background(), id); err != nil {
			t.Error(err)
		}
	}
	if got := tempNames(t, h.releasesDir()); len(got) != 0 {
		t.Errorf("temporary dirs left: %v", got)
	}
	if _, err := os.Stat(filepath.Join(h.DeployTo(), engine.SharedDir)); err != nil {
		t.Errorf("shared/ not created: %v", err)
	}
}

func TestSyncModes(t *testing.T) {
	tests := []struct {
		name  string
		mode  SyncMode
		files int
	}{
		{"auto, few files (fsync each)", SyncAuto, 10},
		{"auto, many files (syncfs)", SyncAuto, syncAutoFiles + 1},
		{"syncfs", SyncFS, 10},
		{"fsync each", SyncEachFile, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHost(t, WithSyncMode(tt.mode))
			prepared(t, h, "r1", manyFiles(tt.files))
			if err := h.Verify(context.Background(), "r1"); err != nil {
				t.Fatal(err)
			}
			assertReadOnly(t, h.ReleasePath("r1"))
		})
	}
}

func TestPrepareLinksOnlySameMode(t *testing.T) {
	h := newHost(t)
	prepared(t, h, "r1", map[string]string{"a.sh": "same\n"})
	src := t.TempDir()
	writeTree(t, src, map[string]string{"a.sh": "same\n", "b.txt": "same\n"})
	if err := os.Chmod(filepath.Join(src, "a.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := h.Prepare(context.Background(), artifact(t, "r2", src), nil); err != nil {
		t.Fatal(err)
	}
	r1a := inode(t, filepath.Join(h.ReleasePath("r1"), "a.sh"))
	r2a := inode(t, filepath.Join(h.ReleasePath("r2"), "a.sh"))
	r2b := inode(t, filepath.Join(h.ReleasePath("r2"), "b.txt"))
	if r1a == r2a {
		t.Error("r2/a.sh (0755) shares the inode of r1/a.sh (0644): its mode would be wrong")
	}
	if r1a != r2b {
		t.Error("r2/b.txt (0644, same content) was not linked to r1/a.sh")
	}
	if err := h.Verify(context.Background(), "r2"); err != nil {
		t.Error(err)
	}
}

func TestPrepareDoesNotLinkTamperedFile(t *testing.T) {
	h := newHost(t)
	files := map[string]string{"a.txt": "original\n", "b.txt": "kept\n"}
	prepared(t, h, "r1", files)
	tampered := filepath.Join(h.ReleasePath("r1"), "a.txt")
	if err := os.Chmod(tampered, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tampered, []byte("ORIGINAL\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	prepared(t, h, "r2", files)
	if inode(t, tampered) == inode(t, filepath.Join(h.ReleasePath("r2"), "a.txt")) {
		t.Error("r2/a.txt was linked to a writable (tampered) file of r1")
	}
	if inode(t, filepath.Join(h.ReleasePath("r1"), "b.txt")) != inode(t, filepath.Join(h.ReleasePath("r2"), "b.txt")) {
		t.Error("r2/b.txt was not linked")
	}
	if err := h.Verify(context.Background(), "r2"); err != nil {
		t.Error(err)
	}
}

func TestPrepareIdempotent(t *testing.T) {
	h := newHost(t)
	files := manyFiles(50)
	a := prepared(t, h, "r1", files)
	before := inode(t, filepath.Join(h.ReleasePath("r1"), "d01/f0001.txt"))

	var last engine.Progress
	if err := h.Prepare(context.Background(), a, func(p engine.Progress) { last = p }); err != nil {
		t.Fatal(err)
	}
	if last.BytesSent != 0 || last.FilesDone != 50 || last.FilesTotal != 50 {
		t.Errorf("second prepare progress %+v, want 50/50 files and 0 bytes sent", last)
	}
	if after := inode(t, filepath.Join(h.ReleasePath("r1"), "d01/f0001.txt")); after != before {
		t.Error("second prepare rewrote a file")
	}

	// The same id with other content is refused, and nothing is changed.
	files["d01/f0001.txt"] = "other\n"
	other := t.TempDir()
	writeTree(t, other, files)
	err := h.Prepare(context.Background(), artifact(t, "r1", other), nil)
	if err == nil || !strings.Contains(err.Error(), "different content") {
		t.Errorf("reused id: err = %v, want a 'different content' error", err)
	}
	if err := h.Verify(context.Background(), "r1"); err != nil {
		t.Error(err)
	}
}

func TestPrepareRejects(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{"a": "x"})
	good := artifact(t, "r1", src).Manifest.Entries[0]
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHost(t)
			a := &engine.Artifact{ID: tt.id, Dir: src, Manifest: &engine.Manifest{Release: tt.id, Entries: tt.entries}}
			err := h.Prepare(context.Background(), a, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			st, err := h.Inspect(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Releases) != 0 || len(tempNames(t, h.releasesDir())) != 0 {
				t.Errorf("after a refused prepare: releases %v, temp %v", st.Releases, tempNames(t, h.releasesDir()))
			}
		})
	}
}

func TestSwitch(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 22, 10, 0, 0, time.UTC)
	now := t0
	h := newHost(t, WithClock(func() time.Time { return now }))
	ctx := context.Background()
	prepared(t, h, "r1", manyFiles(5))
	prepared(t, h, "r2", manyFiles(6))

	if err := h.Switch(ctx, engine.SwitchInfo{Release: "r1", Actor: "alice"}); err != nil {
		t.Fatal(err)
	}
	now = t0.Add(time.Minute)
	if err := h.Switch(ctx, engine.SwitchInfo{Release: "r2", Actor: "bob smith", Action: "deploy"}); err != nil {
		t.Fatal(err)
	}
	target, err := os.Readlink(filepath.Join(h.DeployTo(), "current"))
	if err != nil || target != "releases/r2" {
		t.Fatalf("current -> %q (%v), want releases/r2", target, err)
	}
	log, err := os.ReadFile(filepath.Join(h.DeployTo(), engine.RevisionsLog))
	if err != nil {
		t.Fatal(err)
	}
	want := engine.RevisionLine(t0, engine.SwitchInfo{Release: "r1", Actor: "alice"}) + "\n" +
		engine.RevisionLine(t0.Add(time.Minute), engine.SwitchInfo{Release: "r2", Previous: "r1", Actor: "bob smith"}) + "\n"
	if string(log) != want {
		t.Errorf("revisions.log:\n%s\nwant:\n%s", log, want)
	}
	if !strings.Contains(string(log), "deploy release=r2 previous=r1 actor=bob_smith") {
		t.Errorf("revisions.log lacks the r2 line: %s", log)
	}
	if got := tempNames(t, h.DeployTo()); len(got) != 0 {
		t.Errorf("temporary links left: %v", got)
	}
	st, err := h.Inspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Current != "r2" || !slices.Equal(st.Releases, []string{"r1", "r2"}) {
		t.Errorf("Inspect = %+v", st)
	}

	// Refused switches leave current alone.
	if err := os.Mkdir(h.ReleasePath("legacy"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"r9", "legacy", "../r1"} {
		if err := h.Switch(ctx, engine.SwitchInfo{Release: id}); err == nil {
			t.Errorf("switch to %s succeeded", id)
		}
	}
	if target, _ := os.Readlink(filepath.Join(h.DeployTo(), "current")); target != "releases/r2" {
		t.Errorf("current -> %q after refused switches", target)
	}
}

func TestPrepareCancelled(t *testing.T) {
	h := newHost(t)
	src := t.TempDir()
	writeTree(t, src, manyFiles(600))
	a := artifact(t, "r1", src)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := h.Prepare(ctx, a, func(p engine.Progress) {
		if p.FilesDone >= p.FilesTotal/2 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if _, err := os.Lstat(h.ReleasePath("r1")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("releases/r1 exists after a cancelled prepare (%v)", err)
	}
	if got := tempNames(t, h.releasesDir()); len(got) != 0 {
		t.Errorf("temporary dir left after cancel: %v", got)
	}
	if err := h.Prepare(context.Background(), a, nil); err != nil {
		t.Fatal(err)
	}
	if err := h.Verify(context.Background(), "r1"); err != nil {
		t.Fatal(err)
	}
}

// crashEnv tells the test binary, re-executed by TestPrepareCrash, to
// prepare a release and SIGKILL itself halfway.
const crashEnv = "FLIGHTDECK_LOCAL_CRASH"

func TestCrashHelper(t *testing.T) {
	spec := os.Getenv(crashEnv)
	if spec == "" {
		t.Skip("helper process for TestPrepareCrash")
	}
	deployTo, src, _ := strings.Cut(spec, "\n")
	h := New("crash", deployTo)
	a := artifact(t, "r1", src)
	err := h.Prepare(context.Background(), a, func(p engine.Progress) {
		if p.FilesDone >= p.FilesTotal/2 {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	})
	t.Fatalf("prepare returned %v instead of being killed", err)
}

func TestPrepareCrash(t *testing.T) {
	h := newHost(t)
	src := t.TempDir()
	writeTree(t, src, manyFiles(600))

	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$")
	cmd.Env = append(os.Environ(), crashEnv+"="+h.DeployTo()+"\n"+src)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper was not killed: %v\n%s", err, out)
	}
	if _, err := os.Lstat(h.ReleasePath("r1")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("releases/r1 exists after a crash mid-prepare (%v)", err)
	}
	left := tempNames(t, h.releasesDir())
	if len(left) != 1 {
		t.Fatalf("want one leftover temporary dir, got %v", left)
	}
	assertReadOnly(t, filepath.Join(h.releasesDir(), left[0]))

	st, err := h.Inspect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Current != "" || len(st.Releases) != 0 {
		t.Errorf("Inspect after crash = %+v, want nothing", st)
	}
	if got := tempNames(t, h.releasesDir()); len(got) != 0 {
		t.Errorf("Inspect left %v", got)
	}
	prepared(t, h, "r1", manyFiles(600))
	if err := h.Verify(context.Background(), "r1"); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyDetects(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, root string)
		want   string
	}{
		{"intact", func(*testing.T, string) {}, ""},
		{"edited file", func(t *testing.T, root string) {
			p := filepath.Join(root, "d02/f0002.txt")
			if err := os.Chmod(p, 0o644); err != nil {
				t.Fatal(err)
			}
			// Same length, different bytes: only the hash can tell.
			if err := os.WriteFile(p, []byte("CONTENT OF FILE 2\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, 0o444); err != nil {
				t.Fatal(err)
			}
		}, "d02/f0002.txt: sha256"},
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
			h := newHost(t)
			src := t.TempDir()
			writeTree(t, src, manyFiles(10))
			if err := os.Symlink("../shared/log", filepath.Join(src, "log")); err != nil {
				t.Fatal(err)
			}
			if err := h.Prepare(context.Background(), artifact(t, "r1", src), nil); err != nil {
				t.Fatal(err)
			}
			tt.damage(t, h.ReleasePath("r1"))
			err := h.Verify(context.Background(), "r1")
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("intact release: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if err := newHost(t).Verify(context.Background(), "nope"); err == nil {
		t.Error("verify of a missing release succeeded")
	}
}

func TestPrune(t *testing.T) {
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
			ctx := context.Background()
			h := newHost(t)
			files := manyFiles(20)
			for i := 1; i <= 5; i++ {
				files["version"] = strconv.Itoa(i)
				prepared(t, h, "r"+strconv.Itoa(i), files)
			}
			// A read-only directory must not stop removal either.
			if err := os.Chmod(filepath.Join(h.ReleasePath("r1"), "d01"), 0o555); err != nil {
				t.Fatal(err)
			}
			if err := h.Switch(ctx, engine.SwitchInfo{Release: tt.current}); err != nil {
				t.Fatal(err)
			}
			removed, err := h.Prune(ctx, tt.keep, tt.protect)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(removed, tt.removed) {
				t.Errorf("removed %v, want %v", removed, tt.removed)
			}
			st, err := h.Inspect(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(st.Releases, tt.left) || st.Current != tt.current {
				t.Errorf("after prune: %+v, want releases %v current %s", st, tt.left, tt.current)
			}
			if got := tempNames(t, h.releasesDir()); len(got) != 0 {
				t.Errorf("temporary dirs left: %v", got)
			}
			// Files shared by hard links with removed releases are intact.
			for _, id := range st.Releases {
				if err := h.Verify(ctx, id); err != nil {
					t.Error(err)
				}
			}
		})
	}
	if _, err := newHost(t).Prune(context.Background(), -1, nil); err == nil {
		t.Error("negative keep accepted")
	}
}

func TestInspect(t *testing.T) {
	ctx := context.Background()
	t.Run("missing deploy_to", func(t *testing.T) {
		h := newHost(t)
		st, err := h.Inspect(ctx)
		if err != nil || st.Current != "" || len(st.Releases) != 0 {
			t.Fatalf("Inspect = %+v, %v", st, err)
		}
		if _, err := os.Lstat(h.DeployTo()); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Inspect created deploy_to (%v)", err)
		}
	})
	t.Run("leftovers removed, hidden and temp names ignored", func(t *testing.T) {
		h := newHost(t)
		prepared(t, h, "20261125221000", manyFiles(3))
		prepared(t, h, "20261124080000", manyFiles(3))
		rel := h.releasesDir()
		leftover := filepath.Join(rel, engine.TempPrefix+"r3-abc")
		writeTree(t, leftover, map[string]string{"sub/f": "x"})
		if err := os.Chmod(filepath.Join(leftover, "sub/f"), 0o444); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(rel, ".git"), 0o755); err != nil {
			t.Fatal(err)
		}
		writeTree(t, rel, map[string]string{"README": "not a release"})
		strayLink := filepath.Join(h.DeployTo(), "current"+engine.TempPrefix+"dead")
		if err := os.Symlink("releases/r3", strayLink); err != nil {
			t.Fatal(err)
		}
		// An absolute current link (written by other tools) is understood.
		if err := os.Symlink(h.ReleasePath("20261124080000"), filepath.Join(h.DeployTo(), "current")); err != nil {
			t.Fatal(err)
		}
		st, err := h.Inspect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := engine.HostStatus{Current: "20261124080000", Releases: []string{"20261124080000", "20261125221000"}}
		if st.Current != want.Current || !slices.Equal(st.Releases, want.Releases) {
			t.Errorf("Inspect = %+v, want %+v", st, want)
		}
		for _, p := range []string{leftover, strayLink} {
			if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("leftover %s not removed (%v)", p, err)
			}
		}
		if _, err := os.Stat(filepath.Join(rel, ".git")); err != nil {
			t.Errorf("hidden dir was touched: %v", err)
		}
	})
	t.Run("current outside releases", func(t *testing.T) {
		h := newHost(t)
		if err := os.MkdirAll(h.DeployTo(), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/etc", filepath.Join(h.DeployTo(), "current")); err != nil {
			t.Fatal(err)
		}
		if _, err := h.Inspect(ctx); err == nil || !strings.Contains(err.Error(), "outside") {
			t.Errorf("err = %v, want 'outside'", err)
		}
	})
}

func TestExec(t *testing.T) {
	h := newHost(t)
	prepared(t, h, "r1", map[string]string{"VERSION": "1\n"})
	tests := []struct {
		name    string
		req     engine.ExecRequest
		wantOut string
		wantErr string
	}{
		{"env and output", engine.ExecRequest{Command: `echo "v=$RELEASE_VERSION k=$KEY"; echo err >&2`, Env: map[string]string{"RELEASE_VERSION": "r1", "KEY": "a b"}}, "v=r1 k=a b\nerr\n", ""},
		{"dir defaults to the release", engine.ExecRequest{Command: "cat VERSION", Env: map[string]string{"RELEASE_VERSION": "r1"}}, "1\n", ""},
		{"dir defaults to deploy_to", engine.ExecRequest{Command: "ls -d releases"}, "releases\n", ""},
		{"explicit dir", engine.ExecRequest{Command: "pwd", Dir: "/"}, "/\n", ""},
		{"non-zero exit", engine.ExecRequest{Command: "echo failing; exit 3"}, "failing\n", "exit status 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out syncbuf.Buffer
			tt.req.Output = &out
			err := h.Exec(context.Background(), tt.req)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
			if out.String() != tt.wantOut {
				t.Errorf("output %q, want %q", out.String(), tt.wantOut)
			}
		})
	}
}

func TestExecTimeoutKillsGroup(t *testing.T) {
	h := New("web1", t.TempDir())
	pidFile := filepath.Join(t.TempDir(), "pid")
	var out syncbuf.Buffer
	start := time.Now()
	err := h.Exec(context.Background(), engine.ExecRequest{
		Command: `sleep 60 & echo $! > "$PIDFILE"; echo started; wait`,
		Env:     map[string]string{"PIDFILE": pidFile},
		Timeout: 500 * time.Millisecond,
		Output:  &out,
	})
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if elapsed := time.Since(start); elapsed > 30*time.Second {
		t.Fatalf("Exec returned after %v: the sleep was waited for", elapsed)
	}
	if !strings.Contains(out.String(), "started") {
		t.Errorf("output %q not streamed", out.String())
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("sleep child %d still alive after the timeout", pid)
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline, not synchronisation
	}
}

// processAlive reports whether pid exists and is not a zombie (an orphan
// may wait for a reaper that a container's init never runs).
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestExecCancel(t *testing.T) {
	h := New("web1", t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	var out syncbuf.Buffer
	done := make(chan error, 1)
	go func() {
		done <- h.Exec(ctx, engine.ExecRequest{Command: "echo ready; sleep 60", Output: &out})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "ready") {
		if time.Now().After(deadline) {
			t.Fatal("command did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Exec did not return after cancel")
	}
}
