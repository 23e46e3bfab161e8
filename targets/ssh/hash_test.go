package ssh

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestVerifyHashesWithOpenSSL: where the host has openssl, Verify hashes
// with it (and still catches a same-size edit); names openssl would print
// ambiguously go through sha256sum.
func TestVerifyHashesWithOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is missing on this host (apt-get install openssl): only sha256sum can be tested")
	}
	f := newFleet(t, 1, PoolOptions{})
	ctx := ctxT(t)
	h := f.hosts[0]
	files := map[string]string{"app.js": "console.log(1)", "odd name's $(x) *.txt": "quoted", "line\nbreak.txt": "newline"}
	for i := range sftpHashFiles { // more than Hash reads over SFTP
		files[fmt.Sprintf("more/f%02d.txt", i)] = fmt.Sprint(i)
	}
	if err := h.Prepare(ctx, release(t, "r1", files), nil); err != nil {
		t.Fatal(err)
	}
	if err := h.Verify(ctx, "r1"); err != nil {
		t.Fatalf("Verify of an intact release: %v", err)
	}
	if h.noOpenSSL.Load() {
		t.Fatal("openssl is installed but the host fell back to sha256sum")
	}
	p := filepath.Join(f.c.Servers[0].DeployTo, "releases/r1/odd name's $(x) *.txt")
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("QUOTED"), 0o444); err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, 0o444)
	if err := h.Verify(ctx, "r1"); err == nil || !strings.Contains(err.Error(), "odd name") {
		t.Fatalf("Verify after a same-size edit: %v", err)
	}
}

// TestHashSmallFilesOverSFTP: a few small files are read over SFTP and
// hashed here, a large one on the host, and a missing one fails.
func TestHashSmallFilesOverSFTP(t *testing.T) {
	f := newFleet(t, 1, PoolOptions{})
	ctx := ctxT(t)
	h := f.hosts[0]
	big := strings.Repeat("x", sftpHashSize+1)
	files := map[string]string{"a.txt": "small", "big.bin": big, "empty": ""}
	if err := h.Prepare(ctx, release(t, "r1", files), nil); err != nil {
		t.Fatal(err)
	}
	root := h.ReleasePath("r1")
	names := []string{root + "/a.txt", root + "/big.bin", root + "/empty"}
	var got []string
	err := h.run(ctx, "hash", func(ctx context.Context, r *remote) error {
		here, err := r.fs().hashHere(ctx, names)
		if err != nil {
			return err
		}
		if _, ok := here[names[1]]; ok || len(here) != 2 {
			return fmt.Errorf("hashed here: %v, want a.txt and empty only", here)
		}
		got, err = r.fs().Hash(ctx, names)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, content := range []string{"small", big, ""} {
		if want := fmt.Sprintf("%x", sha256.Sum256([]byte(content))); got[i] != want {
			t.Errorf("%s: %s, want %s", names[i], got[i], want)
		}
	}
	err = h.run(ctx, "hash", func(ctx context.Context, r *remote) error {
		_, err := r.fs().Hash(ctx, []string{root + "/missing"})
		return err
	})
	if err == nil {
		t.Error("Hash of a missing file succeeded")
	}
}

func TestParseOpenSSLDigest(t *testing.T) {
	h := strings.Repeat("ab", 32)
	got, err := parseOpenSSLDigest([]byte(h + " *a b *c\n" + h + " *-x\n"))
	if err != nil || got["a b *c"] != h || got["-x"] != h || len(got) != 2 {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, bad := range []string{"nohash *x\n", h + "  x\n", strings.ToUpper(h) + " *x\n"} {
		if _, err := parseOpenSSLDigest([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
