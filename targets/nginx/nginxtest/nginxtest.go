// Package nginxtest starts a real nginx (the Debian package "nginx") on
// 127.0.0.1 for tests, from an nginx.Setup in a temporary directory. When
// the binary is missing the test is skipped, unless the environment has
// CI=true, in which case it fails.
package nginxtest

import (
	"context"
	"testing"

	"flightdeck/internal/proctest"
	"flightdeck/targets/nginx"
)

// Require skips the test when nginx is not installed (fails under CI=true).
func Require(t testing.TB) { proctest.Require(t, nginx.Binary) }

// Start runs nginx from s (s.Dir defaults to a temporary directory) until
// the end of the test.
func Start(t testing.TB, s nginx.Setup) *nginx.Process {
	t.Helper()
	if s.Dir == "" {
		s.Dir = t.TempDir()
	}
	return proctest.Start(t, nginx.Binary, nginx.ErrNotInstalled, func(ctx context.Context) (*nginx.Process, error) {
		return nginx.Start(ctx, s)
	})
}
