package serve

import (
	"io"
	"log/slog"
	"os"
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

// A replacement of the same size that keeps the modification time (an
// edit within the same second, or a tool that restores mtimes) must
// still take effect: a revoked key must not stay in force.
func TestKeysReloadComparesContent(t *testing.T) {
	alice := newUser(t, "alice", engine.RoleOperator)
	mallory := newUser(t, "malry", engine.RoleOperator) // same length as alice
	path := filepath.Join(t.TempDir(), "authorized_keys")
	writeKeys(t, path, alice)
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := LoadKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	kr := newKeyring(keys, path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if _, ok := kr.keys(true).Lookup(alice.signer.PublicKey()); !ok {
		t.Fatal("alice is not in")
	}
	writeKeys(t, path, mallory)
	if err := os.Chtimes(path, before.ModTime(), before.ModTime()); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
		t.Fatalf("test setup: size %d→%d, mtime %v→%v", before.Size(), after.Size(), before.ModTime(), after.ModTime())
	}
	cur := kr.keys(true)
	if _, ok := cur.Lookup(alice.signer.PublicKey()); ok {
		t.Error("alice's revoked key is still in force")
	}
	if _, ok := cur.Lookup(mallory.signer.PublicKey()); !ok {
		t.Error("the new key is not in force")
	}
}
