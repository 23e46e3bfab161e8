package layout

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"flightdeck/engine"
)

func manifestBytes(t *testing.T, release string) []byte {
	t.Helper()
	m := &engine.Manifest{Release: release, Entries: []engine.ManifestEntry{
		{Path: "d", Kind: engine.KindDir, Mode: 0o755},
		{Path: "d/f", Kind: engine.KindFile, Mode: 0o644, Size: 1, Hash: strings.Repeat("ab", 32)},
	}}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestManifestsShared: hosts that read the same manifest bytes, even at
// once, get one parsed manifest; other bytes get their own; a manifest
// that CheckManifest refuses is refused for every host; only the last
// keptManifests are kept.
func TestManifestsShared(t *testing.T) {
	var c Manifests
	r1 := manifestBytes(t, "r1")
	got := make([]*engine.Manifest, 50)
	var wg sync.WaitGroup
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := c.parse(append([]byte(nil), r1...)) // each host has its own copy of the bytes
			if err != nil {
				t.Error(err)
			}
			got[i] = m
		}()
	}
	wg.Wait()
	for i, m := range got {
		if m == nil || m != got[0] {
			t.Fatalf("host %d got manifest %p, host 0 %p: want one shared parse", i, m, got[0])
		}
	}
	if got[0].Release != "r1" || len(got[0].Entries) != 2 {
		t.Fatalf("parsed %+v", got[0])
	}
	r2, err := c.parse(manifestBytes(t, "r2"))
	if err != nil || r2 == got[0] || r2.Release != "r2" {
		t.Fatalf("other bytes: %+v, %v", r2, err)
	}
	bad := []byte(`{"release":"r3","entries":[{"path":"../x","kind":"file","mode":420,"size":1,"hash":"` + strings.Repeat("ab", 32) + `"}]}`)
	for range 2 {
		if _, err := c.parse(bad); err == nil || !strings.Contains(err.Error(), "..") {
			t.Errorf("a manifest naming ../x: %v, want refused", err)
		}
	}
	for i := range keptManifests {
		if _, err := c.parse(manifestBytes(t, "k"+string(rune('a'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	again, err := c.parse(r1)
	if err != nil || again == got[0] {
		t.Errorf("after %d other manifests, r1 is still kept (%v): the cache is not bounded", keptManifests, err)
	}
	if len(c.keep) != keptManifests {
		t.Errorf("%d manifests kept, want %d", len(c.keep), keptManifests)
	}
}

// TestManifestsBySum: hosts that name the same manifest by digest at once
// wait for one read; a read whose bytes turn out to have another digest
// (the file changed since its digest) or that fails is its caller's own,
// and those waiting for it read their own; a digest already parsed is
// read by no one.
func TestManifestsBySum(t *testing.T) {
	ctx := context.Background()
	r1 := manifestBytes(t, "r1")
	sum := sha256.Sum256(r1)
	tests := []struct {
		name string
		// first is what the first read returns; the others return r1.
		first     []byte
		firstErr  error
		hang      bool
		wantReads int64
	}{
		{name: "one read for all", first: r1, wantReads: 1},
		{name: "the first read finds other bytes", first: manifestBytes(t, "r2"), wantReads: 50},
		{name: "the first read fails", firstErr: errors.New("connection lost"), wantReads: 50},
		// A host that stops answering mid-read: the others read their
		// own after sharedReadWait, and the first read ends only after
		// they all have their answer.
		{name: "the first read hangs", first: r1, hang: true, wantReads: 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Manifests
			var reads atomic.Int64
			release := make(chan struct{})
			read := func() ([]byte, error) {
				if reads.Add(1) == 1 {
					<-release // the others ask meanwhile
					return tt.first, tt.firstErr
				}
				return r1, nil
			}
			type answer struct {
				m   *engine.Manifest
				err error
			}
			answers := make([]answer, 50)
			var mu sync.Mutex
			answered := make([]bool, len(answers))
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				m, err := c.bySum(ctx, sum, read)
				answers[0] = answer{m, err}
			}()
			for reads.Load() == 0 {
				runtime.Gosched()
			}
			for i := 1; i < len(answers); i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					m, err := c.bySum(ctx, sum, read)
					answers[i] = answer{m, err}
					mu.Lock()
					answered[i] = true
					mu.Unlock()
				}()
			}
			// The others are waiting for the first read (or, after it,
			// reading): none reads before it ends.
			for c.waiting(sum) < len(answers)-1 {
				runtime.Gosched()
			}
			if n := reads.Load(); n != 1 {
				t.Fatalf("%d reads while the first was in flight, want 1", n)
			}
			if tt.hang {
				// The others answer while the first read still hangs.
				for reads.Load() < tt.wantReads {
					runtime.Gosched()
				}
				others := make(chan struct{})
				go func() {
					for i := 1; i < len(answers); i++ {
						for {
							if done := func() bool { mu.Lock(); defer mu.Unlock(); return answered[i] }(); done {
								break
							}
							runtime.Gosched()
						}
					}
					close(others)
				}()
				<-others
			}
			close(release)
			wg.Wait()
			if n := reads.Load(); n != tt.wantReads {
				t.Errorf("%d reads, want %d", n, tt.wantReads)
			}
			for i, a := range answers {
				switch {
				case i == 0 && tt.firstErr != nil:
					if !errors.Is(a.err, tt.firstErr) {
						t.Errorf("first: %v, want its read's error", a.err)
					}
				case i == 0 && tt.first != nil && !bytes.Equal(tt.first, r1):
					if a.err != nil || a.m.Release != "r2" {
						t.Errorf("first: %+v, %v, want the bytes it read (r2)", a.m, a.err)
					}
				case a.err != nil || a.m == nil || a.m.Release != "r1":
					t.Errorf("host %d: %+v, %v, want r1", i, a.m, a.err)
				}
			}
			// Now parsed: no one reads it again.
			before := reads.Load()
			if m, err := c.bySum(ctx, sum, read); err != nil || m.Release != "r1" || reads.Load() != before {
				t.Errorf("a digest already parsed: %+v, %v, %d reads", m, err, reads.Load()-before)
			}
		})
	}
}

// waiting counts the callers of bySum that waited for the read of sum.
func (c *Manifests) waiting(sum [sha256.Size]byte) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.keep {
		if p.sum == sum {
			return int(p.waiting.Load())
		}
	}
	return 0
}
