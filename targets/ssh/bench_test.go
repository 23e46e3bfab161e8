package ssh

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"flightdeck/engine"
	"flightdeck/targets/ssh/sshtest"
)

// BenchmarkPrepare measures a cold prepare (every file sent) of releases
// of many small files to one loopback sshd, over SFTP and as a tar stream.
// Run by hand: go test -run - -bench Prepare -benchtime 5x ./targets/ssh/
func BenchmarkPrepare(b *testing.B) {
	shapes := []struct {
		name  string
		files int
		size  int
	}{
		{"500x40KB", 500, 40 << 10},
		{"2000x4KB", 2000, 4 << 10},
		{"5000x1KB", 5000, 1 << 10},
	}
	c := sshtest.Start(b, 1)
	s := c.Servers[0]
	for _, shape := range shapes {
		a := benchArtifact(b, shape.files, shape.size)
		for _, mode := range []Transfer{TransferSFTP, TransferTar} {
			b.Run(shape.name+"/"+mode.String(), func(b *testing.B) {
				p := NewPool(PoolOptions{Transfer: mode})
				defer p.Close()
				ctx := context.Background()
				base := target(c, s)
				if err := p.Host("warm", base).Connect(ctx); err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(shape.files * shape.size))
				b.ResetTimer()
				for i := range b.N {
					tg := base
					tg.DeployTo = filepath.Join(s.DeployTo, fmt.Sprintf("%s-%s-%d", shape.name, mode, i))
					if err := p.Host("h", tg).Prepare(ctx, a, nil); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				entries, _ := os.ReadDir(s.DeployTo)
				for _, e := range entries {
					_ = os.RemoveAll(filepath.Join(s.DeployTo, e.Name()))
				}
			})
		}
	}
}

func benchArtifact(b *testing.B, n, size int) *engine.Artifact {
	b.Helper()
	dir := b.TempDir()
	buf := make([]byte, size)
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("d%02d", i%50), fmt.Sprintf("f%05d.bin", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		for j := range buf {
			buf[j] = byte(i + j*7)
		}
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	m, err := engine.BuildManifest(dir, "bench")
	if err != nil {
		b.Fatal(err)
	}
	return &engine.Artifact{ID: "bench", Dir: dir, Manifest: m}
}

// BenchmarkParseTree parses ListTree's find output for a release of 500
// files in 20 directories (and two symlinks), as each host of a fleet
// does, and reports the heap one parsed listing keeps alive (bytes/listing:
// the growth of the live heap, after a GC, while listings are kept).
func BenchmarkParseTree(b *testing.B) {
	out := benchTreeOutput(500)
	if _, err := parseTree(out); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(out)))
	for b.Loop() {
		if _, err := parseTree(out); err != nil {
			b.Fatal(err)
		}
	}

	const kept = 200
	keep := make([]any, 0, kept)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range kept {
		tree, err := parseTree(out)
		if err != nil {
			b.Fatal(err)
		}
		keep = append(keep, tree)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(keep)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/kept, "bytes/listing")
}

// benchTreeOutput is what ListTree's find prints for a release of files
// regular files: 4 top directories of 4 subdirectories each (20 in all),
// each directory followed by its contents as find walks them, paths of 30
// to 50 bytes, read-only files of a few KB on one device.
func benchTreeOutput(files int) []byte {
	var out []byte
	ino := uint64(1_310_720)
	entry := func(recent bool, kind byte, perm uint32, size int64, link, name string) {
		ino++
		flag := byte('S')
		if recent {
			flag = 'R'
		}
		out = fmt.Appendf(out, "%c %c %o %d 2049 %d 1765432100.%010d\x00%s\x00%s\x00",
			flag, kind, perm, size, ino, ino*7919%10_000_000_000, link, name)
	}
	tops := []string{"app", "config", "lib", "public/assets"}
	subs := []string{"controllers", "models", "views", "helpers"}
	n := 0
	for t, top := range tops {
		entry(false, 'd', 0o755, 4096, "", top)
		for s, sub := range subs {
			dir := top + "/" + sub
			entry(false, 'd', 0o755, 4096, "", dir)
			for i := range files / (len(tops) * len(subs)) {
				entry(n%97 == 0, 'f', 0o444, int64(512+(n*7919)%40000), "",
					fmt.Sprintf("%s/file_%02d%02d%03d-%08x.rb", dir, t, s, i, uint32(n)*2654435761))
				n++
			}
		}
	}
	for ; n < files; n++ {
		entry(false, 'f', 0o444, int64(512+(n*7919)%40000), "", fmt.Sprintf("lib/extra_%04d.rb", n))
	}
	entry(false, 'l', 0o777, 14, "../shared/log", "log")
	entry(false, 'l', 0o777, 17, "../shared/tmp/pids", "tmp")
	return out
}
