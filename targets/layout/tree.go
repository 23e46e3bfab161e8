package layout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"math"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"flightdeck/engine"
)

// TreeLister is implemented by an FS that can describe a whole tree in one
// operation (over SSH, one find on the host instead of a listing request
// per directory and a readlink per symlink). The layout falls back to
// listing directory by directory when ListTree fails for any reason.
type TreeLister interface {
	// ListTree describes every entry below the directory root (not root
	// itself), following no symlink, by slash-separated path relative to
	// root, as Lstat would; Recent when modified less than within before
	// the host's clock as read when ListTree began (or later).
	ListTree(ctx context.Context, root string, within time.Duration) (*Tree, error)
	// TreeListingCheap reports whether ListTree costs the host less than
	// listing the tree directory by directory now (over SSH: when the
	// connection has a command shell running; otherwise a check that
	// needs no stamps lists directories, and starts no process on the
	// host).
	TreeListingCheap() bool
}

// SummedTreeLister is a TreeLister that can list a release and digest its
// manifest in one operation (over SSH, one command instead of a find and
// the manifest's read: a fleet's hosts hold the same manifest, which is
// then read from one of them).
type SummedTreeLister interface {
	TreeLister
	// ListTreeSummed is ListTree without the stamps (an entry's Stamp
	// holds its size and permission bits only; none is Recent), with the
	// SHA-256 of root/name as read beside the listing; summed is false
	// when it could not be read.
	ListTreeSummed(ctx context.Context, root, name string) (tree *Tree, sum [32]byte, summed bool, err error)
}

// DeployLister is an FS that can list what Survey reads in one operation
// (over SSH, one command instead of a dozen SFTP requests and a find).
type DeployLister interface {
	TreeLister
	// ListDeployTo lists, as ListTreeSummed does and by path relative to
	// root: root's entries, those of root/releases when it is a
	// directory, and, when release is not "", everything below
	// root/releases/<release>, with the SHA-256 of that release's
	// manifest. Nothing else below root is listed.
	ListDeployTo(ctx context.Context, root, release string) (tree *Tree, sum [32]byte, summed bool, err error)
}

// TreeEntry is one entry of a Tree, as Lstat describes it.
type TreeEntry struct {
	// Stamp is the entry's device, inode, size, permission bits (with
	// setuid, setgid and sticky, as in st_mode&07777) and modification
	// time, whatever its type; a regular file's is its Stamp as
	// FS.Stamps gives it.
	Stamp Stamp
	// Link is a symlink's target.
	Link string
	// Type is the entry's type bits (those of fs.ModeType; none for a
	// regular file). Mode adds the permission bits of Stamp.
	Type fs.FileMode
	// Recent reports that the entry was modified less than within (see
	// TreeLister.ListTree) before the host's clock.
	Recent bool
}

// Mode is the entry's type and permission bits, with fs.ModeSetuid,
// fs.ModeSetgid and fs.ModeSticky, as Lstat reports them.
func (e TreeEntry) Mode() fs.FileMode { return e.Type | GoMode(e.Stamp.Perm) }

// Tree is a listing of a directory tree (see TreeLister.ListTree): its
// entries by slash-separated path, each path once, in path order (as
// strings compare). A fleet holds one per host at once, so it is compact:
// the paths and link targets are one string, and each entry a record of
// fixed size that holds no pointer (the garbage collector does not scan
// it); Lookup searches the sorted paths. A TreeBuilder makes a Tree; it
// is not modified after. A nil *Tree is an empty listing.
type Tree struct {
	text string      // each entry's path then its link target, in path order
	ents []treeEntry // in path order
}

// treeEntry is a TreeEntry in a Tree. Its path is text[start:name] and its
// link target text[name:link], start being the link end of the entry
// before it (0 for the first).
type treeEntry struct {
	dev, ino    uint64
	size, mtime int64
	name, link  uint32 // ends in text
	typ         fs.FileMode
	perm        uint16 // at most 0o7777
	recent      bool
}

