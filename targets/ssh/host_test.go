package ssh

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"flightdeck/engine"
	"flightdeck/targets/layout/layouttest"
	"flightdeck/targets/ssh/sshtest"
)

// TestConformance runs the layout's conformance suite on hosts reached
// over SSH (one real sshd, a deploy_to per case), with each transfer mode.
func TestConformance(t *testing.T) {
	c := sshtest.Start(t, 1)
	s := c.Servers[0]
	// "warm": every host's connection runs a command shell from the
	// start (as through the keeper), so that the layout's steps take
	// their command paths (mkdir, cp -l and find in the shell).
	for _, tt := range []struct {
		mode Transfer
		warm bool
	}{{TransferSFTP, false}, {TransferTar, false}, {TransferSFTP, true}} {
		mode := tt.mode
		name := mode.String()
		if tt.warm {
			name += "-warm"
		}
		t.Run(name, func(t *testing.T) {
			newHost := func(t *testing.T, name, deployTo string, full bool) *Host {
				p := NewPool(PoolOptions{Transfer: mode, FullVerify: full})
				t.Cleanup(func() { p.Close() })
				tg := target(c, s)
				tg.DeployTo = deployTo
				h := p.Host(name, tg)
				if tt.warm {
					warmUpShell(t, h)
				}
				return h
			}
			layouttest.Run(t, layouttest.Factory{
				New: func(t *testing.T, name, deployTo string) engine.Host { return newHost(t, name, deployTo, false) },
				NewFullVerify: func(t *testing.T, name, deployTo string) engine.Host {
					return newHost(t, name, deployTo, true)
				},
				// The host connects once strace follows the listener, so
				// the sshd process serving it is traced from its start.
				Fsynced: func(t *testing.T, deployTo string, fn func(engine.Host)) []string {
					return layouttest.Strace(t, s.PID(), func() { fn(newHost(t, "web1", deployTo, false)) })
				},
			})
		})
	}
}

func TestVerifyDetectsChangedContent(t *testing.T) {
	f := newFleet(t, 1, PoolOptions{})
	ctx := ctxT(t)
	h := f.hosts[0]
	files := map[string]string{
		"app.js":              "console.log(1)",
		"odd name's $(x).txt": "quoted",
		"line\nbreak.txt":     "newline in name",
		`back\slash.txt`:      "backslash in name",
	}
	r1 := release(t, "r1", files)
	if err := h.Prepare(ctx, r1, nil); err != nil {
		t.Fatal(err)
	}
	if err := h.Verify(ctx, "r1"); err != nil {
		t.Fatalf("Verify of an intact release: %v", err)
	}
	// Same size, different content: only hashing can tell.
	p := filepath.Join(f.c.Servers[0].DeployTo, "releases/r1/app.js")
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("console.log(2)"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o444); err != nil {
		t.Fatal(err)
	}
	err := h.Verify(ctx, "r1")
	if err == nil || !strings.Contains(err.Error(), "app.js: content changed") {
		t.Fatalf("Verify after tampering = %v, want content changed", err)
	}
	sizes := f.pool.Host("sizes", func() Target { t := h.Target(); t.VerifySizesOnly = true; return t }())
	if err := sizes.Verify(ctx, "r1"); err != nil {
		t.Errorf("size-only Verify: %v", err)
	}
	if err := os.Remove(filepath.Join(f.c.Servers[0].DeployTo, "releases/r1/odd name's $(x).txt")); err != nil {
		t.Fatal(err)
	}
	if err := sizes.Verify(ctx, "r1"); err == nil {
		t.Error("size-only Verify passed with a file missing")
	}
}

func TestExecPassesReleaseVersion(t *testing.T) {
	f := newFleet(t, 1, PoolOptions{})
	ctx := ctxT(t)
	h := f.hosts[0]
	if err := h.Prepare(ctx, release(t, "r1", map[string]string{"x": "1"}), nil); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	odd := `it's "$(touch /tmp/flightdeck-pwned)" ; $HOME`
	err := h.Exec(ctx, engine.ExecRequest{
		Command: `printf '%s|%s|%s' "$RELEASE_VERSION" "$ODD" "$(basename "$PWD")"`,
		Env:     map[string]string{"RELEASE_VERSION": "r1", "RELEASE_PATH": h.ReleasePath("r1"), "ODD": odd},
		Output:  &out,
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "r1|" + odd + "|r1"; out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
	if _, err := os.Stat("/tmp/flightdeck-pwned"); err == nil {
		t.Error("a value in Env was executed by the shell")
	}

	err = h.Exec(ctx, engine.ExecRequest{Command: "echo oops >&2; exit 3", Output: &out})
	if err == nil || !strings.Contains(err.Error(), "status 3") {
		t.Errorf("failing command: %v, want exit status 3", err)
	}
	if !strings.Contains(out.String(), "oops") {
		t.Errorf("stderr not streamed: %q", out.String())
	}

	err = h.Exec(ctx, engine.ExecRequest{Command: "sleep 30", Timeout: 300e6})
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("slow command: %v, want timed out", err)
	}
	// The connection is still usable after a timed-out command.
	if _, err := h.Inspect(ctx); err != nil {
		t.Errorf("Inspect after a timeout: %v", err)
	}
}

// TestRemoveAllFollowsNoSymlink: a tree with read-only files and
// directories and a symlink to a directory outside it is removed, and
// what the symlink points at is left alone.
func TestRemoveAllFollowsNoSymlink(t *testing.T) {
	f := newFleet(t, 1, PoolOptions{})
	ctx := ctxT(t)
	h := f.hosts[0]
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(f.c.Servers[0].DeployTo, "releases", ".tmp-gone")
	for _, d := range []string{"a/b", "c"} {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"a/b/f", "c/g", "top"} {
		if err := os.WriteFile(filepath.Join(tree, p), []byte(p), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(tree, "a", "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(tree, "c"), 0o555); err != nil {
		t.Fatal(err)
	}
	err := h.run(ctx, "remove", func(ctx context.Context, r *remote) error { return r.fs().RemoveAll(ctx, tree) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(tree); !os.IsNotExist(err) {
		t.Errorf("%s still there: %v", tree, err)
	}
	if b, err := os.ReadFile(filepath.Join(outside, "keep")); err != nil || string(b) != "keep" {
		t.Errorf("the symlink's target was touched: %q, %v", b, err)
	}
}
