package ssh

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"flightdeck/engine"
	"flightdeck/targets/layout/layouttest"
)

// warmHost is a host of a pool of its own whose connection already runs a
// command shell (as after any command, or through the keeper): a survey
// then lists the deploy_to with one command.
func warmHost(t *testing.T, f *fleet, name, deployTo string) *Host {
	t.Helper()
	p := NewPool(PoolOptions{})
	t.Cleanup(func() { p.Close() })
	tg := target(f.c, f.c.Servers[0])
	tg.DeployTo = deployTo
	h := p.Host(name, tg)
	warmUpShell(t, h)
	return h
}

// warmUpShell has h's connection run a command shell, as after any command.
func warmUpShell(t *testing.T, h *Host) {
	t.Helper()
	onHost(t, h, func(r *remote) error {
		_, err := r.output("true")
		return err
	})
}

// TestSurveyFromOneListing: with a shell running, a survey is the layout
// conformance case's answers (what Clean, Inspect and Check say) from one
// command on the host.
func TestSurveyFromOneListing(t *testing.T) {
	f := newFleet(t, 1, PoolOptions{})
	layouttest.Survey(t, layouttest.Factory{
		New: func(t *testing.T, name, deployTo string) engine.Host { return warmHost(t, f, name, deployTo) },
	})

	// One command, whatever the release holds.
	dir := filepath.Join(t.TempDir(), "app")
	setup := warmHost(t, f, "web1", dir)
	ctx := ctxT(t)
	for _, id := range []string{"r1", "r2"} {
		if err := setup.Prepare(ctx, release(t, id, layouttest.ManyFiles(40)), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := setup.Switch(ctx, engine.SwitchInfo{Release: "r2"}); err != nil {
		t.Fatal(err)
	}
	h := warmHost(t, f, "web1", dir)
	runs := func() (n uint64) {
		onHost(t, h, func(r *remote) error { n = r.shells.runs.Load(); return nil })
		return n
	}
	before := runs()
	st, check, err := h.Survey(ctx, "r1")
	if err != nil || check != nil || st.Current != "r2" || !slices.Equal(st.Releases, []string{"r1", "r2"}) {
		t.Fatalf("Survey = %+v, %v, %v", st, check, err)
	}
	if n := runs() - before; n != 1 {
		t.Errorf("the survey ran %d commands on the host, want one", n)
	}
}

// TestListDeployToListsOnlyWhatASurveyReads: the listing holds deploy_to's
// entries, releases/'s, and what is below the release asked for, nothing
// below shared/ or the other releases, whatever characters deploy_to's
// path holds (find's patterns are escaped); without a release, nothing
// below releases/ and no digest.
func TestListDeployToListsOnlyWhatASurveyReads(t *testing.T) {
	f := newFleet(t, 1, PoolOptions{})
	dir := filepath.Join(t.TempDir(), `dep[1]*? \x`)
	setup := warmHost(t, f, "web1", dir)
	ctx := ctxT(t)
	for _, id := range []string{"r1", "r2"} {
		if err := setup.Prepare(ctx, release(t, id, map[string]string{"a/b.txt": id, "l": "->a/b.txt"}), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := setup.Switch(ctx, engine.SwitchInfo{Release: "r2"}); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "shared", "log"), 0o755); err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(filepath.Join(dir, "releases", "r1", engine.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	h := warmHost(t, f, "web1", dir)
	for _, tt := range []struct {
		release string
		want    []string
	}{
		{"r1", []string{engine.CurrentLink, "releases", "releases/r1", "releases/r1/" + engine.ManifestName,
			"releases/r1/a", "releases/r1/a/b.txt", "releases/r1/l", "releases/r2", "revisions.log", "shared"}},
		{"", []string{engine.CurrentLink, "releases", "releases/r1", "releases/r2", "revisions.log", "shared"}},
	} {
		var got []string
		onHost(t, h, func(r *remote) error {
			tree, sum, summed, err := r.fs().ListDeployTo(ctx, dir, tt.release)
			if err != nil {
				return err
			}
			for p, e := range tree.All() {
				if strings.HasPrefix(p, "releases/.") {
					continue // the verification record, if any
				}
				got = append(got, p)
				switch p {
				case engine.CurrentLink:
					if e.Link != "releases/r2" {
						t.Errorf("current links to %q", e.Link)
					}
				case "releases/r1/l":
					if e.Link != "a/b.txt" {
						t.Errorf("l links to %q", e.Link)
					}
				case "releases/r1/a/b.txt":
					if e.Stamp.Size != 2 || e.Stamp.Perm != 0o444 {
						t.Errorf("b.txt: %+v", e.Stamp)
					}
				}
			}
			if want := tt.release != ""; summed != want {
				t.Errorf("release %q: summed %v", tt.release, summed)
			} else if summed && sum != sha256.Sum256(manifest) {
				t.Errorf("the digest is not the manifest's")
			}
			return nil
		})
		if !slices.Equal(got, tt.want) {
			t.Errorf("release %q: listed %q, want %q", tt.release, got, tt.want)
		}
	}
}

// TestManifestDigestByIdentity: a release manifest hashed on its host is
// not hashed again while find lists it with the same identity (device,
// inode, size, ctime), in this process or the next one with the same
// control directory; one changed within the racy margin is not recorded,
// and one changed since (its content rewritten, size and mtime kept) is
// read and checked again.
func TestManifestDigestByIdentity(t *testing.T) {
	f := newFleet(t, 1, PoolOptions{})
	dir := filepath.Join(t.TempDir(), "app")
	setup := warmHost(t, f, "web1", dir)
	ctx := ctxT(t)
	for _, id := range []string{"r1", "r2"} {
		if err := setup.Prepare(ctx, release(t, id, map[string]string{"a/b.txt": id, "VERSION": id}), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := setup.Switch(ctx, engine.SwitchInfo{Release: "r2"}); err != nil {
		t.Fatal(err)
	}
	manifestPath := filepath.Join(dir, "releases", "r1", engine.ManifestName)
	manifest, err := os.ReadFile(manifestPath)
	if err != nil {
		t.Fatal(err)
	}
	control := filepath.Join(t.TempDir(), "ctl")
	if err := os.Mkdir(control, 0o700); err != nil {
		t.Fatal(err)
	}
	hostOf := func() (*Pool, *Host) {
		p := NewPool(PoolOptions{ControlDir: control})
		t.Cleanup(func() { p.Close() })
		tg := target(f.c, f.c.Servers[0])
		tg.DeployTo = dir
		h := p.Host("web1", tg)
		warmUpShell(t, h)
		return p, h
	}
	list := func(h *Host) (sum [32]byte, summed bool) {
		t.Helper()
		onHost(t, h, func(r *remote) error {
			var err error
			_, sum, summed, err = r.fs().ListDeployTo(ctx, dir, "r1")
			return err
		})
		return sum, summed
	}
	key := func(h *Host) sumKey { return sumKey{h.t.Key(), manifestPath} }

	// Touched just now (chmod moves the ctime): hashed, not recorded.
	p1, h1 := hostOf()
	if err := os.Chmod(manifestPath, 0o444); err != nil {
		t.Fatal(err)
	}
	touched := time.Now()
	if sum, summed := list(h1); !summed || sum != sha256.Sum256(manifest) {
		t.Fatalf("a fresh manifest: summed %v, digest right %v", summed, sum == sha256.Sum256(manifest))
	}
	if _, _, ok := p1.sums.lookup(key(h1)); ok {
		// Only a find that started within the margin must see it.
		if took := time.Since(touched); took < racyMarginForTests {
			t.Fatalf("a manifest changed %v before it was listed was recorded", took)
		}
		p1.sums.forget(key(h1))
	}
	// The behaviour under test is the clock's: the margin must pass.
	time.Sleep(2 * racyMarginForTests)
	for i := range 2 {
		if sum, summed := list(h1); !summed || sum != sha256.Sum256(manifest) {
			t.Fatalf("listing %d: summed %v", i, summed)
		}
	}
	if n := p1.sums.hits.Load(); n != 1 {
		t.Fatalf("second listing: %d digests from the record, want 1 (the first hashes and records)", n)
	}
	p1.Close()
	if fi, err := os.Stat(filepath.Join(control, sumsFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("record kept in the control directory: %v, %v", fi, err)
	}

	// The next process finds the digest in the control directory.
	p2, h2 := hostOf()
	if sum, summed := list(h2); !summed || sum != sha256.Sum256(manifest) || p2.sums.hits.Load() != 1 {
		t.Fatalf("next process: summed %v, digest right %v, hits %d", summed, sum == sha256.Sum256(manifest), p2.sums.hits.Load())
	}

	// Rewritten with its size and modification time kept: the identity
	// moved (ctime), so the recorded digest is not given, and a survey
	// checks r1 against what its manifest now says.
	fi, err := os.Stat(manifestPath)
	if err != nil {
		t.Fatal(err)
	}
	tampered := []byte(strings.Replace(string(manifest), `"a/b.txt"`, `"a/c.txt"`, 1))
	if len(tampered) != len(manifest) || string(tampered) == string(manifest) {
		t.Fatal("the manifest does not name a/b.txt")
	}
	if err := os.Chmod(manifestPath, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(manifestPath, tampered, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(manifestPath, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(manifestPath, 0o444); err != nil {
		t.Fatal(err)
	}
	if _, summed := list(h2); summed {
		t.Fatal("the recorded digest was given for a rewritten manifest")
	}
	if _, _, ok := p2.sums.lookup(key(h2)); ok {
		t.Fatal("the record of a rewritten manifest was kept")
	}
	if sum, summed := list(h2); !summed || sum != sha256.Sum256(tampered) {
		t.Fatalf("the rewritten manifest hashed: summed %v, its digest %v", summed, sum == sha256.Sum256(tampered))
	}
	if _, check, err := h2.Survey(ctx, "r1"); err != nil || check == nil || !strings.Contains(check.Error(), "a/c.txt") {
		t.Fatalf("survey after the rewrite: check %v, err %v; want r1 found incomplete (a/c.txt)", check, err)
	}

	// A symlink in its place is hashed through, and never recorded: its
	// own identity says nothing of the file it names.
	elsewhere := filepath.Join(t.TempDir(), "manifest.json")
	if err := os.WriteFile(elsewhere, manifest, 0o444); err != nil {
		t.Fatal(err)
	}
	relDir := filepath.Dir(manifestPath)
	if err := os.Chmod(relDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(manifestPath); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, manifestPath); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(relDir, 0o555); err != nil {
		t.Fatal(err)
	}
	p2.sums.forget(key(h2))
	time.Sleep(2 * racyMarginForTests) // as above: past the margin
	for i := range 2 {
		if sum, summed := list(h2); !summed || sum != sha256.Sum256(manifest) {
			t.Fatalf("symlinked manifest, listing %d: summed %v", i, summed)
		}
		if _, _, ok := p2.sums.lookup(key(h2)); ok {
			t.Fatalf("symlinked manifest, listing %d: recorded", i)
		}
	}
}

// racyMarginForTests is stampClause's margin.
const racyMarginForTests = 100 * time.Millisecond

func TestParseSummed(t *testing.T) {
	sum := sha256.Sum256([]byte("m"))
	sumLine := hex.EncodeToString(sum[:]) + "  -\n"
	rec := func(head, link, name string) string { return head + "\x00" + link + "\x00" + name + "\x00" }
	a := rec("d 755 4096", "", "a")
	m := rec("f 444 10", "", "a/.m")
	odd := rec("l 777 5", "=x", "=y") // a link and a name that start with '='
	for _, tt := range []struct {
		name    string
		out     string
		stamp   string
		stamped bool
		summed  bool
		entries []string
		err     bool
	}{
		{name: "stamp then digest", out: a + "=1 2 10 3.5\x00" + m + odd + sumLine, stamp: "1 2 10 3.5", stamped: true, summed: true, entries: []string{"=y", "a", "a/.m"}},
		{name: "stamp first", out: "=1 2 10 3.5\x00" + m + a, stamp: "1 2 10 3.5", stamped: true, entries: []string{"a", "a/.m"}},
		{name: "recent", out: odd + "=\x00" + m + sumLine, stamped: true, summed: true, entries: []string{"=y", "a/.m"}},
		{name: "fields that start with '=' are not stamps", out: odd + a, entries: []string{"=y", "a"}},
		{name: "digest alone", out: sumLine, summed: true},
		{name: "nothing", out: ""},
		{name: "not a digest", out: a + "sha256sum: x\n", err: true},
		{name: "a short record", out: "f 444 1\x00\x00", err: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, err := parseSummed([]byte(tt.out))
			if tt.err {
				if err == nil {
					t.Fatalf("no error for %q", tt.out)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if l.stamp != tt.stamp || l.stamped != tt.stamped || l.summed != tt.summed || (l.summed && l.sum != sum) {
				t.Errorf("stamp %q/%v summed %v, want %q/%v %v", l.stamp, l.stamped, l.summed, tt.stamp, tt.stamped, tt.summed)
			}
			var got []string
			for p := range l.tree.All() {
				got = append(got, p)
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.entries) {
				t.Errorf("entries %q, want %q", got, tt.entries)
			}
		})
	}
}
