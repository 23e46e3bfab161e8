package ssh

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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
