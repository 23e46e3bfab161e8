package ssh

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

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
