package ssh

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// An identity file others can read is used (a deploy that worked
// yesterday keeps working) but said once per pool, as OpenSSH refuses
// such a key; a 0600 one says nothing.
func TestLooseIdentityFileWarns(t *testing.T) {
	f := newFleet(t, 2, PoolOptions{})
	loose := filepath.Join(t.TempDir(), "id_loose")
	key, err := os.ReadFile(f.c.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(loose, key, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode  os.FileMode
		warns int
	}{{0o644, 1}, {0o600, 0}} {
		if err := os.Chmod(loose, tc.mode); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var warnings []string
		p := NewPool(PoolOptions{OnWarning: func(msg string) {
			mu.Lock()
			warnings = append(warnings, msg)
			mu.Unlock()
		}})
		for i, s := range f.c.Servers {
			tg := target(f.c, s)
			tg.IdentityFiles = []string{loose}
			if _, err := p.Host(string(rune('a'+i)), tg).Inspect(ctxT(t)); err != nil {
				t.Fatalf("mode %04o: inspect: %v", tc.mode, err)
			}
		}
		p.Close()
		mu.Lock()
		if len(warnings) != tc.warns || tc.warns > 0 && (!strings.Contains(warnings[0], loose) || !strings.Contains(warnings[0], "0644")) {
			t.Errorf("mode %04o: warnings %q, want %d naming the file and its mode", tc.mode, warnings, tc.warns)
		}
		mu.Unlock()
	}
}
