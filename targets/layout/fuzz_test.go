package layout

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"flightdeck/engine"
)

// FuzzManifest: any manifest file (a host's, possibly hostile) parses or
// is refused without panic; one CheckManifest accepts never names a path
// outside the release (nor the manifest itself), nor a parent that is not
// a directory, and it writes back and reads back the same.
func FuzzManifest(f *testing.F) {
	good := &engine.Manifest{Release: "r1", Entries: []engine.ManifestEntry{
		{Path: "static", Kind: engine.KindDir, Mode: 0o2775},
		{Path: "static/app.js", Kind: engine.KindFile, Mode: 0o644, Size: 3, Hash: strings.Repeat("ab", 32)},
		{Path: "static/link", Kind: engine.KindSymlink, Mode: 0o777, Link: "app.js"},
	}}
	b, _ := good.Marshal()
	f.Add(b)
	for _, s := range []string{`{"release":"r1","entries":[{"path":"../etc/passwd","kind":"file","hash":"` + strings.Repeat("0", 64) + `"}]}`,
		`{"entries":[{"path":"a","kind":"symlink"},{"path":"a/b","kind":"file"}]}`,
		`{"entries":[{"path":"/abs","kind":"dir"}]}`, `{"entries":[{"path":"a//b","kind":"dir"}]}`, `null`, `{"entries":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := engine.ParseManifest(b)
		if err != nil {
			return
		}
		if CheckManifest(m) != nil {
			return
		}
		root := "/srv/app/releases/r1"
		kinds := map[string]engine.FileKind{}
		for _, e := range m.Entries {
			p := filepath.Join(root, filepath.FromSlash(e.Path))
			if !strings.HasPrefix(p, root+"/") || e.Path == engine.ManifestName {
				t.Fatalf("accepted entry %q lands at %s", e.Path, p)
			}
			if dir := filepath.Dir(e.Path); dir != "." && kinds[dir] != engine.KindDir {
				t.Fatalf("accepted entry %q under %q, which is not a directory listed before", e.Path, dir)
			}
			kinds[e.Path] = e.Kind
		}
		again, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		m2, err := engine.ParseManifest(again)
		if err != nil || !reflect.DeepEqual(m, m2) || CheckManifest(m2) != nil {
			t.Fatalf("manifest does not read back the same: %v", err)
		}
	})
}
