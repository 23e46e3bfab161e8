package local

import (
	"context"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"testing"

	"flightdeck/targets/layout"
	"flightdeck/targets/layout/layouttest"
)

// countingFS records the names each Hash call was asked for.
type countingFS struct {
	*FS
	hashed []string
}

func (c *countingFS) Hash(ctx context.Context, names []string) ([]string, error) {
	c.hashed = append(c.hashed, names...)
	return c.FS.Hash(ctx, names)
}

// TestVerifyHashesOnlyWhatChanged: a second verification hashes nothing;
// the next release, whose unchanged files are hard links to the first's,
// hashes only its new file; an edited file is hashed again.
func TestVerifyHashesOnlyWhatChanged(t *testing.T) {
	ctx := context.Background()
	h := newHost(t)
	files := manyFiles(20)
	prepared(t, h, "r1", files)
	layouttest.Age(t, h.ReleasePath("r1"))
	c := &countingFS{FS: &FS{}}
	lay := layout.New("web1", filepath.ToSlash(h.DeployTo()), layout.Options{})
	verify := func(id string) []string {
		t.Helper()
		c.hashed = nil
		if err := lay.Verify(ctx, c, id); err != nil {
			t.Fatalf("Verify %s: %v", id, err)
		}
		var rel []string
		for _, n := range c.hashed {
			rel = append(rel, path.Base(n))
		}
		slices.Sort(rel)
		return rel
	}
	if got := verify("r1"); len(got) != 20 {
		t.Fatalf("first Verify hashed %d files, want all 20", len(got))
	}
	if got := verify("r1"); len(got) != 0 {
		t.Fatalf("second Verify hashed %v, want nothing", got)
	}

	next := maps.Clone(files)
	next["d03/f0003.txt"] = "changed in r2\n"
	prepared(t, h, "r2", next)
	// Only the new file is aged: the others are r1's, linked.
	layouttest.Age(t, filepath.Join(h.ReleasePath("r2"), "d03", "f0003.txt"))
	if got := verify("r2"); !slices.Equal(got, []string{"f0003.txt"}) {
		t.Fatalf("Verify of r2 hashed %v, want only the changed f0003.txt", got)
	}
	if got := verify("r2"); len(got) != 0 {
		t.Fatalf("second Verify of r2 hashed %v, want nothing", got)
	}

	// An edit (owner makes the file writable and rewrites it) moves its
	// modification time: hashed again, and caught.
	p := filepath.Join(h.ReleasePath("r2"), "d05", "f0005.txt")
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("content of file 5\n"), 0o644); err != nil { // same content
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o444); err != nil {
		t.Fatal(err)
	}
	if got := verify("r2"); !slices.Equal(got, []string{"f0005.txt"}) {
		t.Fatalf("Verify after an edit hashed %v, want f0005.txt", got)
	}

	full := layout.New("web1", filepath.ToSlash(h.DeployTo()), layout.Options{FullVerify: true})
	c.hashed = nil
	if err := full.Verify(ctx, c, "r2"); err != nil {
		t.Fatal(err)
	}
	if len(c.hashed) != 20 {
		t.Errorf("full Verify hashed %d files, want 20", len(c.hashed))
	}
}
