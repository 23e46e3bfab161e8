package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"flightdeck/engine"
)

// BenchmarkSwitch measures one atomic switch of current (symlink, rename,
// fsync of deploy_to, append and fsync of revisions.log).
func BenchmarkSwitch(b *testing.B) {
	h := newHost(b)
	prepared(b, h, "r1", manyFiles(3))
	prepared(b, h, "r2", manyFiles(4))
	ids := [2]string{"r1", "r2"}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := h.Switch(ctx, engine.SwitchInfo{Release: ids[i%2], Actor: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
}

const (
	benchFiles    = 10000
	benchFileSize = 4096
	benchChanged  = benchFiles / 100
)

// benchSource writes benchFiles distinct files of benchFileSize bytes in
// 100 directories and returns the directory with the manifests of its
// original content (v0) and of the content with 1% of the files changed (v1).
func benchSource(b *testing.B) (src string, v0, v1 *engine.Manifest) {
	b.Helper()
	src = b.TempDir()
	block := make([]byte, benchFileSize)
	write := func(i int, version string) {
		p := filepath.Join(src, fmt.Sprintf("d%02d", i%100), fmt.Sprintf("f%05d", i))
		copy(block, fmt.Sprintf("file %d version %s\n", i, version))
		if err := os.WriteFile(p, block, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	for d := range 100 {
		if err := os.MkdirAll(filepath.Join(src, fmt.Sprintf("d%02d", d)), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	for i := range benchFiles {
		write(i, "0")
	}
	var err error
	if v0, err = engine.BuildManifest(src, "v0"); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < benchFiles; i += benchFiles / benchChanged {
		write(i, "1")
	}
	if v1, err = engine.BuildManifest(src, "v1"); err != nil {
		b.Fatal(err)
	}
	return src, v0, v1
}

// benchPrepare prepares the v1 release b.N times under fresh ids, removing
// each (outside the timer) so that every iteration sees the same host: the
// base release r0 from v0 when incremental, no release otherwise.
func benchPrepare(b *testing.B, incremental bool, mode SyncMode) {
	ctx := context.Background()
	src, v0, v1 := benchSource(b)
	h := newHost(b, WithSyncMode(mode))
	if incremental {
		// r0 is prepared from v0's manifest: the 1% of files that differ on
		// disk are rewritten to their v0 content first.
		base := b.TempDir()
		for _, e := range v0.Entries {
			p := filepath.Join(base, filepath.FromSlash(e.Path))
			if e.Kind == engine.KindDir {
				if err := os.MkdirAll(p, 0o755); err != nil {
					b.Fatal(err)
				}
				continue
			}
			block := make([]byte, benchFileSize)
			i, _ := strconv.Atoi(filepath.Base(e.Path)[1:])
			copy(block, fmt.Sprintf("file %d version %s\n", i, "0"))
			if err := os.WriteFile(p, block, 0o644); err != nil {
				b.Fatal(err)
			}
		}
		m := *v0
		m.Release = "r0"
		if err := h.Prepare(ctx, &engine.Artifact{ID: "r0", Dir: base, Manifest: &m}, nil); err != nil {
			b.Fatal(err)
		}
		if err := h.Switch(ctx, engine.SwitchInfo{Release: "r0"}); err != nil {
			b.Fatal(err)
		}
	}
	var sent int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := "r" + strconv.Itoa(i+1)
		m := *v1
		m.Release = id
		var last engine.Progress
		if err := h.Prepare(ctx, &engine.Artifact{ID: id, Dir: src, Manifest: &m}, func(p engine.Progress) { last = p }); err != nil {
			b.Fatal(err)
		}
		sent += last.BytesSent
		b.StopTimer()
		if err := removeTree(h.ReleasePath(id)); err != nil {
			b.Fatal(err)
		}
		if err := syncFS(h.DeployTo()); err != nil { // do not bill the removal to the next prepare
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(benchFiles*b.N)/b.Elapsed().Seconds(), "files/s")
	b.ReportMetric(float64(sent)/float64(b.N), "bytes-sent/op")
}

// BenchmarkPrepareIncremental prepares 10,000 files of 4 KiB of which 1%
// changed since the current release: 9,900 hard links and 100 copies.
func BenchmarkPrepareIncremental(b *testing.B) {
	b.Run("auto", func(b *testing.B) { benchPrepare(b, true, SyncAuto) })
	b.Run("syncfs", func(b *testing.B) { benchPrepare(b, true, SyncFS) })
	b.Run("fsync-each", func(b *testing.B) { benchPrepare(b, true, SyncEachFile) })
}

// BenchmarkPrepareFull prepares the same release on a host without any
// previous release: 10,000 copies.
func BenchmarkPrepareFull(b *testing.B) {
	b.Run("auto", func(b *testing.B) { benchPrepare(b, false, SyncAuto) })
	b.Run("syncfs", func(b *testing.B) { benchPrepare(b, false, SyncFS) })
	b.Run("fsync-each", func(b *testing.B) { benchPrepare(b, false, SyncEachFile) })
}

// BenchmarkFsyncDir is the floor under BenchmarkSwitch, which does two
// fsyncs (deploy_to and revisions.log): one fsync of a directory whose
// entries just changed.
func BenchmarkFsyncDir(b *testing.B) {
	dir := b.TempDir()
	for i := 0; i < b.N; i++ {
		p := filepath.Join(dir, "l"+strconv.Itoa(i%2))
		if err := os.Symlink("x", p+".tmp"); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(p+".tmp", p); err != nil {
			b.Fatal(err)
		}
		if err := fsyncDir(dir); err != nil {
			b.Fatal(err)
		}
	}
}
