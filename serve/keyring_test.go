package serve

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"flightdeck/engine"
	"flightdeck/internal/syncbuf"
)

func TestKeysFileChangesApplyWithoutRestart(t *testing.T) {
	alice := newUser(t, "alice", engine.RoleOperator)
	bob := newUser(t, "bob", engine.RoleOperator)
	path := filepath.Join(t.TempDir(), "authorized_keys")
	writeKeys(t, path, alice)
	keys, err := LoadKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	var log syncbuf.Buffer
	ts := startServer(t, Options{Keys: keys, KeysFile: path, Backend: idleBackend(),
		Log: slog.New(slog.NewTextHandler(&log, nil))})
	ta := ts.open(t, alice, 100, 30)
	ta.waitFor(10*time.Second, "alice(operator)")
	if c, err := ts.dial(bob); err == nil {
		c.Close()
		t.Fatal("bob got in before his key was added")
	}

	// bob's key is added and alice's removed, in one edit.
	writeKeys(t, path, bob)
	c, err := ts.dial(bob)
	if err != nil {
		t.Fatalf("bob, just added, is refused: %v", err)
	}
	c.Close()
	select {
	case <-ta.done:
	case <-time.After(10 * time.Second):
		t.Fatal("alice's cockpit stayed open after her key was removed")
	}
	if c, err := ts.dial(alice); err == nil {
		c.Close()
		t.Fatal("alice still gets in after her key was removed")
	}
	if s := log.String(); !strings.Contains(s, `reason="key revoked"`) || !strings.Contains(s, "authorized keys reloaded") {
		t.Errorf("log does not tell the reload and the revocation:\n%s", s)
	}

	// A role change closes the open cockpit too: its actor was fixed at
	// login, and bob comes back as a viewer.
	tb := ts.open(t, bob, 100, 30)
	tb.waitFor(10*time.Second, "bob(operator)")
	bob.role = engine.RoleViewer
	writeKeys(t, path, bob)
	select {
	case <-tb.done:
	case <-time.After(10 * time.Second):
		t.Fatal("bob's operator cockpit stayed open after he became a viewer")
	}
	tb = ts.open(t, bob, 100, 30)
	tb.waitFor(10*time.Second, "bob(viewer)")

	// An edit that does not parse leaves the keys in force.
	writeFileAtomic(t, path, "this is not a key\n")
	c, err = ts.dial(bob)
	if err != nil {
		t.Fatalf("a broken keys file locked bob out: %v", err)
	}
	c.Close()
	if !strings.Contains(log.String(), "authorized keys not reloaded") {
		t.Errorf("the broken file is not logged:\n%s", log.String())
	}
	// What each cockpit's watch loop decides on: bob's session stays.
	var bobs *member
	ts.mu.Lock()
	for _, m := range ts.sessions {
		if m.actor.Name == "bob" && m.cockpit {
			bobs = m
		}
	}
	ts.mu.Unlock()
	if bobs == nil || !ts.stillAuthorised(bobs) {
		t.Fatal("a broken keys file would close bob's cockpit")
	}

	// An empty file lets nobody in, and closes the cockpits.
	writeFileAtomic(t, path, "")
	if c, err := ts.dial(bob); err == nil {
		c.Close()
		t.Fatal("bob gets in with an empty keys file")
	}
	select {
	case <-tb.done:
	case <-time.After(10 * time.Second):
		t.Fatal("bob's cockpit stayed open with an empty keys file")
	}
}