// Len is the number of entries of t.
func (t *Tree) Len() int {
	if t == nil {
		return 0
	}
	return len(t.ents)
}

// Lookup returns the entry of t at path p.
func (t *Tree) Lookup(p string) (TreeEntry, bool) {
	i, ok := sort.Find(t.Len(), func(i int) int { return strings.Compare(p, t.path(i)) })
	if !ok {
		return TreeEntry{}, false
	}
	return t.entry(i), true
}

// All yields the entries of t by path, in path order.
func (t *Tree) All() iter.Seq2[string, TreeEntry] {
	return func(yield func(string, TreeEntry) bool) {
		for i := range t.Len() {
			if !yield(t.path(i), t.entry(i)) {
				return
			}
		}
	}
}

// Sub returns the entries of t below the directory dir, by path
// relative to dir.
func (t *Tree) Sub(dir string) *Tree {
	prefix := dir + "/"
	lo := sort.Search(t.Len(), func(i int) bool { return t.path(i) >= prefix })
	hi := lo
	for hi < t.Len() && strings.HasPrefix(t.path(hi), prefix) {
		hi++
	}
	sub := &Tree{ents: make([]treeEntry, hi-lo)}
	var text strings.Builder
	for k := lo; k < hi; k++ {
		e := t.ents[k]
		text.WriteString(t.path(k)[len(prefix):])
		name := uint32(text.Len())
		text.WriteString(t.text[e.name:e.link])
		e.name, e.link = name, uint32(text.Len())
		sub.ents[k-lo] = e
	}
	sub.text = text.String()
	return sub
}

func (t *Tree) path(i int) string {
	start := uint32(0)
	if i > 0 {
		start = t.ents[i-1].link
	}
	return t.text[start:t.ents[i].name]
}

func (t *Tree) entry(i int) TreeEntry {
	e := &t.ents[i]
	return TreeEntry{
		Stamp:  Stamp{Dev: e.dev, Ino: e.ino, Size: e.size, Perm: uint32(e.perm), MTime: e.mtime},
		Link:   t.text[e.name:e.link],
		Type:   e.typ,
		Recent: e.recent,
	}
}

// TreeBuilder makes a Tree of entries added in any order. The zero value
// is ready to use.
type TreeBuilder struct {
	text []byte      // each entry's path then its link target, as added
	ents []treeEntry // ends in text, as added
}

// Grow makes room for n more entries whose paths and link targets are
// size bytes in all.
func (b *TreeBuilder) Grow(n, size int) {
	b.ents = slices.Grow(b.ents, n)
	b.text = slices.Grow(b.text, size)
}

// Add adds the entry e at path p. p and e.Link are copied: nothing passed
// to Add is kept. p must not be empty, e.Type must hold type bits only and
// e.Stamp.Perm no more than 0o7777.
func (b *TreeBuilder) Add(p []byte, e TreeEntry) error {
	switch {
	case len(p) == 0:
		return errors.New("entry with an empty path")
	case e.Type&^fs.ModeType != 0:
		return fmt.Errorf("%q: type %v has more than type bits", p, e.Type)
	case e.Stamp.Perm > 0o7777:
		return fmt.Errorf("%q: mode %o", p, e.Stamp.Perm)
	case uint64(len(b.text))+uint64(len(p))+uint64(len(e.Link)) > math.MaxUint32:
		return fmt.Errorf("%q: more than 4 GiB of paths in one listing", p)
	}
	b.text = append(b.text, p...)
	name := uint32(len(b.text))
	b.text = append(b.text, e.Link...)
	b.ents = append(b.ents, treeEntry{
		dev: e.Stamp.Dev, ino: e.Stamp.Ino, size: e.Stamp.Size, mtime: e.Stamp.MTime,
		name: name, link: uint32(len(b.text)),
		typ: e.Type, perm: uint16(e.Stamp.Perm), recent: e.Recent,
	})
	return nil
}

