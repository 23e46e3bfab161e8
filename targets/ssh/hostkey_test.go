package ssh

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"flightdeck/engine"
	"flightdeck/targets/ssh/sshtest"
)

func assertUntouched(t *testing.T, deployTo string) {
	t.Helper()
	entries, err := os.ReadDir(deployTo)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("%s is not empty after a refused connection: %v", deployTo, entries)
	}
}

func TestUnknownHostKeyIsRefused(t *testing.T) {
	c := sshtest.Start(t, 1)
	s := c.Servers[0]
	tg := target(c, s)
	tg.KnownHosts = []string{filepath.Join(t.TempDir(), "known_hosts")} // does not exist yet
	p := NewPool(PoolOptions{})
	defer p.Close()
	h := p.Host("web1", tg)
	err := h.Prepare(ctxT(t), release(t, "r1", map[string]string{"a": "1"}), nil)
	var uk *UnknownHostKeyError
	if !errors.As(err, &uk) {
		t.Fatalf("Prepare = %v, want UnknownHostKeyError", err)
	}
	fp := gossh.FingerprintSHA256(s.HostKey)
	for _, want := range []string{fp, "--accept-new-host-keys", s.KnownHostsLine} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
	assertUntouched(t, s.DeployTo)
	if _, err := os.Stat(tg.KnownHosts[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("known_hosts was written without accept-new: %v", err)
	}
}

func TestAcceptNewHostKeyRecordsIt(t *testing.T) {
	c := sshtest.Start(t, 1)
	s := c.Servers[0]
	tg := target(c, s)
	kh := filepath.Join(t.TempDir(), "ssh", "known_hosts")
	tg.KnownHosts = []string{kh}
	tg.AcceptNewHostKeys = true
	var mu sync.Mutex
	var accepted []string
	p := NewPool(PoolOptions{OnHostKeyAccepted: func(host, fp string) {
		mu.Lock()
		accepted = append(accepted, host+" "+fp)
		mu.Unlock()
	}})
	defer p.Close()
	ctx := ctxT(t)
	if _, err := p.Host("web1", tg).Inspect(ctx); err != nil {
		t.Fatal(err)
	}
	if want := s.Addr + " " + gossh.FingerprintSHA256(s.HostKey); len(accepted) != 1 || accepted[0] != want {
		t.Errorf("OnHostKeyAccepted calls %q, want [%q]", accepted, want)
	}
	b, err := os.ReadFile(kh)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != s.KnownHostsLine {
		t.Errorf("known_hosts = %q, want %q", got, s.KnownHostsLine)
	}
	// A fresh pool without accept-new now trusts the host from the file.
	tg.AcceptNewHostKeys = false
	p2 := NewPool(PoolOptions{})
	defer p2.Close()
	if _, err := p2.Host("web1", tg).Inspect(ctx); err != nil {
		t.Errorf("recorded key not trusted: %v", err)
	}
}

func TestChangedHostKeyIsRefusedEvenWithAcceptNew(t *testing.T) {
	c := sshtest.Start(t, 1)
	s := c.Servers[0]
	other, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := gossh.NewPublicKey(other)
	if err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(t.TempDir(), "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, otherKey) + "\n"
	if err := os.WriteFile(kh, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	tg := target(c, s)
	tg.KnownHosts = []string{kh}
	tg.AcceptNewHostKeys = true
	called := false
	p := NewPool(PoolOptions{OnHostKeyAccepted: func(string, string) { called = true }})
	defer p.Close()
	err = p.Host("web1", tg).Prepare(ctxT(t), release(t, "r1", map[string]string{"a": "1"}), nil)
	var ch *HostKeyChangedError
	if !errors.As(err, &ch) {
		t.Fatalf("Prepare = %v, want HostKeyChangedError", err)
	}
	if !strings.Contains(err.Error(), gossh.FingerprintSHA256(s.HostKey)) || !strings.Contains(err.Error(), kh+":1") {
		t.Errorf("error should name the offered fingerprint and the recorded entry: %v", err)
	}
	if called {
		t.Error("OnHostKeyAccepted called for a changed key")
	}
	assertUntouched(t, s.DeployTo)
	if b, _ := os.ReadFile(kh); string(b) != line {
		t.Errorf("known_hosts changed: %q", b)
	}
}

func TestSwitchWorksWithoutCurrentAndFillsPrevious(t *testing.T) {
	f := newFleet(t, 1, PoolOptions{})
	ctx := ctxT(t)
	h := f.hosts[0]
	for _, id := range []string{"a1", "a2"} {
		if err := h.Prepare(ctx, release(t, id, map[string]string{"f": id}), nil); err != nil {
			t.Fatal(err)
		}
		if err := h.Switch(ctx, engine.SwitchInfo{Release: id}); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(f.c.Servers[0].DeployTo, engine.RevisionsLog))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "release=a2 previous=a1 ") {
		t.Errorf("previous not filled from current:\n%s", b)
	}
}
