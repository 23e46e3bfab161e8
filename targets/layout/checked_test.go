package layout_test

import (
	"context"
	"io/fs"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"flightdeck/engine"
	"flightdeck/targets/layout"
	"flightdeck/targets/layout/layouttest"
	"flightdeck/targets/local"
)

// countingFS counts the reads (listings and file reads) below one path.
// With hold set, the first listing of that path waits until hold is
// closed; listing the directory above it is told on listed.
type countingFS struct {
	*local.FS
	under  string
	reads  atomic.Int64
	hold   chan struct{}
	held   atomic.Bool
	listed chan struct{}
}

func (c *countingFS) ReadDir(ctx context.Context, name string) ([]fs.FileInfo, error) {
	if strings.HasPrefix(name, c.under) {
		c.reads.Add(1)
		if c.hold != nil && c.held.CompareAndSwap(false, true) {
			<-c.hold
		}
	}
	if c.listed != nil && name == filepath.Dir(c.under) {
		select {
		case c.listed <- struct{}{}:
		default:
		}
	}
	return c.FS.ReadDir(ctx, name)
}

func (c *countingFS) ReadFile(ctx context.Context, name string, limit int64) ([]byte, error) {
	if strings.HasPrefix(name, c.under) {
		c.reads.Add(1)
	}
	return c.FS.ReadFile(ctx, name, limit)
}

// current prepares r1 with files under dir, through another layout, and
// makes it current.
func current(t *testing.T, fsys layout.FS, dir string, files map[string]string) {
	t.Helper()
	ctx := context.Background()
	setup := layout.New("web1", dir, layout.Options{})
	if err := setup.Prepare(ctx, fsys, layouttest.Artifact(t, "r1", layouttest.Tree{Files: files}), nil); err != nil {
		t.Fatal(err)
	}
	if err := setup.Switch(ctx, fsys, engine.SwitchInfo{Release: "r1"}); err != nil {
		t.Fatal(err)
	}
}

// TestPrepareTrustsAReleaseJustChecked: the prepare that follows a check
// of current (a deploy verifies its rollback path first) links from it
// without reading its manifest or listing it again; a layout that did not
// check it reads both.
func TestPrepareTrustsAReleaseJustChecked(t *testing.T) {
	ctx := context.Background()
	files := layouttest.ManyFiles(40)
	for _, c := range []struct {
		name      string
		check     bool
		wantReads bool
	}{
		{"checked a moment ago", true, false},
		{"not checked by this layout", false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "app")
			r1 := filepath.Join(dir, engine.ReleasesDir, "r1")
			fsys := &countingFS{FS: &local.FS{}, under: r1}
			current(t, fsys, dir, files)
			l := layout.New("web1", dir, layout.Options{})
			if c.check {
				if err := l.Check(ctx, fsys, "r1"); err != nil {
					t.Fatal(err)
				}
			}
			fsys.reads.Store(0)
			if err := l.Prepare(ctx, fsys, layouttest.Artifact(t, "r2", layouttest.Tree{Files: files}), nil); err != nil {
				t.Fatal(err)
			}
			if got := fsys.reads.Load(); (got > 0) != c.wantReads {
				t.Errorf("prepare read r1 %d times; want reads: %v", got, c.wantReads)
			}
			for name := range files {
				if layouttest.Inode(t, filepath.Join(r1, name)) != layouttest.Inode(t, filepath.Join(dir, engine.ReleasesDir, "r2", name)) {
					t.Errorf("r2/%s is not linked from r1", name)
				}
			}
			if err := l.Verify(ctx, fsys, "r2"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestPrepareWaitsForACheckInProgress: a prepare that needs current while
// this layout is checking it (the rollback-path verification runs beside
// the prepare) waits for that check rather than listing current again.
func TestPrepareWaitsForACheckInProgress(t *testing.T) {
	ctx := context.Background()
	files := layouttest.ManyFiles(40)
	dir := filepath.Join(t.TempDir(), "app")
	r1 := filepath.Join(dir, engine.ReleasesDir, "r1")
	fsys := &countingFS{FS: &local.FS{}, under: r1}
	current(t, fsys, dir, files)
	// The reads of a check alone.
	fsys.reads.Store(0)
	if err := layout.New("web1", dir, layout.Options{}).Check(ctx, fsys, "r1"); err != nil {
		t.Fatal(err)
	}
	alone := fsys.reads.Load()

	l := layout.New("web1", dir, layout.Options{})
	fsys.reads.Store(0)
	fsys.hold, fsys.listed = make(chan struct{}), make(chan struct{}, 1)
	checked := make(chan error, 1)
	go func() { checked <- l.Check(ctx, fsys, "r1") }()
	prepared := make(chan error, 1)
	go func() {
		prepared <- l.Prepare(ctx, fsys, layouttest.Artifact(t, "r2", layouttest.Tree{Files: files}), nil)
	}()
	<-fsys.listed // the prepare listed releases/: it is choosing its bases
	close(fsys.hold)
	if err := <-checked; err != nil {
		t.Fatal(err)
	}
	if err := <-prepared; err != nil {
		t.Fatal(err)
	}
	if got := fsys.reads.Load(); got != alone {
		t.Errorf("check and prepare together read r1 %d times, the check alone %d: the prepare read it again", got, alone)
	}
	if err := l.Verify(ctx, fsys, "r2"); err != nil {
		t.Fatal(err)
	}
}
