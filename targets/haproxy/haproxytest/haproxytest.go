// Package haproxytest starts a real HAProxy (the Debian package
// "haproxy") on 127.0.0.1 for tests, from a haproxy.Setup in a temporary
// directory. When the binary is missing the test is skipped, unless the
// environment has CI=true, in which case it fails.
package haproxytest

import (
	"context"
	"testing"

	"flightdeck/internal/proctest"
	"flightdeck/targets/haproxy"
)

// Require skips the test when haproxy is not installed (fails under CI=true).
func Require(t testing.TB) { proctest.Require(t, haproxy.Binary) }

// Start runs HAProxy from s (s.Dir defaults to a temporary directory)
// until the end of the test.
func Start(t testing.TB, s haproxy.Setup) *haproxy.Process {
	t.Helper()
	if s.Dir == "" {
		s.Dir = t.TempDir()
	}
	return proctest.Start(t, haproxy.Binary, haproxy.ErrNotInstalled, func(ctx context.Context) (*haproxy.Process, error) {
		return haproxy.Start(ctx, s)
	})
}
