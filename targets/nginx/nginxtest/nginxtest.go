// Package nginxtest starts a real nginx (the Debian package "nginx") on
// 127.0.0.1 for tests, from an nginx.Setup in a temporary directory. When
// the binary is missing the test is skipped, unless the environment has
// CI=true, in which case it fails.
package nginxtest

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"flightdeck/targets/nginx"
)

// Require skips the test when nginx is not installed (fails under CI=true).
func Require(t testing.TB) {
	t.Helper()
	if _, err := nginx.Binary(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// Start runs nginx from s (s.Dir defaults to a temporary directory) until
// the end of the test.
func Start(t testing.TB, s nginx.Setup) *nginx.Process {
	t.Helper()
	Require(t)
	if s.Dir == "" {
		s.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := nginx.Start(ctx, s)
	if errors.Is(err, nginx.ErrNotInstalled) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("starting nginx: %v", err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("nginx's logs:\n%s", p.Log())
		}
	})
	return p
}
