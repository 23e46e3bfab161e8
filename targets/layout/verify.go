package layout

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"flightdeck/engine"
)

// listParallel bounds the directories listed at once by Check and Prepare:
// enough to keep a remote host's pipe full, few enough to stay polite.
const listParallel = 64

// CheckManifest rejects a manifest that could write outside the release:
// every path must be relative, clean, without "..", not the manifest file
// itself, listed after its parent, and its parent must be a directory entry
// (so that no entry is ever written through a symlink of the release).
func CheckManifest(m *engine.Manifest) error {
	if m == nil {
		return errors.New("manifest is missing")
	}
	kinds := make(map[string]engine.FileKind, len(m.Entries))
	for _, e := range m.Entries {
		p := e.Path
		switch {
		case p == "" || p == "." || path.IsAbs(p) || path.Clean(p) != p:
			return fmt.Errorf("manifest entry %q: path must be relative and clean", p)
		case p == ".." || strings.HasPrefix(p, "../"): // a clean relative path has ".." only in front
			return fmt.Errorf("manifest entry %q: path must not contain '..'", p)
		case p == engine.ManifestName:
			return fmt.Errorf("manifest entry %q: reserved name", p)
		}
		if dir := path.Dir(p); dir != "." && kinds[dir] != engine.KindDir {
			return fmt.Errorf("manifest entry %q: parent %q is not a directory listed before it", p, dir)
		}
		if _, dup := kinds[p]; dup {
			return fmt.Errorf("manifest entry %q: listed twice", p)
		}
		switch e.Kind {
		case engine.KindDir, engine.KindSymlink:
		case engine.KindFile:
			if len(e.Hash) != sha256.Size*2 {
				return fmt.Errorf("manifest entry %q: bad sha256 %q", p, e.Hash)
			}
			if e.Size < 0 {
				return fmt.Errorf("manifest entry %q: negative size", p)
			}
		default:
			return fmt.Errorf("manifest entry %q: unknown kind %q", p, e.Kind)
		}
		if e.Mode&^0o7777 != 0 {
			return fmt.Errorf("manifest entry %q: bad mode %o", p, e.Mode)
		}
		kinds[p] = e.Kind
	}
	return nil
}

// GoMode converts Unix mode bits (permissions, setuid as 04000, setgid as
// 02000, sticky as 01000) to an fs.FileMode.
func GoMode(m uint32) fs.FileMode {
	out := fs.FileMode(m) & fs.ModePerm
	if m&syscall.S_ISUID != 0 {
		out |= fs.ModeSetuid
	}
	if m&syscall.S_ISGID != 0 {
		out |= fs.ModeSetgid
	}
	if m&syscall.S_ISVTX != 0 {
		out |= fs.ModeSticky
	}
	return out
}

// modeBits are the bits of a mode the layout sets and checks.
const modeBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

// FileMode is the on-host mode of a release file: as built, without any
// write bit (a hard link shares its mode with every release that has it).
func FileMode(e engine.ManifestEntry) fs.FileMode { return GoMode(e.Mode) &^ 0o222 }

// DirMode is the on-host mode of a release directory: as built (special
// bits included) plus owner rwx, so that the release can be removed.
func DirMode(e engine.ManifestEntry) fs.FileMode { return GoMode(e.Mode) | 0o700 }

// readManifest reads and checks the manifest stored in the release dir
// root. The manifest may be shared with other hosts (Options.Manifests):
// it must not be modified.
func (l *Layout) readManifest(ctx context.Context, fsys FS, root string) (*engine.Manifest, error) {
	name := path.Join(root, engine.ManifestName)
	b, err := fsys.ReadFile(ctx, name, maxManifest)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read manifest: %w: %w", engine.ErrNoManifest, err)
	}
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	m, err := l.manifests.parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return m, nil
}

// Manifests lets the layouts of a fleet share the manifests they read: a
// release's manifest is the same bytes on every host, so it is parsed and
// checked once, and held once, instead of once per host (a 500-file
// manifest is ~1 ms of CPU and ~150 KB to parse). It keeps the last few
// distinct manifests, known by the SHA-256 of their bytes. Safe for
// concurrent use; the zero value is ready.
type Manifests struct {
	mu   sync.Mutex
	keep []*parsedManifest // newest last
}

