// Package haproxytest starts a real HAProxy (the Debian package
// "haproxy") on 127.0.0.1 for tests, from a haproxy.Setup in a temporary
// directory. When the binary is missing the test is skipped, unless the
// environment has CI=true, in which case it fails.
package haproxytest

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"flightdeck/targets/haproxy"
)

// Require skips the test when haproxy is not installed (fails under CI=true).
func Require(t testing.TB) {
	t.Helper()
	if _, err := haproxy.Binary(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// Start runs HAProxy from s (s.Dir defaults to a temporary directory)
// until the end of the test.
func Start(t testing.TB, s haproxy.Setup) *haproxy.Process {
	t.Helper()
	Require(t)
	if s.Dir == "" {
		s.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := haproxy.Start(ctx, s)
	if errors.Is(err, haproxy.ErrNotInstalled) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("starting haproxy: %v", err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("haproxy's output:\n%s", p.Log())
		}
	})
	return p
}