// Tree returns the entries added as a Tree, and empties b. A path added
// twice is an error: no listing names an entry twice, so a listing that
// does is not believed.
func (b *TreeBuilder) Tree() (*Tree, error) {
	text, src := b.text, b.ents
	*b = TreeBuilder{}
	// The paths are sorted as spans of text, beside the entries they
	// index.
	type span struct{ start, end, i uint32 }
	order := make([]span, len(src))
	start := uint32(0)
	for i, e := range src {
		order[i] = span{start, e.name, uint32(i)}
		start = e.link
	}
	path := func(s span) []byte { return text[s.start:s.end] }
	slices.SortFunc(order, func(a, b span) int { return bytes.Compare(path(a), path(b)) })
	var sorted strings.Builder
	sorted.Grow(len(text))
	ents := make([]treeEntry, len(src))
	for k, s := range order {
		if k > 0 && bytes.Equal(path(s), path(order[k-1])) {
			return nil, fmt.Errorf("%q listed twice", path(s))
		}
		e := src[s.i]
		linkLen := e.link - e.name
		sorted.Write(text[s.start:e.link]) // the path, then its link target
		e.link = uint32(sorted.Len())
		e.name = e.link - linkLen
		ents[k] = e
	}
	return &Tree{text: sorted.String(), ents: ents}, nil
}

// treeInfo is a TreeEntry as an fs.FileInfo, for checkEntry.
type treeInfo struct {
	name string
	e    TreeEntry
}

func (t treeInfo) Name() string       { return path.Base(t.name) }
func (t treeInfo) Size() int64        { return t.e.Stamp.Size }
func (t treeInfo) Mode() fs.FileMode  { return t.e.Mode() }
func (t treeInfo) ModTime() time.Time { return time.Unix(0, t.e.Stamp.MTime) }
func (t treeInfo) IsDir() bool        { return t.e.Type.IsDir() }
func (t treeInfo) Sys() any           { return nil }

// listTree lists root with one ListTree when fsys can, and when it is
// cheap or the stamps are wanted (nil otherwise, or when it failed: the
// caller lists directory by directory).
func listTree(ctx context.Context, fsys FS, root string, within time.Duration, stamps bool) *Tree {
	tl, ok := fsys.(TreeLister)
	if !ok || (!stamps && !tl.TreeListingCheap()) {
		return nil
	}
	tree, err := tl.ListTree(ctx, root, within)
	if err != nil {
		return nil
	}
	return tree
}

// checkTreeEntries is checkTree from a ListTree of root. The entries of m
// are checked in order, so a directory is checked before what is in it:
// a directory replaced by a symlink is reported as such, as the listings
// level by level report it.
func checkTreeEntries(m *engine.Manifest, tree *Tree) error {
	for _, e := range m.Entries {
		te, ok := tree.Lookup(e.Path)
		if !ok {
			return fmt.Errorf("%s: missing", e.Path)
		}
		if err := checkEntry(e, treeInfo{e.Path, te}); err != nil {
			return fmt.Errorf("%s: %w", e.Path, err)
		}
		if e.Kind == engine.KindSymlink && te.Link != e.Link {
			return fmt.Errorf("%s: links to %q, want %q", e.Path, te.Link, e.Link)
		}
	}
	return nil
}

// TreeStamps are the stamps of the regular files of tree, as FS.Stamps
// gives them (their keys are the tree's paths: the maps keep its text).
func TreeStamps(tree *Tree) (map[string]Stamp, map[string]bool) {
	stamps := make(map[string]Stamp, tree.Len())
	recent := map[string]bool{}
	for p, e := range tree.All() {
		if !e.Mode().IsRegular() {
			continue
		}
		stamps[p] = e.Stamp
		if e.Recent {
			recent[p] = true
		}
	}
	return stamps, recent
}