// keptManifests is how many distinct manifests a Manifests keeps: a
// rollback target, current and the bases a prepare links from.
const keptManifests = 4

// parsedManifest is one manifest's bytes parsed, once done is closed.
type parsedManifest struct {
	sum  [sha256.Size]byte
	done chan struct{}
	m    *engine.Manifest
	err  error
	// reading: made by bySum for a read in progress, which parse does not
	// wait for (it may take a host's command timeout).
	reading bool
	// waiting counts the callers of bySum that waited for it (for tests).
	waiting atomic.Int32
}

// parse returns the manifest b holds, checked (CheckManifest); hosts
// asking for the same bytes at once wait for one parse. A nil Manifests
// parses every time.
func (c *Manifests) parse(b []byte) (*engine.Manifest, error) {
	if c == nil {
		return parseManifest(b)
	}
	sum := sha256.Sum256(b)
	c.mu.Lock()
	for _, p := range c.keep {
		if p.sum == sum && !p.reading {
			c.mu.Unlock()
			<-p.done
			return p.m, p.err
		}
	}
	p := &parsedManifest{sum: sum, done: make(chan struct{})}
	c.keepLocked(p)
	c.mu.Unlock()
	p.m, p.err = parseManifest(b)
	close(p.done)
	return p.m, p.err
}

// errSumMoved ends a read for bySum whose bytes turned out to have
// another SHA-256 than the one asked for: those waiting for it read their
// own.
var errSumMoved = errors.New("manifest changed between its digest and its read")

// sharedReadWait bounds how long a host waits for another host's read of
// the manifest both named by digest (see bySum) before it reads its own:
// a host that stops answering mid-read must not hold up the fleet's check
// for its command timeout.
const sharedReadWait = 2 * time.Second

