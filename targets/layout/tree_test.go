package layout

import (
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"testing"

	"flightdeck/engine"
)

// treeOf builds a Tree of entries added in the order given.
func treeOf(t *testing.T, entries []treeItem) *Tree {
	t.Helper()
	var b TreeBuilder
	for _, it := range entries {
		if err := b.Add([]byte(it.path), it.e); err != nil {
			t.Fatalf("add %q: %v", it.path, err)
		}
	}
	tree, err := b.Tree()
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

type treeItem struct {
	path string
	e    TreeEntry
}

func dirEntry(ino uint64) TreeEntry {
	return TreeEntry{Type: fs.ModeDir, Stamp: Stamp{Dev: 2049, Ino: ino, Size: 4096, Perm: 0o2755, MTime: 1765000000_000000001}}
}

func fileEntry(ino uint64, size int64, recent bool) TreeEntry {
	return TreeEntry{Stamp: Stamp{Dev: 2049, Ino: ino, Size: size, Perm: 0o444, MTime: 1765000000_123456789 + int64(ino)}, Recent: recent}
}

func linkEntry(ino uint64, target string) TreeEntry {
	return TreeEntry{Type: fs.ModeSymlink, Link: target, Stamp: Stamp{Dev: 2049, Ino: ino, Size: int64(len(target)), Perm: 0o777}}
}

// TestTreeLookup: a Tree built from entries in any order (find's walk
// order here) gives each back by its path, with its stamp, type, link
// target and Recent, yields them in path order, and finds nothing at a
// path it does not hold (a prefix, a parent with a slash, the root).
func TestTreeLookup(t *testing.T) {
	walk := []treeItem{ // as find walks: a directory, then what is in it
		{"b", dirEntry(10)},
		{"b/z.txt", fileEntry(11, 5, false)},
		{"b/a b\nc", fileEntry(12, 0, true)},
		{"a", linkEntry(13, "b/z.txt")},
		{"b.txt", fileEntry(14, 7, false)},
		{"b/dev", TreeEntry{Type: fs.ModeDevice | fs.ModeCharDevice, Stamp: Stamp{Ino: 15, Perm: 0o600}}},
		{"ünï", linkEntry(16, "../../shared/ünï with spaces")},
	}
	for _, tc := range []struct {
		name    string
		entries []treeItem
		missing []string
	}{
		{"empty", nil, []string{"", "a", "b/z.txt"}},
		{"one", walk[:1], []string{"", "a", "b/", "b/z.txt", "bb"}},
		{"find order", walk, []string{"", ".", "b/", "b/z", "b/z.txt/", "b/a", "a/b", "c", "\x00", "b.tx", "B"}},
		{"sorted", slices.SortedFunc(slices.Values(walk), func(a, b treeItem) int { return strings.Compare(a.path, b.path) }), []string{"b/", "c"}},
		{"reversed", reversed(walk), []string{"b/", "c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tree := treeOf(t, tc.entries)
			if tree == nil {
				t.Fatal("nil tree")
			}
			want := map[string]TreeEntry{}
			for _, it := range tc.entries {
				want[it.path] = it.e
			}
			if tree.Len() != len(want) {
				t.Errorf("%d entries, want %d", tree.Len(), len(want))
			}
			for p, we := range want {
				e, ok := tree.Lookup(p)
				if !ok || e != we {
					t.Errorf("Lookup(%q) = %+v, %v; want %+v", p, e, ok, we)
				}
			}
			for _, p := range tc.missing {
				if e, ok := tree.Lookup(p); ok {
					t.Errorf("Lookup(%q) = %+v: found", p, e)
				}
			}
			var paths []string
			for p, e := range tree.All() {
				paths = append(paths, p)
				if e != want[p] {
					t.Errorf("All: %q is %+v, want %+v", p, e, want[p])
				}
			}
			if wantPaths := slices.Sorted(maps.Keys(want)); !slices.Equal(paths, wantPaths) {
				t.Errorf("All yields %q, want %q (in path order)", paths, wantPaths)
			}
		})
	}
}

func reversed(s []treeItem) []treeItem {
	s = slices.Clone(s)
	slices.Reverse(s)
	return s
}

// TestTreeNil: a nil Tree is an empty listing.
func TestTreeNil(t *testing.T) {
	var tree *Tree
	if tree.Len() != 0 {
		t.Errorf("Len %d", tree.Len())
	}
	if e, ok := tree.Lookup("a"); ok {
		t.Errorf("Lookup found %+v", e)
	}
	for p := range tree.All() {
		t.Errorf("All yields %q", p)
	}
}

// TestTreeEntryMode: Mode is the type with the permission bits of the
// stamp, special bits as fs.FileMode has them.
func TestTreeEntryMode(t *testing.T) {
	for _, tc := range []struct {
		e    TreeEntry
		want fs.FileMode
	}{
		{fileEntry(1, 0, false), 0o444},
		{TreeEntry{Stamp: Stamp{Perm: 0o4755}}, fs.ModeSetuid | 0o755},
		{dirEntry(1), fs.ModeDir | fs.ModeSetgid | 0o755},
		{TreeEntry{Type: fs.ModeDir, Stamp: Stamp{Perm: 0o1777}}, fs.ModeDir | fs.ModeSticky | 0o777},
		{linkEntry(1, "x"), fs.ModeSymlink | 0o777},
	} {
		if got := tc.e.Mode(); got != tc.want {
			t.Errorf("%+v: mode %v, want %v", tc.e, got, tc.want)
		}
	}
}

// TestTreeBuilderRejects: a path listed twice is an error (not the last
// or first one kept), as are entries a Tree cannot hold as given; the
// builder is empty again after Tree.
func TestTreeBuilderRejects(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []treeItem
		want    string
	}{
		{"same path twice", []treeItem{{"a", fileEntry(1, 1, false)}, {"b", dirEntry(2)}, {"a", fileEntry(1, 1, false)}}, `"a" listed twice`},
		{"file and directory", []treeItem{{"d/x", fileEntry(1, 1, false)}, {"d", dirEntry(2)}, {"d/x", dirEntry(3)}}, `"d/x" listed twice`},
		{"empty path", []treeItem{{"", fileEntry(1, 1, false)}}, "empty path"},
		{"not a type", []treeItem{{"a", TreeEntry{Type: fs.ModeAppend}}}, `"a": type`},
		{"permission bits", []treeItem{{"a", TreeEntry{Stamp: Stamp{Perm: 0o10644}}}}, `"a": mode 10644`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b TreeBuilder
			var err error
			for _, it := range tc.entries {
				if err = b.Add([]byte(it.path), it.e); err != nil {
					break
				}
			}
			if err == nil {
				var tree *Tree
				if tree, err = b.Tree(); err == nil {
					t.Fatalf("built a tree of %d entries", tree.Len())
				}
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want %q in it", err, tc.want)
			}
		})
	}
	var b TreeBuilder
	for _, p := range []string{"a", "a"} {
		if err := b.Add([]byte(p), fileEntry(1, 1, false)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Tree(); err == nil {
		t.Fatal("a path twice: built")
	}
	if tree, err := b.Tree(); err != nil || tree.Len() != 0 {
		t.Errorf("after Tree: %d entries, %v; want an empty builder", tree.Len(), err)
	}
}

// TestTreeBuilderKeepsNothingPassed: the paths given to Add may be
// reused at once (a listing keeps nothing of the output it was read from).
func TestTreeBuilderKeepsNothingPassed(t *testing.T) {
	var b TreeBuilder
	buf := []byte("first")
	if err := b.Add(buf, fileEntry(1, 1, false)); err != nil {
		t.Fatal(err)
	}
	copy(buf, "xxxxx")
	tree, err := b.Tree()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tree.Lookup("first"); !ok || tree.Len() != 1 {
		t.Errorf("the path passed to Add changed the tree: %v", slices.Collect(maps.Keys(maps.Collect(tree.All()))))
	}
}

// TestCheckTreeEntries: the manifest's entries are checked against a
// listing in the manifest's order, with the errors of the level-by-level
// check.
func TestCheckTreeEntries(t *testing.T) {
	const hash = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	m := &engine.Manifest{Release: "r1", Entries: []engine.ManifestEntry{
		{Path: "d", Kind: engine.KindDir, Mode: 0o755},
		{Path: "d/f", Kind: engine.KindFile, Mode: 0o644, Size: 5, Hash: hash},
		{Path: "l", Kind: engine.KindSymlink, Link: "d/f"},
	}}
	good := []treeItem{
		{"d", TreeEntry{Type: fs.ModeDir, Stamp: Stamp{Perm: 0o755}}},
		{"d/f", fileEntry(2, 5, false)},
		{"l", linkEntry(3, "d/f")},
		{"extra", fileEntry(4, 1, false)}, // added by a hook: not reported
	}
	with := func(p string, e TreeEntry) []treeItem {
		out := slices.Clone(good)
		for i := range out {
			if out[i].path == p {
				out[i].e = e
				return out
			}
		}
		return append(out, treeItem{p, e})
	}
	without := func(p string) []treeItem {
		return slices.DeleteFunc(slices.Clone(good), func(it treeItem) bool { return it.path == p })
	}
	for _, tc := range []struct {
		name string
		tree []treeItem
		want string // "" for no error
	}{
		{"intact", good, ""},
		{"empty", nil, "d: missing"},
		{"file missing", without("d/f"), "d/f: missing"},
		{"directory replaced by a symlink", with("d", linkEntry(1, "/etc")), "d: is a symbolic link, want a directory"},
		{"file writable", with("d/f", TreeEntry{Stamp: Stamp{Size: 5, Perm: 0o644}}), "d/f: mode -rw-r--r--, want -r--r--r-- (release files are read-only)"},
		{"file size", with("d/f", fileEntry(2, 6, false)), "d/f: size 6, want 5"},
		{"file is a directory", with("d/f", dirEntry(2)), "d/f: is a directory, want a regular file"},
		{"link target", with("l", linkEntry(3, "d/g")), `l: links to "d/g", want "d/f"`},
		{"link is a file", with("l", fileEntry(3, 3, false)), "l: is a regular file, want a symlink"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkTreeEntries(m, treeOf(t, tc.tree))
			if got := errString(err); got != tc.want {
				t.Errorf("error %q, want %q", got, tc.want)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestTreeStamps: the stamps of a listing are those of its regular files
// (as FS.Stamps gives them), recent among them as listed; stampsInTree
// reads the same from the listing itself.
func TestTreeStamps(t *testing.T) {
	tree := treeOf(t, []treeItem{
		{"d", TreeEntry{Type: fs.ModeDir, Recent: true}},
		{"d/old", fileEntry(2, 5, false)},
		{"d/new", fileEntry(3, 6, true)},
		{"l", TreeEntry{Type: fs.ModeSymlink, Link: "d/new", Recent: true}},
	})
	stamps, recent := TreeStamps(tree)
	wantStamps := map[string]Stamp{"d/old": fileEntry(2, 5, false).Stamp, "d/new": fileEntry(3, 6, true).Stamp}
	if !maps.Equal(stamps, wantStamps) || !maps.Equal(recent, map[string]bool{"d/new": true}) {
		t.Errorf("stamps %+v, recent %v; want %+v and d/new", stamps, recent, wantStamps)
	}
	stampOf := stampsInTree(tree)
	for _, p := range []string{"d", "d/old", "d/new", "l", "missing"} {
		st, ok, rec := stampOf(p)
		if want, in := stamps[p]; st != want || ok != in || rec != recent[p] {
			t.Errorf("%s: stamp %+v, %v, recent %v; want %+v, %v, %v", p, st, ok, rec, want, in, recent[p])
		}
	}
	if stamps, recent := TreeStamps(nil); len(stamps) != 0 || len(recent) != 0 {
		t.Errorf("stamps of no tree: %v, %v", stamps, recent)
	}
}

// TestTreeSub: the entries below a directory, by path relative to it,
// with their link targets and stamps, and none of its neighbours whose
// names it prefixes.
func TestTreeSub(t *testing.T) {
	var b TreeBuilder
	for _, e := range []struct {
		p    string
		link string
		size int64
	}{
		{"releases", "", 1}, {"releases/r1", "", 2}, {"releases/r1/x", "", 3}, {"releases/r1/y", "", 4},
		{"releases/r1/y/z", "", 5}, {"releases/r1/l", "y/z", 6}, {"releases/r1-x", "", 7},
		{"releases/r10", "", 8}, {"releases/r10/q", "", 9}, {"current", "releases/r1", 10},
	} {
		typ := fs.FileMode(0)
		if e.link != "" {
			typ = fs.ModeSymlink
		}
		if err := b.Add([]byte(e.p), TreeEntry{Type: typ, Link: e.link, Stamp: Stamp{Size: e.size}}); err != nil {
			t.Fatal(err)
		}
	}
	tree, err := b.Tree()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		dir  string
		want map[string]string // path -> size/link
	}{
		{"releases/r1", map[string]string{"l": "6 y/z", "x": "3 ", "y": "4 ", "y/z": "5 "}},
		{"releases/r10", map[string]string{"q": "9 "}},
		{"releases/r1-x", map[string]string{}},
		{"nothing", map[string]string{}},
	}
	for _, tt := range tests {
		sub := tree.Sub(tt.dir)
		got := map[string]string{}
		for p, e := range sub.All() {
			got[p] = fmt.Sprintf("%d %s", e.Stamp.Size, e.Link)
		}
		if !maps.Equal(got, tt.want) {
			t.Errorf("Sub(%q) = %v, want %v", tt.dir, got, tt.want)
		}
		for p := range tt.want {
			if _, ok := sub.Lookup(p); !ok {
				t.Errorf("Sub(%q).Lookup(%q) found nothing", tt.dir, p)
			}
		}
	}
}
