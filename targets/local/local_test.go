package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"flightdeck/engine"
	"flightdeck/internal/syncbuf"
	"flightdeck/targets/layout/layouttest"
)

// writeTree creates files (path -> content) under dir; paths ending in
// "@" followed by a target are symlinks ("a/l@../x").
func writeTree(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// artifact builds an artifact from dir.
func artifact(t testing.TB, id, dir string) *engine.Artifact {
	t.Helper()
	m, err := engine.BuildManifest(dir, id)
	if err != nil {
		t.Fatal(err)
	}
	return &engine.Artifact{ID: id, Dir: dir, Manifest: m}
}

// manyFiles returns n files spread over 10 directories.
func manyFiles(n int) map[string]string {
	files := make(map[string]string, n)
	for i := range n {
		files[fmt.Sprintf("d%02d/f%04d.txt", i%10, i)] = fmt.Sprintf("content of file %d\n", i)
	}
	return files
}

func newHost(t testing.TB, opts ...Option) *Host {
	t.Helper()
	return New("web1", filepath.Join(t.TempDir(), "app"), opts...)
}

// prepared prepares release id from files on h and returns its artifact.
func prepared(t testing.TB, h *Host, id string, files map[string]string) *engine.Artifact {
	t.Helper()
	src := t.TempDir()
	writeTree(t, src, files)
	a := artifact(t, id, src)
	if err := h.Prepare(context.Background(), a, nil); err != nil {
		t.Fatalf("prepare %s: %v", id, err)
	}
	return a
}

// TestConformance runs the layout's conformance suite on local hosts.
func TestConformance(t *testing.T) {
	layouttest.Run(t, layouttest.Factory{
		New: func(t *testing.T, name, deployTo string) engine.Host { return New(name, deployTo) },
		NewFullVerify: func(t *testing.T, name, deployTo string) engine.Host {
			return New(name, deployTo, WithFullVerify())
		},
		Fsynced: func(t *testing.T, deployTo string, fn func(engine.Host)) []string {
			h := New("web1", deployTo)
			return layouttest.Strace(t, os.Getpid(), func() { fn(h) })
		},
	})
}

func relDir(h *Host) string { return filepath.Join(h.DeployTo(), engine.ReleasesDir) }

func TestSyncModes(t *testing.T) {
	tests := []struct {
		name  string
		mode  SyncMode
		files int
	}{
		{"auto, few files (fsync each)", SyncAuto, 10},
		{"auto, many files (syncfs)", SyncAuto, syncAutoFiles + 1},
		{"syncfs", SyncFS, 10},
		{"fsync each", SyncEachFile, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHost(t, WithSyncMode(tt.mode))
			prepared(t, h, "r1", manyFiles(tt.files))
			if err := h.Verify(context.Background(), "r1"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSwitch(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 22, 10, 0, 0, time.UTC)
	now := t0
	h := newHost(t, WithClock(func() time.Time { return now }))
	ctx := context.Background()
	prepared(t, h, "r1", manyFiles(5))
	prepared(t, h, "r2", manyFiles(6))

	if err := h.Switch(ctx, engine.SwitchInfo{Release: "r1", Actor: "alice"}); err != nil {
		t.Fatal(err)
	}
	now = t0.Add(time.Minute)
	if err := h.Switch(ctx, engine.SwitchInfo{Release: "r2", Actor: "bob smith", Action: "deploy"}); err != nil {
		t.Fatal(err)
	}
	target, err := os.Readlink(filepath.Join(h.DeployTo(), "current"))
	if err != nil || target != "releases/r2" {
		t.Fatalf("current -> %q (%v), want releases/r2", target, err)
	}
	log, err := os.ReadFile(filepath.Join(h.DeployTo(), engine.RevisionsLog))
	if err != nil {
		t.Fatal(err)
	}
	want := engine.RevisionLine(t0, engine.SwitchInfo{Release: "r1", Actor: "alice"}) + "\n" +
		engine.RevisionLine(t0.Add(time.Minute), engine.SwitchInfo{Release: "r2", Previous: "r1", Actor: "bob smith"}) + "\n"
	if string(log) != want {
		t.Errorf("revisions.log:\n%s\nwant:\n%s", log, want)
	}
	if !strings.Contains(string(log), "deploy release=r2 previous=r1 actor=bob_smith") {
		t.Errorf("revisions.log lacks the r2 line: %s", log)
	}
	if got := layouttest.TempNames(t, h.DeployTo()); len(got) != 0 {
		t.Errorf("temporary links left: %v", got)
	}
	st, err := h.Inspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Current != "r2" || !slices.Equal(st.Releases, []string{"r1", "r2"}) {
		t.Errorf("Inspect = %+v", st)
	}

	// Refused switches leave current alone.
	if err := os.Mkdir(h.ReleasePath("legacy"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"r9", "legacy", "../r1"} {
		if err := h.Switch(ctx, engine.SwitchInfo{Release: id}); err == nil {
			t.Errorf("switch to %s succeeded", id)
		}
	}
	if target, _ := os.Readlink(filepath.Join(h.DeployTo(), "current")); target != "releases/r2" {
		t.Errorf("current -> %q after refused switches", target)
	}
}

func TestPrepareCancelled(t *testing.T) {
	h := newHost(t)
	src := t.TempDir()
	writeTree(t, src, manyFiles(600))
	a := artifact(t, "r1", src)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := h.Prepare(ctx, a, func(p engine.Progress) {
		if p.FilesDone >= p.FilesTotal/2 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if _, err := os.Lstat(h.ReleasePath("r1")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("releases/r1 exists after a cancelled prepare (%v)", err)
	}
	if got := layouttest.TempNames(t, relDir(h)); len(got) != 0 {
		t.Errorf("temporary dir left after cancel: %v", got)
	}
	if err := h.Prepare(context.Background(), a, nil); err != nil {
		t.Fatal(err)
	}
	if err := h.Verify(context.Background(), "r1"); err != nil {
		t.Fatal(err)
	}
}

// crashEnv tells the test binary, re-executed by TestPrepareCrash, to
// prepare a release and SIGKILL itself halfway.
const crashEnv = "FLIGHTDECK_LOCAL_CRASH"

func TestCrashHelper(t *testing.T) {
	spec := os.Getenv(crashEnv)
	if spec == "" {
		t.Skip("helper process for TestPrepareCrash")
	}
	deployTo, src, _ := strings.Cut(spec, "\n")
	h := New("crash", deployTo)
	a := artifact(t, "r1", src)
	err := h.Prepare(context.Background(), a, func(p engine.Progress) {
		if p.FilesDone >= p.FilesTotal/2 {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	})
	t.Fatalf("prepare returned %v instead of being killed", err)
}

func TestPrepareCrash(t *testing.T) {
	h := newHost(t)
	src := t.TempDir()
	writeTree(t, src, manyFiles(600))

	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$")
	cmd.Env = append(os.Environ(), crashEnv+"="+h.DeployTo()+"\n"+src)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper was not killed: %v\n%s", err, out)
	}
	if _, err := os.Lstat(h.ReleasePath("r1")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("releases/r1 exists after a crash mid-prepare (%v)", err)
	}
	left := layouttest.TempNames(t, relDir(h))
	if len(left) != 1 {
		t.Fatalf("want one leftover temporary dir, got %v", left)
	}
	layouttest.AssertReadOnly(t, filepath.Join(relDir(h), left[0]))

	st, err := h.Inspect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Current != "" || len(st.Releases) != 0 {
		t.Errorf("Inspect after crash = %+v, want nothing", st)
	}
	if got := layouttest.TempNames(t, relDir(h)); len(got) != 1 {
		t.Errorf("Inspect (read-only) changed the leftovers: %v", got)
	}
	if err := h.Clean(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := layouttest.TempNames(t, relDir(h)); len(got) != 0 {
		t.Errorf("Clean left %v", got)
	}
	prepared(t, h, "r1", manyFiles(600))
	if err := h.Verify(context.Background(), "r1"); err != nil {
		t.Fatal(err)
	}
}

func TestExec(t *testing.T) {
	h := newHost(t)
	prepared(t, h, "r1", map[string]string{"VERSION": "1\n"})
	tests := []struct {
		name    string
		req     engine.ExecRequest
		wantOut string
		wantErr string
	}{
		{"env and output", engine.ExecRequest{Command: `echo "v=$RELEASE_VERSION k=$KEY"; echo err >&2`, Env: map[string]string{"RELEASE_VERSION": "r1", "KEY": "a b"}}, "v=r1 k=a b\nerr\n", ""},
		{"dir defaults to the release", engine.ExecRequest{Command: "cat VERSION", Env: map[string]string{"RELEASE_VERSION": "r1"}}, "1\n", ""},
		{"dir defaults to deploy_to", engine.ExecRequest{Command: "ls -d releases"}, "releases\n", ""},
		{"explicit dir", engine.ExecRequest{Command: "pwd", Dir: "/"}, "/\n", ""},
		{"non-zero exit", engine.ExecRequest{Command: "echo failing; exit 3"}, "failing\n", "exit status 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out syncbuf.Buffer
			tt.req.Output = &out
			err := h.Exec(context.Background(), tt.req)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
			if out.String() != tt.wantOut {
				t.Errorf("output %q, want %q", out.String(), tt.wantOut)
			}
		})
	}
}

func TestExecTimeoutKillsGroup(t *testing.T) {
	h := New("web1", t.TempDir())
	pidFile := filepath.Join(t.TempDir(), "pid")
	var out syncbuf.Buffer
	start := time.Now()
	err := h.Exec(context.Background(), engine.ExecRequest{
		Command: `sleep 60 & echo $! > "$PIDFILE"; echo started; wait`,
		Env:     map[string]string{"PIDFILE": pidFile},
		Timeout: 500 * time.Millisecond,
		Output:  &out,
	})
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if elapsed := time.Since(start); elapsed > 30*time.Second {
		t.Fatalf("Exec returned after %v: the sleep was waited for", elapsed)
	}
	if !strings.Contains(out.String(), "started") {
		t.Errorf("output %q not streamed", out.String())
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("sleep child %d still alive after the timeout", pid)
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline, not synchronisation
	}
}

// processAlive reports whether pid exists and is not a zombie (an orphan
// may wait for a reaper that a container's init never runs).
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestExecCancel(t *testing.T) {
	h := New("web1", t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	var out syncbuf.Buffer
	done := make(chan error, 1)
	go func() {
		done <- h.Exec(ctx, engine.ExecRequest{Command: "echo ready; sleep 60", Output: &out})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "ready") {
		if time.Now().After(deadline) {
			t.Fatal("command did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Exec did not return after cancel")
	}
}
