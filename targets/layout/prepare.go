package layout

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"flightdeck/engine"
)

// Progress callbacks are throttled: at most one per progressEvery or per
// progressFiles files, plus a first and a final one.
const (
	progressEvery = 50 * time.Millisecond
	progressFiles = 64
)

// Prepare makes releases/<a.ID> complete on the host.
//
// If the release already exists, matches a.Manifest and is intact (Verify,
// content hashes included), Prepare only reports it complete (BytesSent 0). An existing release that is damaged or
// holds other content is an error: it is never replaced in place, because
// it may be current.
//
// Otherwise the release is written to releases/.tmp-<id>-<rand>:
// directories (built mode plus owner rwx), symlinks, and regular files,
// hard-linked from current or the newest complete releases when one of
// them holds a file with the same SHA-256 and mode that still has the
// manifest's size and read-only mode, else copied from a.Dir (hashed while
// copying: a source that changed since its manifest was built is an
// error). Files are read-only. The manifest is stored as ManifestName
// inside the release. The temporary directory is then checked against the
// manifest (Check), its content is durable (FS.Write), and it is renamed to
// releases/<id> without replacing anything; releases/ is fsynced. On any
// failure, or when ctx is done, the temporary directory is removed when
// possible (Clean removes it otherwise).
//
// progress, when not nil, is called once at the start, then at most every
// 50 ms or 64 files, and once at the end; calls are serialised. It counts
// linked files as done but not sent.
func (l *Layout) Prepare(ctx context.Context, fsys FS, a *engine.Artifact, progress func(engine.Progress)) error {
	if err := l.prepare(ctx, fsys, a, progress); err != nil {
		id := "<nil>"
		if a != nil {
			id = a.ID
		}
		return fmt.Errorf("prepare %s release %s: %w", l.name, id, err)
	}
	return nil
}

