package ssh

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"flightdeck/engine"
)

func TestPrepareSwitchRollbackOnThreeHosts(t *testing.T) {
	for _, mode := range []Transfer{TransferSFTP, TransferTar} {
		t.Run(mode.String(), func(t *testing.T) {
			f := newFleet(t, 3, PoolOptions{Transfer: mode})
			ctx := ctxT(t)
			big := strings.Repeat("x", 300<<10)
			r1 := release(t, "r1", map[string]string{
				"index.html":      "v1",
				"lib/big.bin":     big,
				"lib/util.js":     "util",
				"bin/start.sh":    "#!/bin/sh\necho start\n",
				"public/logo.svg": "<svg/>",
				"latest":          "->index.html",
			})
			r2 := release(t, "r2", map[string]string{
				"index.html":      "v2 changed",
				"lib/big.bin":     big,
				"lib/util.js":     "util",
				"bin/start.sh":    "#!/bin/sh\necho start\n",
				"public/logo.svg": "<svg/>",
				"latest":          "->index.html",
			})
			for _, h := range f.hosts {
				var last engine.Progress
				if err := h.Prepare(ctx, r1, func(p engine.Progress) { last = p }); err != nil {
					t.Fatal(err)
				}
				n, b := r1.Manifest.Files()
				if last.FilesDone != n || last.BytesDone != b || last.BytesSent != b {
					t.Errorf("%s: r1 progress %+v, want all %d files / %d bytes sent", h.Name(), last, n, b)
				}
				if err := h.Switch(ctx, engine.SwitchInfo{Release: "r1", Actor: "alice"}); err != nil {
					t.Fatal(err)
				}
				if err := h.Prepare(ctx, r2, func(p engine.Progress) { last = p }); err != nil {
					t.Fatal(err)
				}
				if want := int64(len("v2 changed")); last.BytesSent != want {
					t.Errorf("%s: r2 sent %d bytes, want only the changed file's %d", h.Name(), last.BytesSent, want)
				}
				if err := h.Switch(ctx, engine.SwitchInfo{Release: "r2", Actor: "alice"}); err != nil {
					t.Fatal(err)
				}
				if err := h.Switch(ctx, engine.SwitchInfo{Release: "r1", Previous: "r2", Actor: "bob smith", Action: "rollback"}); err != nil {
					t.Fatal(err)
				}
			}
			for i, s := range f.c.Servers {
				h := f.hosts[i]
				if got := readLink(t, filepath.Join(s.DeployTo, "current")); got != "releases/r1" {
					t.Errorf("%s: current -> %s, want releases/r1", h.Name(), got)
				}
				log, err := os.ReadFile(filepath.Join(s.DeployTo, "revisions.log"))
				if err != nil {
					t.Fatal(err)
				}
				lines := strings.Split(strings.TrimSuffix(string(log), "\n"), "\n")
				want := []string{
					"deploy release=r1 previous=- actor=alice",
					"deploy release=r2 previous=r1 actor=alice",
					"rollback release=r1 previous=r2 actor=bob_smith",
				}
				if len(lines) != len(want) {
					t.Fatalf("%s: revisions.log has %d lines, want %d:\n%s", h.Name(), len(lines), len(want), log)
				}
				for j, w := range want {
					if _, rest, _ := strings.Cut(lines[j], " "); rest != w {
						t.Errorf("%s: revisions.log line %d = %q, want time + %q", h.Name(), j+1, lines[j], w)
					}
				}
				st, err := h.Inspect(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if st.Current != "r1" || strings.Join(st.Releases, ",") != "r1,r2" {
					t.Errorf("%s: Inspect = %+v", h.Name(), st)
				}
				// Unchanged files share the inode; changed ones do not; all are read-only.
				rel := filepath.Join(s.DeployTo, "releases")
				if ino(t, filepath.Join(rel, "r1/lib/big.bin")) != ino(t, filepath.Join(rel, "r2/lib/big.bin")) {
					t.Errorf("%s: lib/big.bin was not hard-linked", h.Name())
				}
				if ino(t, filepath.Join(rel, "r1/index.html")) == ino(t, filepath.Join(rel, "r2/index.html")) {
					t.Errorf("%s: changed index.html shares an inode", h.Name())
				}
				for _, p := range []string{"r2/index.html", "r2/lib/big.bin", "r2/" + engine.ManifestName} {
					fi, err := os.Stat(filepath.Join(rel, p))
					if err != nil {
						t.Fatal(err)
					}
					if fi.Mode().Perm()&0o222 != 0 {
						t.Errorf("%s: %s is writable: %s", h.Name(), p, fi.Mode())
					}
				}
				if fi, _ := os.Stat(filepath.Join(rel, "r2/bin/start.sh")); fi == nil || fi.Mode().Perm() != 0o555 {
					t.Errorf("%s: bin/start.sh mode %v, want r-xr-xr-x", h.Name(), fi.Mode())
				}
				if got := readLink(t, filepath.Join(rel, "r2/latest")); got != "index.html" {
					t.Errorf("%s: symlink latest -> %s", h.Name(), got)
				}
				m, err := os.ReadFile(filepath.Join(rel, "r2", engine.ManifestName))
				if err != nil {
					t.Fatal(err)
				}
				if pm, err := engine.ParseManifest(m); err != nil || pm.Release != "r2" || len(pm.Entries) != len(r2.Manifest.Entries) {
					t.Errorf("%s: stored manifest %v %+v", h.Name(), err, pm)
				}
				if err := h.Verify(ctx, "r2"); err != nil {
					t.Errorf("Verify r2: %v", err)
				}
			}
		})
	}
}

func ino(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestPrepareIsIdempotent(t *testing.T) {
	f := newFleet(t, 1, PoolOptions{})
	ctx := ctxT(t)
	h := f.hosts[0]
	r1 := release(t, "r1", map[string]string{"a": "1"})
	if err := h.Prepare(ctx, r1, nil); err != nil {
		t.Fatal(err)
	}
	var sent int64 = -1
	if err := h.Prepare(ctx, r1, func(p engine.Progress) { sent = p.BytesSent }); err != nil {
		t.Fatal(err)
	}
	if sent != -1 {
		t.Errorf("second Prepare of a complete release reported progress (sent %d)", sent)
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

func TestPruneKeepsCurrentAndProtected(t *testing.T) {
	f := newFleet(t, 1, PoolOptions{})
	ctx := ctxT(t)
	h := f.hosts[0]
	for _, id := range []string{"r1", "r2", "r3", "r4", "r5"} {
		if err := h.Prepare(ctx, release(t, id, map[string]string{"v": id, "same": "s"}), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Switch(ctx, engine.SwitchInfo{Release: "r1"}); err != nil {
		t.Fatal(err)
	}
	removed, err := h.Prune(ctx, 2, []string{"r3"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(removed, ","); got != "r2" {
		t.Errorf("removed %s, want r2 (r1 is current, r3 protected, r4 and r5 the newest 2)", got)
	}
	st, err := h.Inspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(st.Releases, ","); got != "r1,r3,r4,r5" {
		t.Errorf("left %s, want r1,r3,r4,r5", got)
	}
	entries, _ := os.ReadDir(filepath.Join(f.c.Servers[0].DeployTo, "releases"))
	if len(entries) != 4 {
		t.Errorf("releases/ holds %d entries, want 4", len(entries))
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

func TestSwitchRefusesMissingRelease(t *testing.T) {
	f := newFleet(t, 1, PoolOptions{})
	ctx := ctxT(t)
	err := f.hosts[0].Switch(ctx, engine.SwitchInfo{Release: "nope"})
	if err == nil || !strings.Contains(err.Error(), "not on the host") {
		t.Fatalf("Switch to a missing release: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(f.c.Servers[0].DeployTo, "current")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("current exists after a refused switch: %v", err)
	}
}
