package layout

import (
	"context"
	"fmt"
	"io/fs"
	"path"
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
	// root, as Lstat would; for regular files with their Stamp, Recent
	// when modified less than within before the host's clock as read
	// when ListTree began (or later).
	ListTree(ctx context.Context, root string, within time.Duration) (map[string]TreeEntry, error)
	// TreeListingCheap reports whether ListTree costs the host less than
	// listing the tree directory by directory now (over SSH: when the
	// connection has a command shell running; otherwise a check that
	// needs no stamps lists directories, and starts no process on the
	// host).
	TreeListingCheap() bool
}

// TreeEntry is one entry ListTree found.
type TreeEntry struct {
	// Mode is the type and permission bits, with fs.ModeSetuid,
	// fs.ModeSetgid and fs.ModeSticky, as Lstat reports them.
	Mode fs.FileMode
	Size int64
	// Link is a symlink's target.
	Link string
	// Stamp and Recent describe a regular file (see FS.Stamps).
	Stamp  Stamp
	Recent bool
}

// treeInfo is a TreeEntry as an fs.FileInfo, for checkEntry.
type treeInfo struct {
	name string
	e    TreeEntry
}

func (t treeInfo) Name() string       { return path.Base(t.name) }
func (t treeInfo) Size() int64        { return t.e.Size }
func (t treeInfo) Mode() fs.FileMode  { return t.e.Mode }
func (t treeInfo) ModTime() time.Time { return time.Unix(0, t.e.Stamp.MTime) }
func (t treeInfo) IsDir() bool        { return t.e.Mode.IsDir() }
func (t treeInfo) Sys() any           { return nil }

// listTree lists root with one ListTree when fsys can, and when it is
// cheap or the stamps are wanted (nil otherwise, or when it failed: the
// caller lists directory by directory).
func listTree(ctx context.Context, fsys FS, root string, within time.Duration, stamps bool) map[string]TreeEntry {
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
func checkTreeEntries(m *engine.Manifest, tree map[string]TreeEntry) error {
	for _, e := range m.Entries {
		te, ok := tree[e.Path]
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
// gives them.
func TreeStamps(tree map[string]TreeEntry) (map[string]Stamp, map[string]bool) {
	stamps := make(map[string]Stamp, len(tree))
	recent := map[string]bool{}
	for p, e := range tree {
		if !e.Mode.IsRegular() {
			continue
		}
		stamps[p] = e.Stamp
		if e.Recent {
			recent[p] = true
		}
	}
	return stamps, recent
}