// bySum returns the manifest whose bytes have the SHA-256 sum, as a host
// named it: the one this cache holds or is parsing, else the one read
// returns. Hosts asking for the same sum at once wait for one read (a
// fleet's rollback target is the same manifest on every host), up to
// sharedReadWait; a caller whose wait ends without the manifest (the read
// failed, found other bytes, or is late) reads its own, parsed once for
// all those with the same bytes. A nil Manifests reads every time.
func (c *Manifests) bySum(ctx context.Context, sum [sha256.Size]byte, read func() ([]byte, error)) (*engine.Manifest, error) {
	if c == nil {
		b, err := read()
		if err != nil {
			return nil, err
		}
		return parseManifest(b)
	}
	c.mu.Lock()
	for _, p := range c.keep {
		if p.sum != sum {
			continue
		}
		c.mu.Unlock()
		p.waiting.Add(1)
		t := time.NewTimer(sharedReadWait)
		defer t.Stop()
		select {
		case <-p.done:
			if !errors.Is(p.err, errSumMoved) {
				return p.m, p.err
			}
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		// Its own read (parse waits for no read, only for parses).
		b, err := read()
		if err != nil {
			return nil, err
		}
		return c.parse(b)
	}
	// This caller reads for every host that asks for sum meanwhile.
	p := &parsedManifest{sum: sum, done: make(chan struct{}), reading: true}
	c.keepLocked(p)
	c.mu.Unlock()
	b, err := read()
	if err == nil && sha256.Sum256(b) == sum {
		p.m, p.err = parseManifest(b)
		c.mu.Lock()
		p.reading = false // read: parse may share it now
		c.mu.Unlock()
		close(p.done)
		return p.m, p.err
	}
	c.mu.Lock()
	if i := slices.Index(c.keep, p); i >= 0 {
		c.keep = slices.Delete(c.keep, i, i+1)
	}
	c.mu.Unlock()
	p.err = errSumMoved
	close(p.done)
	if err != nil {
		return nil, err
	}
	return c.parse(b)
}

// keepLocked adds p as the newest manifest kept, dropping the oldest
// beyond keptManifests; c.mu is held.
func (c *Manifests) keepLocked(p *parsedManifest) {
	c.keep = append(c.keep, p)
	if len(c.keep) > keptManifests {
		c.keep = slices.Delete(c.keep, 0, len(c.keep)-keptManifests)
	}
}

func parseManifest(b []byte) (*engine.Manifest, error) {
	m, err := engine.ParseManifest(b)
	if err != nil {
		return nil, err
	}
	if err := CheckManifest(m); err != nil {
		return nil, err
	}
	return m, nil
}

// Check reports whether releases/<id> is complete: a directory (not a
// symlink) holding a manifest that names the release, and every entry of
// the manifest present with its kind, its size and read-only mode (files)
// or its target (symlinks). It reads directory listings only, one per
// directory of the release; Verify hashes the content too. Entries added
// after the release was prepared (by hooks) are not reported.
func (l *Layout) Check(ctx context.Context, fsys FS, id string) error {
	if err := engine.ValidateReleaseID(id); err != nil {
		return fmt.Errorf("check %s: %w", l.name, err)
	}
	end := l.startCheck(id) // at once: a prepare beside it waits for it
	m, err := l.check(ctx, fsys, id)
	end(m)
	if err != nil {
		return fmt.Errorf("check %s release %s: %w", l.name, id, err)
	}
	return nil
}

// Verify checks releases/<id> as Check does and hashes its files against
// the manifest. The error names the first bad path.
//
// By default only the files that changed since the host's last
// verification are hashed: the record releases/.verified (VerifiedName)
// lists the stamp (device, inode, size, mode, modification time) of each
// file that verification found intact, with its SHA-256; a file whose
// stamp is unchanged and whose recorded SHA-256 is the manifest's is not
// read again, and the record is then rewritten for the files of this
// release. Hard-linked files share their inode, so a file hashed for one
// release is vouched for in every release that links it. Any write
// through the file system moves a file's modification time to the host's
// clock (files modified within racyMargin of a verification are not
// recorded), a replaced file has another inode, and chmod changes the
// mode, so an unchanged stamp means that nothing rewrote the file through
// the file system since it was hashed. What it cannot see: content
// rewritten with its size kept and its modification time then set back
// to the same nanosecond on purpose (utimensat), and damage below the
// file system. Options.FullVerify hashes every file every time; so does a
// host whose FS gives no Stamps. The status change time (ctime), which
// nobody can set, is not in the stamp: flightdeck's own hard links and
// prunes change it on every shared file at every deploy.
func (l *Layout) Verify(ctx context.Context, fsys FS, id string) error {
	if err := engine.ValidateReleaseID(id); err != nil {
		return fmt.Errorf("verify %s: %w", l.name, err)
	}
	end := l.startCheck(id) // at once: a prepare beside it waits for it
	m, err := l.verify(ctx, fsys, id)
	end(m)
	if err != nil {
		return fmt.Errorf("verify %s release %s: %w", l.name, id, err)
	}
	return nil
}

func (l *Layout) check(ctx context.Context, fsys FS, id string) (*engine.Manifest, error) {
	if _, err := expect(ctx, fsys, l.releasesDir(), "directory"); err != nil {
		return nil, err
	}
	root := l.ReleasePath(id)
	if exists, err := expect(ctx, fsys, root, "directory"); err != nil {
		return nil, err
	} else if !exists {
		return nil, fmt.Errorf("%s: %w", root, fs.ErrNotExist)
	}
	return l.checkRelease(ctx, fsys, id)
}

// expectRelease checks that releases/<id> is a directory, not a symlink,
// once releases/ was seen to be one.
func (l *Layout) expectRelease(ctx context.Context, fsys FS, id string) error {
	exists, err := expect(ctx, fsys, l.ReleasePath(id), "directory")
	if err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("release %s is not on the host", id)
	}
	return nil
}

// checkRelease is check once releases/ and releases/<id> were seen to be
// directories: the manifest is read while the release's top directory is
// listed (one round trip for both over SFTP).
func (l *Layout) checkRelease(ctx context.Context, fsys FS, id string) (*engine.Manifest, error) {
	m, _, err := l.checkReleaseTree(ctx, fsys, id, 0, false)
	return m, err
}

