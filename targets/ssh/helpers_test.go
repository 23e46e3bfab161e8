package ssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"flightdeck/engine"
	"flightdeck/targets/layout/layouttest"
	"flightdeck/targets/ssh/sshtest"
)

// fleet is a test cluster with a pool and one Host per server.
type fleet struct {
	c     *sshtest.Cluster
	pool  *Pool
	hosts []*Host
}

func target(c *sshtest.Cluster, s *sshtest.Server) Target {
	return Target{
		User:             c.User,
		Addr:             s.Addr,
		DeployTo:         s.DeployTo,
		IdentityFiles:    []string{c.ClientKey},
		ExplicitIdentity: true,
		KnownHosts:       []string{c.KnownHosts},
		ConnectTimeout:   10 * time.Second,
		CommandTimeout:   30 * time.Second,
	}
}

func newFleet(t *testing.T, n int, opts PoolOptions) *fleet {
	t.Helper()
	c := sshtest.Start(t, n)
	p := NewPool(opts)
	t.Cleanup(func() { p.Close() })
	f := &fleet{c: c, pool: p}
	for i, s := range c.Servers {
		f.hosts = append(f.hosts, p.Host(fmt.Sprintf("web%d", i+1), target(c, s)))
	}
	return f
}

// release writes files (path -> content; "->target" is a symlink, *.sh
// is executable) under a temp dir and builds its manifest.
func release(t testing.TB, id string, files map[string]string) *engine.Artifact {
	t.Helper()
	return layouttest.Artifact(t, id, layouttest.Tree{Files: files})
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func readLink(t *testing.T, p string) string {
	t.Helper()
	l, err := os.Readlink(p)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// writeTestKey writes a fresh ed25519 client key and returns its path.
func writeTestKey(t *testing.T) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(p, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
