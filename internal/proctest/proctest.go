// Package proctest starts a real server (HAProxy, nginx) for a test: it
// skips the test when the server's binary is missing, unless the
// environment has CI=true, in which case the test fails.
package proctest

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

// Require skips the test when find reports the binary missing (its error
// names the Debian package), or fails it under CI=true.
func Require(t testing.TB, find func() (string, error)) {
	t.Helper()
	if _, err := find(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// Server is a started server process.
type Server interface {
	Stop() error
	Log() string
}

// Start runs start (given 30 s) for the test; the server is stopped at
// the end of the test, and its output logged when the test failed.
func Start[S Server](t testing.TB, find func() (string, error), notInstalled error, start func(context.Context) (S, error)) S {
	t.Helper()
	Require(t, find)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := start(ctx)
	if errors.Is(err, notInstalled) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("starting the server: %v", err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("the server's output:\n%s", s.Log())
		}
	})
	return s
}