// checkReleaseTree is checkRelease, from one ListTree of the release when
// fsys can (TreeLister) and it is cheap or the stamps are wanted; it then
// returns the tree (with the stamps of its files, Recent as of within),
// else it lists directories (tree nil).
func (l *Layout) checkReleaseTree(ctx context.Context, fsys FS, id string, within time.Duration, stamps bool) (m *engine.Manifest, tree *Tree, err error) {
	defer func() {
		if err != nil {
			l.noteChecked(id, nil)
		} else {
			l.noteChecked(id, m) // before a Verify's hashing: a prepare may link from it
		}
	}()
	root := l.ReleasePath(id)
	if !stamps {
		if m, tree, ok := l.checkSummed(ctx, fsys, id); ok {
			return m, tree, nil
		}
	}
	var top []fs.FileInfo
	var listErr error
	together(fsys,
		func() { m, err = l.readManifest(ctx, fsys, root) },
		func() {
			if tree = listTree(ctx, fsys, root, within, stamps); tree == nil {
				top, listErr = fsys.ReadDir(ctx, root)
			}
		},
	)
	if err != nil {
		return nil, nil, err
	}
	if m.Release != id {
		return nil, nil, fmt.Errorf("manifest names release %q", m.Release)
	}
	if tree != nil {
		if err := checkTreeEntries(m, tree); err != nil {
			return nil, nil, err
		}
		return m, tree, nil
	}
	if listErr != nil {
		return nil, nil, fmt.Errorf("list .: %w", listErr)
	}
	if err := checkTreeFrom(ctx, fsys, root, m, top); err != nil {
		return nil, nil, err
	}
	return m, nil, nil
}

// checkSummed is checkReleaseTree without stamps from one listing of the
// release that names its manifest by digest (SummedTreeLister), when fsys
// can and it is cheap: the manifest is then read from this host only when
// no other host of the fleet read the same bytes (Options.Manifests). ok
// is false when the release is not found complete this way, for whatever
// reason: the caller then checks as without, and reports what it finds.
func (l *Layout) checkSummed(ctx context.Context, fsys FS, id string) (m *engine.Manifest, tree *Tree, ok bool) {
	sl, can := fsys.(SummedTreeLister)
	if !can || l.manifests == nil || !sl.TreeListingCheap() {
		return nil, nil, false
	}
	tree, sum, summed, err := sl.ListTreeSummed(ctx, l.ReleasePath(id), engine.ManifestName)
	if err != nil {
		return nil, nil, false
	}
	if m = l.manifestListed(ctx, fsys, id, tree, sum, summed); m == nil {
		return nil, nil, false
	}
	return m, tree, true
}

func (l *Layout) verify(ctx context.Context, fsys FS, id string) (*engine.Manifest, error) {
	if !l.fullVerify {
		return l.verifyChanged(ctx, fsys, id)
	}
	m, err := l.check(ctx, fsys, id)
	if err != nil {
		return nil, err
	}
	if err := hashTree(ctx, fsys, l.ReleasePath(id), m); err != nil {
		return nil, err
	}
	return m, nil
}

// checkTree checks that every entry of m is present under root with its
// kind, size and mode (files) or target (symlinks), from one ListTree
// when fsys can, else from the listings of root and of each directory of
// m, level by level: a directory is listed only once its parent's listing
// showed it is a directory, so no listing goes through a symlink.
func checkTree(ctx context.Context, fsys FS, root string, m *engine.Manifest) error {
	if tree := listTree(ctx, fsys, root, 0, false); tree != nil {
		return checkTreeEntries(m, tree)
	}
	top, err := fsys.ReadDir(ctx, root)
	if err != nil {
		return fmt.Errorf("list .: %w", err)
	}
	return checkTreeFrom(ctx, fsys, root, m, top)
}

