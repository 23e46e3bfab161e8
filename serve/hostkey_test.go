package serve

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

func TestHostKeyPersists(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state", HostKeyName)
	s1, created, err := LoadOrCreateHostKey(p)
	if err != nil || !created {
		t.Fatalf("first start: created %v, %v", created, err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode().Perm(), err)
	}
	if s1.PublicKey().Type() != gossh.KeyAlgoED25519 {
		t.Fatalf("key type %s", s1.PublicKey().Type())
	}
	s2, created, err := LoadOrCreateHostKey(p)
	if err != nil || created {
		t.Fatalf("second start: created %v, %v", created, err)
	}
	if a, b := gossh.FingerprintSHA256(s1.PublicKey()), gossh.FingerprintSHA256(s2.PublicKey()); a != b {
		t.Fatalf("host key changed across restarts: %s then %s", a, b)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateHostKey(p); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("a world-readable key must be refused: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".tmp-*"))
	if len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}
