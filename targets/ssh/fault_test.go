package ssh

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"flightdeck/engine"
)

// manyFiles is a release big enough that a fault lands mid-upload.
func manyFiles(id string, n int) map[string]string {
	files := map[string]string{"index.html": id}
	for i := range n {
		files[fmt.Sprintf("assets/%03d/file%d.js", i%10, i)] = id + strings.Repeat("z", 8<<10) + fmt.Sprint(i)
	}
	return files
}

func releaseDirs(t *testing.T, deployTo string) (complete, temp []string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(deployTo, engine.ReleasesDir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), engine.TempPrefix) {
			temp = append(temp, e.Name())
		} else {
			complete = append(complete, e.Name())
		}
	}
	return complete, temp
}

func TestDroppedConnectionDuringUploadLeavesHostIntact(t *testing.T) {
	for _, mode := range []Transfer{TransferSFTP, TransferTar} {
		t.Run(mode.String(), func(t *testing.T) {
			f := newFleet(t, 1, PoolOptions{Transfer: mode})
			ctx := ctxT(t)
			h, s := f.hosts[0], f.c.Servers[0]
			if err := h.Prepare(ctx, release(t, "r1", map[string]string{"index.html": "r1"}), nil); err != nil {
				t.Fatal(err)
			}
			if err := h.Switch(ctx, engine.SwitchInfo{Release: "r1"}); err != nil {
				t.Fatal(err)
			}
			var once sync.Once
			r2 := release(t, "r2", manyFiles("r2", 300))
			err := h.Prepare(ctx, r2, func(p engine.Progress) {
				if p.FilesDone >= 20 {
					once.Do(func() { _ = s.Kill() }) // sshd and every connection it serves
				}
			})
			if err == nil {
				t.Fatal("Prepare succeeded although the server died mid-upload")
			}
			t.Logf("Prepare failed as expected: %v", err)
			if got := readLink(t, filepath.Join(s.DeployTo, "current")); got != "releases/r1" {
				t.Errorf("current -> %s after the failed prepare", got)
			}
			complete, _ := releaseDirs(t, s.DeployTo)
			if strings.Join(complete, ",") != "r1" {
				t.Errorf("releases/ shows %v, want only r1", complete)
			}
			if b, _ := os.ReadFile(filepath.Join(s.DeployTo, "releases/r1/index.html")); string(b) != "r1" {
				t.Errorf("r1 changed: %q", b)
			}

			if err := s.Restart(); err != nil {
				t.Fatal(err)
			}
			st, err := h.Inspect(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Current != "r1" || strings.Join(st.Releases, ",") != "r1" {
				t.Errorf("Inspect after reconnect = %+v", st)
			}
			if err := h.Clean(ctx); err != nil {
				t.Fatal(err)
			}
			if _, temp := releaseDirs(t, s.DeployTo); len(temp) != 0 {
				t.Errorf("temporary dirs left after Clean: %v", temp)
			}
			// And the release can be prepared once the host is back.
			if err := h.Prepare(ctx, r2, nil); err != nil {
				t.Fatal(err)
			}
			if err := h.Verify(ctx, "r2"); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestLostConnectionIsRedialledOnce(t *testing.T) {
	f := newFleet(t, 1, PoolOptions{})
	ctx := ctxT(t)
	h, s := f.hosts[0], f.c.Servers[0]
	var once sync.Once
	r1 := release(t, "r1", manyFiles("r1", 200))
	attempts := 0
	err := h.Prepare(ctx, r1, func(p engine.Progress) {
		if p.FilesDone == 0 {
			attempts++
		}
		if p.FilesDone >= 20 {
			once.Do(s.KillConnections) // the listener stays: the redial works
		}
	})
	if err != nil {
		t.Fatalf("Prepare after one lost connection: %v", err)
	}
	if attempts != 2 {
		t.Errorf("prepare ran %d times, want 2 (one redial)", attempts)
	}
	if err := h.Verify(ctx, "r1"); err != nil {
		t.Error(err)
	}
	if _, temp := releaseDirs(t, s.DeployTo); len(temp) > 1 {
		t.Errorf("more than the first attempt's temp dir left: %v", temp)
	}
	st, err := h.Inspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(st.Releases, ",") != "r1" {
		t.Errorf("Inspect = %+v", st)
	}
	if err := h.Clean(ctx); err != nil {
		t.Fatal(err)
	}
	if _, temp := releaseDirs(t, s.DeployTo); len(temp) != 0 {
		t.Errorf("temp dirs after Clean: %v", temp)
	}
}

func TestUnreachableHostFailsClearly(t *testing.T) {
	f := newFleet(t, 1, PoolOptions{})
	s := f.c.Servers[0]
	_ = s.Kill()
	_, err := f.hosts[0].Inspect(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "connect to") || !strings.Contains(err.Error(), s.Addr) {
		t.Fatalf("Inspect of a dead host: %v", err)
	}
}