// checkTreeFrom is checkTree with root's listing, top, already read.
func checkTreeFrom(ctx context.Context, fsys FS, root string, m *engine.Manifest, top []fs.FileInfo) error {
	children := map[string][]engine.ManifestEntry{}
	for _, e := range m.Entries {
		d := path.Dir(e.Path)
		children[d] = append(children[d], e)
	}
	level := []string{"."}
	lists := [][]fs.FileInfo{top}
	for len(level) > 0 {
		var next []string
		var links []engine.ManifestEntry
		for i, d := range level {
			seen := make(map[string]fs.FileInfo, len(lists[i]))
			for _, fi := range lists[i] {
				seen[fi.Name()] = fi
			}
			for _, e := range children[d] {
				fi, ok := seen[path.Base(e.Path)]
				if !ok {
					return fmt.Errorf("%s: missing", e.Path)
				}
				if err := checkEntry(e, fi); err != nil {
					return fmt.Errorf("%s: %w", e.Path, err)
				}
				switch e.Kind {
				case engine.KindDir:
					next = append(next, e.Path)
				case engine.KindSymlink:
					links = append(links, e)
				}
			}
		}
		if err := checkLinks(ctx, fsys, root, links); err != nil {
			return err
		}
		level = next
		if len(level) > 0 {
			var err error
			if lists, err = listLevel(ctx, fsys, root, level); err != nil {
				return err
			}
		}
	}
	return nil
}

// listLevel lists the directories dirs (relative to root) at once.
func listLevel(ctx context.Context, fsys FS, root string, dirs []string) ([][]fs.FileInfo, error) {
	lists := make([][]fs.FileInfo, len(dirs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(listParallel)
	for i, d := range dirs {
		g.Go(func() error {
			ents, err := fsys.ReadDir(gctx, path.Join(root, d))
			if err != nil {
				return fmt.Errorf("list %s: %w", d, err)
			}
			lists[i] = ents
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return lists, nil
}

func checkEntry(e engine.ManifestEntry, fi fs.FileInfo) error {
	m := fi.Mode()
	switch e.Kind {
	case engine.KindDir:
		if !m.IsDir() {
			return fmt.Errorf("is %s, want a directory", kindName(m))
		}
	case engine.KindSymlink:
		if m&fs.ModeSymlink == 0 {
			return fmt.Errorf("is %s, want a symlink", kindName(m))
		}
	case engine.KindFile:
		if !m.IsRegular() {
			return fmt.Errorf("is %s, want a regular file", kindName(m))
		}
		if got, want := m&modeBits, FileMode(e); got != want {
			return fmt.Errorf("mode %v, want %v (release files are read-only)", got, want)
		}
		if fi.Size() != e.Size {
			return fmt.Errorf("size %d, want %d", fi.Size(), e.Size)
		}
	}
	return nil
}

func checkLinks(ctx context.Context, fsys FS, root string, links []engine.ManifestEntry) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(listParallel)
	for _, e := range links {
		g.Go(func() error {
			t, err := fsys.ReadLink(gctx, path.Join(root, e.Path))
			if err != nil {
				return fmt.Errorf("%s: %w", e.Path, err)
			}
			if t != e.Link {
				return fmt.Errorf("%s: links to %q, want %q", e.Path, t, e.Link)
			}
			return nil
		})
	}
	return g.Wait()
}

// hashTree hashes every file of m under root (already checked by
// checkTree) and compares with the manifest.
func hashTree(ctx context.Context, fsys FS, root string, m *engine.Manifest) error {
	var files []engine.ManifestEntry
	for _, e := range m.Entries {
		if e.Kind == engine.KindFile {
			files = append(files, e)
		}
	}
	return hashFiles(ctx, fsys, root, files, nil)
}

// hashFiles hashes files (their manifest entries, under root) and compares
// each with its manifest's SHA-256; matched, when set, is told of each file
// that matched, in order, until the first that did not.
func hashFiles(ctx context.Context, fsys FS, root string, files []engine.ManifestEntry, matched func(engine.ManifestEntry)) error {
	if len(files) == 0 {
		return nil
	}
	names := make([]string, len(files))
	for i, e := range files {
		names[i] = path.Join(root, e.Path)
	}
	sums, err := fsys.Hash(ctx, names)
	if err != nil {
		return err
	}
	for i, e := range files {
		if sums[i] != e.Hash {
			return fmt.Errorf("%s: content changed: sha256 %s, want %s", e.Path, sums[i], e.Hash)
		}
		if matched != nil {
			matched(e)
		}
	}
	return nil
}
