package layout

import (
	"strings"
	"sync"
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