func (l *Layout) prepare(ctx context.Context, fsys FS, a *engine.Artifact, progress func(engine.Progress)) (err error) {
	if a == nil {
		return errors.New("no artifact")
	}
	if err := engine.ValidateReleaseID(a.ID); err != nil {
		return err
	}
	if err := CheckManifest(a.Manifest); err != nil {
		return err
	}
	if r := a.Manifest.Release; r != "" && r != a.ID {
		return fmt.Errorf("manifest is for release %q", r)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	pr := newReporter(a.Manifest, progress)
	for _, d := range []string{l.releasesDir(), path.Join(l.root, engine.SharedDir)} {
		if _, err := expect(ctx, fsys, d, "directory"); err != nil {
			return err
		}
	}

	rp := l.ReleasePath(a.ID)
	if exists, err := expect(ctx, fsys, rp, "directory"); err != nil {
		return err
	} else if exists {
		return l.reuse(ctx, fsys, a, pr)
	}

	if err := l.mkdirAll(ctx, fsys, l.releasesDir()); err != nil {
		return fmt.Errorf("create layout: %w", err)
	}
	if err := l.mkdirAll(ctx, fsys, path.Join(l.root, engine.SharedDir)); err != nil {
		return fmt.Errorf("create layout: %w", err)
	}
	index, trusted, err := l.linkIndex(ctx, fsys, a.Manifest)
	if err != nil {
		return err
	}

	tmp := path.Join(l.releasesDir(), engine.TempPrefix+a.ID+"-"+engine.RandomSuffix(6))
	if err := fsys.Mkdir(ctx, tmp, 0o700); err != nil {
		return fmt.Errorf("create temporary release: %w", err)
	}
	defer func() {
		if err != nil {
			_ = fsys.RemoveAll(context.WithoutCancel(ctx), tmp)
		}
	}()

	stored, mb, err := a.StoredManifest()
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	ops, entry := l.ops(ctx, tmp, a, index)
	ops = append(ops, Op{Kind: engine.KindFile, Name: path.Join(tmp, engine.ManifestName), Mode: 0o444,
		Size: int64(len(mb)), Open: bytesSource(mb)})
	entry = append(entry, -1)

	pr.report(true)
	err = fsys.Write(ctx, ops, func(i int, sent int64) {
		if e := entry[i]; e >= 0 {
			pr.file(a.Manifest.Entries[e].Size, sent)
		}
	})
	if err != nil {
		return err
	}
	if err := fsys.Chmod(ctx, tmp, 0o755); err != nil {
		return err
	}
	if err := checkTree(ctx, fsys, tmp, stored); err != nil {
		if trusted && ctx.Err() == nil {
			// Files linked from a release found complete a moment ago
			// (not listed again) were changed since: once more, with
			// every base listed.
			l.forgetChecked()
			if rerr := fsys.RemoveAll(ctx, tmp); rerr == nil {
				return l.prepare(ctx, fsys, a, progress)
			}
		}
		return fmt.Errorf("the written release is not complete: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := fsys.Rename(ctx, tmp, rp); err != nil {
		if exists, _ := expect(ctx, fsys, rp, "directory"); exists {
			// Prepared meanwhile by someone else: keep theirs if it is ours.
			_ = fsys.RemoveAll(ctx, tmp)
			return l.reuse(ctx, fsys, a, pr)
		}
		return fmt.Errorf("rename into place: %w", err)
	}
	if err := fsys.SyncDir(ctx, l.releasesDir()); err != nil {
		return err
	}
	pr.report(true)
	return nil
}

// reuse accepts an existing releases/<a.ID> when it is intact and holds
// a's content.
func (l *Layout) reuse(ctx context.Context, fsys FS, a *engine.Artifact, pr *reporter) error {
	m, err := l.verify(ctx, fsys, a.ID)
	if err != nil {
		return fmt.Errorf("exists but is damaged (remove it or use a new id): %w", err)
	}
	if !slices.Equal(m.Entries, a.Manifest.Entries) {
		return errors.New("exists with different content (release ids must not be reused)")
	}
	pr.complete()
	return nil
}

// mkdirAll creates dir and its missing parents (mode 0755).
func (l *Layout) mkdirAll(ctx context.Context, fsys FS, dir string) error {
	if _, err := fsys.Lstat(ctx, dir); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if parent := path.Dir(dir); parent != dir {
		if err := l.mkdirAll(ctx, fsys, parent); err != nil {
			return err
		}
	}
	if err := fsys.Mkdir(ctx, dir, 0o755); err != nil {
		if _, serr := fsys.Lstat(ctx, dir); serr == nil {
			return nil // created meanwhile
		}
		return err
	}
	return nil
}

// linkKey identifies a file that can be hard-linked: same content and same
// on-host mode (a link shares the mode too).
type linkKey struct {
	hash string
	mode fs.FileMode
}

// linkIndex maps the files of want to files of current or of the newest
// l.bases other releases that can be hard-linked: same SHA-256 and mode in
// their manifest, and, on the host now, a regular file with the manifest's
// size and read-only mode (a file made writable and edited is not reused).
// Releases without a readable manifest are skipped. A release this layout
// found complete less than checkedFor ago is taken as it was then, without
// reading its manifest or listing it again; trusted says whether a file
// of the index comes from one.
func (l *Layout) linkIndex(ctx context.Context, fsys FS, want *engine.Manifest) (index map[linkKey]string, trusted bool, err error) {
	cur, _ := l.current(ctx, fsys) // an odd current link must not stop a prepare
	rels, err := l.releases(ctx, fsys)
	if err != nil {
		return nil, false, err
	}
	var bases []string
	if cur != "" && slices.Contains(rels, cur) {
		bases = append(bases, cur)
	}
	for i, n := len(rels)-1, 0; i >= 0 && n < l.bases; i-- {
		if rels[i] != cur {
			bases = append(bases, rels[i])
			n++
		}
	}
	needed := map[linkKey]bool{}
	for _, e := range want.Entries {
		if e.Kind == engine.KindFile {
			needed[linkKey{e.Hash, FileMode(e)}] = true
		}
	}
	// Candidates, first base first; then the directories holding them are
	// listed to check each candidate as it is on the host now.
	type candidate struct {
		e       *engine.ManifestEntry // in the base's manifest (shared by the fleet's hosts)
		root    string
		checked bool // its release was found complete a moment ago
	}
	var cands []candidate
	taken := map[linkKey]bool{}
	// The first base's manifest is read first. When it lacks files, the
	// other bases' manifests are read, at once, but only those smaller
	// than the files still missing: reading a manifest (a few round trips
	// and up to megabytes, for every host) must not cost more than sending
	// what it could spare. A base without a readable manifest is skipped.
	manifests := make([]*engine.Manifest, len(bases))
	readOthers := func() error {
		missing := int64(0)
		seen := map[linkKey]bool{}
		for _, e := range want.Entries {
			k := linkKey{e.Hash, FileMode(e)}
			if e.Kind == engine.KindFile && !taken[k] && !seen[k] {
				seen[k] = true
				missing += e.Size
			}
		}
		var rg errgroup.Group
		for i := 1; i < len(bases); i++ {
			if manifests[i] != nil {
				continue
			}
			rg.Go(func() error {
				name := path.Join(l.ReleasePath(bases[i]), engine.ManifestName)
				if fi, err := fsys.Lstat(ctx, name); err != nil || fi.Size() > missing {
					return nil
				}
				manifests[i], _ = l.readManifest(ctx, fsys, l.ReleasePath(bases[i]))
				return nil
			})
		}
		_ = rg.Wait()
		return ctx.Err()
	}
	// A base this layout found complete a moment ago (the rollback path
	// a deploy verifies first is current) is neither read nor listed again.
	checked := make([]bool, len(bases))
	for i, id := range bases {
		if m := l.checkedManifest(ctx, id); m != nil {
			manifests[i], checked[i] = m, true
		}
	}
	if len(bases) > 0 && manifests[0] == nil {
		manifests[0], _ = l.readManifest(ctx, fsys, l.ReleasePath(bases[0]))
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
	}
	for i, id := range bases {
		if len(taken) == len(needed) {
			break
		}
		if i == 1 {
			if err := readOthers(); err != nil {
				return nil, false, err
			}
		}
		root := l.ReleasePath(id)
		m := manifests[i]
		if m == nil {
			continue
		}
		for j := range m.Entries {
			e := &m.Entries[j]
			if e.Kind != engine.KindFile {
				continue
			}
			k := linkKey{e.Hash, FileMode(*e)}
			if needed[k] && !taken[k] {
				taken[k] = true
				cands = append(cands, candidate{e, root, checked[i]})
			}
		}
	}
	index = make(map[linkKey]string, len(cands))
	dirs := map[string][]int{}
	for i, c := range cands {
		if c.checked {
			index[linkKey{c.e.Hash, FileMode(*c.e)}] = path.Join(c.root, c.e.Path)
			trusted = true
			continue
		}
		d := path.Join(c.root, path.Dir(c.e.Path))
		dirs[d] = append(dirs[d], i)
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(listParallel)
	for d, idx := range dirs {
		g.Go(func() error {
			ents, err := fsys.ReadDir(gctx, d)
			if err != nil {
				return gctx.Err() // a vanished directory only means no link
			}
			seen := make(map[string]fs.FileInfo, len(ents))
			for _, fi := range ents {
				seen[fi.Name()] = fi
			}
			mu.Lock()
			defer mu.Unlock()
			for _, i := range idx {
				c := cands[i]
				if fi, ok := seen[path.Base(c.e.Path)]; ok && checkEntry(*c.e, fi) == nil {
					index[linkKey{c.e.Hash, FileMode(*c.e)}] = path.Join(c.root, c.e.Path)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, false, err
	}
	return index, trusted, nil
}

// ops turns the manifest into the operations that write the release under
// tmp; entry maps each op to its manifest entry.
func (l *Layout) ops(ctx context.Context, tmp string, a *engine.Artifact, index map[linkKey]string) (ops []Op, entry []int) {
	ops = make([]Op, 0, len(a.Manifest.Entries)+1)
	entry = make([]int, 0, len(a.Manifest.Entries)+1)
	for i, e := range a.Manifest.Entries {
		op := Op{Kind: e.Kind, Name: path.Join(tmp, e.Path)}
		switch e.Kind {
		case engine.KindDir:
			op.Mode = DirMode(e)
		case engine.KindSymlink:
			op.Target = e.Link
		case engine.KindFile:
			op.Mode = FileMode(e)
			op.Size = e.Size
			op.Link = index[linkKey{e.Hash, FileMode(e)}]
			op.Open = fileSource(ctx, a.Dir, &a.Manifest.Entries[i])
		}
		ops = append(ops, op)
		entry = append(entry, i)
	}
	return ops, entry
}

// bufPool holds hashing states for source readers.
var hashPool = sync.Pool{New: func() any { return sha256.New() }}

// fileSource opens the built file of e under dir and checks, as it is
// read, that it is still what the manifest says. It holds a pointer to
// the artifact's entry and joins the name only when opened: a fleet's
// prepares hold one source per file per host, and most are never opened
// (the file is linked from an earlier release).
func fileSource(ctx context.Context, dir string, e *engine.ManifestEntry) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		name := filepath.Join(dir, filepath.FromSlash(e.Path))
		f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			return nil, fmt.Errorf("open source: %w", err)
		}
		h := hashPool.Get().(hash.Hash)
		h.Reset()
		return &checkedReader{ctx: ctx, r: f, c: f, h: h, e: *e}, nil
	}
}

// bytesSource serves b, already known to be right.
func bytesSource(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return &bytesReader{b: b}, nil }
}

type bytesReader struct {
	b   []byte
	off int
}

func (r *bytesReader) Read(p []byte) (int, error) {
	if r.off >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.off:])
	r.off += n
	return n, nil
}

func (r *bytesReader) Size() int64  { return int64(len(r.b)) }
func (r *bytesReader) Close() error { return nil }

// checkedReader hashes what it reads and, at the end, fails instead of
// reporting io.EOF when the size or hash differ from the manifest's. It
// stops when ctx is done.
type checkedReader struct {
	ctx context.Context
	r   io.Reader
	c   io.Closer
	h   hash.Hash
	n   int64
	e   engine.ManifestEntry
}

func (r *checkedReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := r.r.Read(p)
	r.n += int64(n)
	r.h.Write(p[:n])
	if r.n > r.e.Size {
		return n, fmt.Errorf("source has more than the %d bytes the manifest says (changed since the manifest was built?)", r.e.Size)
	}
	if errors.Is(err, io.EOF) {
		if r.n != r.e.Size {
			return n, fmt.Errorf("source has %d bytes, manifest says %d (changed since the manifest was built?)", r.n, r.e.Size)
		}
		if sum := hex.EncodeToString(r.h.Sum(nil)); sum != r.e.Hash {
			return n, fmt.Errorf("source sha256 %s, manifest says %s (changed since the manifest was built?)", sum, r.e.Hash)
		}
	}
	return n, err
}

// Size is the size the content must have (for concurrent writers).
func (r *checkedReader) Size() int64 { return r.e.Size }

func (r *checkedReader) Close() error {
	if r.h != nil {
		hashPool.Put(r.h)
		r.h = nil
	}
	return r.c.Close()
}

// reporter throttles and serialises progress callbacks.
type reporter struct {
	mu        sync.Mutex
	fn        func(engine.Progress)
	p         engine.Progress
	last      time.Time
	lastFiles int
}

func newReporter(m *engine.Manifest, fn func(engine.Progress)) *reporter {
	r := &reporter{fn: fn}
	r.p.FilesTotal, r.p.BytesTotal = m.Files()
	return r
}

func (r *reporter) file(size, sent int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.p.FilesDone++
	r.p.BytesDone += size
	r.p.BytesSent += sent
	r.reportLocked(false)
}

func (r *reporter) complete() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.p.FilesDone, r.p.BytesDone = r.p.FilesTotal, r.p.BytesTotal
	r.reportLocked(true)
}

func (r *reporter) report(force bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reportLocked(force)
}

func (r *reporter) reportLocked(force bool) {
	if r.fn == nil {
		return
	}
	if !force && r.p.FilesDone-r.lastFiles < progressFiles && time.Since(r.last) < progressEvery {
		return
	}
	r.last, r.lastFiles = time.Now(), r.p.FilesDone
	r.fn(r.p)
}
