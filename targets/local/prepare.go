package local

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
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"flightdeck/engine"
)

const (
	// syncAutoFiles is the number of copied files up to which SyncAuto
	// fsyncs them one by one rather than calling syncfs(2).
	syncAutoFiles = 256

	// Progress callbacks are throttled: at most one per progressEvery or
	// per progressFiles files, plus a first and a final one.
	progressEvery = 50 * time.Millisecond
	progressFiles = 64
)

// Prepare makes releases/<a.ID> complete on the host.
//
// If the release already exists, matches a.Manifest and verifies against it,
// Prepare does nothing but report it complete (BytesSent 0). An existing
// release that is damaged or holds other content is an error: it is never
// replaced in place, because it may be current.
//
// Otherwise the release is written to releases/.tmp-<id>-<rand>: directories
// are created (built mode plus owner rwx), symlinks recreated, and regular
// files hard-linked from current or the newest complete releases when one
// of them holds a read-only file with the same SHA-256, size and mode, or
// else copied from a.Dir (hashed while copying: a source that changed since
// its manifest was built is an error). Files are read-only. The manifest is
// stored as ManifestName inside the release. After the content is durable
// (see SyncMode) the directory is renamed to releases/<id> without
// replacing anything, and releases/ is fsynced. On any failure, or when ctx
// is done, the temporary directory is removed.
//
// progress, when not nil, is called on the calling goroutine: once at the
// start, then at most every 50 ms or 64 files, and once at the end. It
// counts linked files as done but not sent.
func (h *Host) Prepare(ctx context.Context, a *engine.Artifact, progress func(engine.Progress)) error {
	if err := h.prepare(ctx, a, progress); err != nil {
		id := "<nil>"
		if a != nil {
			id = a.ID
		}
		return fmt.Errorf("prepare %s release %s: %w", h.name, id, err)
	}
	return nil
}

func (h *Host) prepare(ctx context.Context, a *engine.Artifact, progress func(engine.Progress)) (err error) {
	if a == nil {
		return errors.New("no artifact")
	}
	if err := engine.ValidateReleaseID(a.ID); err != nil {
		return err
	}
	if err := checkManifest(a.Manifest); err != nil {
		return err
	}
	if r := a.Manifest.Release; r != "" && r != a.ID {
		return fmt.Errorf("manifest is for release %q", r)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	pr := newReporter(a.Manifest, progress)

	rp := h.ReleasePath(a.ID)
	if _, err := os.Lstat(rp); err == nil {
		m, err := h.verify(ctx, a.ID)
		if err != nil {
			return fmt.Errorf("exists but is damaged (remove it or use a new id): %w", err)
		}
		if !slices.Equal(m.Entries, a.Manifest.Entries) {
			return errors.New("exists with different content (release ids must not be reused)")
		}
		pr.p.FilesDone, pr.p.BytesDone = pr.p.FilesTotal, pr.p.BytesTotal
		pr.report(true)
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}

	for _, d := range []string{h.releasesDir(), filepath.Join(h.deployTo, engine.SharedDir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create layout: %w", err)
		}
	}
	index := h.linkIndex()

	tmp := filepath.Join(h.releasesDir(), engine.TempPrefix+a.ID+"-"+engine.RandomSuffix(6))
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return fmt.Errorf("create temporary release: %w", err)
	}
	defer func() {
		if err != nil {
			if rerr := removeTree(tmp); rerr != nil {
				err = errors.Join(err, fmt.Errorf("clean up: %w", rerr))
			}
		}
	}()

	w := &writer{
		ctx:   ctx,
		src:   a.Dir,
		dst:   tmp,
		index: index,
		sync:  h.sync,
		hash:  sha256.New(),
		dirs:  []string{tmp},
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	w.buf = *bp

	pr.report(true)
	for _, e := range a.Manifest.Entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		sent, err := w.entry(e)
		if err != nil {
			return fmt.Errorf("%s: %w", e.Path, err)
		}
		if e.Kind == engine.KindFile {
			pr.p.FilesDone++
			pr.p.BytesDone += e.Size
			pr.p.BytesSent += sent
			pr.report(false)
		}
	}

	m := *a.Manifest
	m.Release = a.ID
	if m.Commit == "" {
		m.Commit = a.Commit
	}
	if err := w.writeManifest(&m); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := w.durable(); err != nil {
		return err
	}
	if err := renameNoReplace(tmp, rp); err != nil {
		return fmt.Errorf("rename into place: %w", err)
	}
	if err := fsyncDir(h.releasesDir()); err != nil {
		return err
	}
	pr.report(true)
	return nil
}

// linkIndex maps "<sha256>:<mode>" to a read-only file of a complete
// release that Prepare may hard-link: current's files first, then those of
// the newest h.bases other releases. Releases without a readable manifest
// are skipped.
func (h *Host) linkIndex() map[string]string {
	index := make(map[string]string)
	cur, _ := h.current()
	rels, _ := h.releases()
	var bases []string
	if cur != "" && slices.Contains(rels, cur) {
		bases = append(bases, cur)
	}
	for i, n := len(rels)-1, 0; i >= 0 && n < h.bases; i-- {
		if rels[i] != cur {
			bases = append(bases, rels[i])
			n++
		}
	}
	for _, id := range bases {
		root := h.ReleasePath(id)
		m, err := readManifest(root)
		if err != nil || checkManifest(m) != nil {
			continue
		}
		for _, e := range m.Entries {
			if e.Kind != engine.KindFile {
				continue
			}
			k := linkKey(e)
			if _, ok := index[k]; !ok {
				index[k] = filepath.Join(root, filepath.FromSlash(e.Path))
			}
		}
	}
	return index
}

func linkKey(e engine.ManifestEntry) string {
	return e.Hash + ":" + strconv.FormatUint(uint64(fileMode(e)), 8)
}

// writer writes the entries of one release into its temporary directory.
type writer struct {
	ctx   context.Context
	src   string
	dst   string
	index map[string]string
	sync  SyncMode
	buf   []byte
	hash  hash.Hash
	dirs  []string // created directories
	// copied lists the files written (not linked), for SyncAuto.
	copied []string
}

// entry creates one manifest entry and returns the bytes copied.
func (w *writer) entry(e engine.ManifestEntry) (int64, error) {
	dst := filepath.Join(w.dst, filepath.FromSlash(e.Path))
	switch e.Kind {
	case engine.KindDir:
		if err := os.Mkdir(dst, 0o700); err != nil {
			return 0, err
		}
		w.dirs = append(w.dirs, dst)
		return 0, os.Chmod(dst, dirMode(e))
	case engine.KindSymlink:
		return 0, os.Symlink(e.Link, dst)
	}
	k := linkKey(e)
	if old, ok := w.index[k]; ok && w.link(old, dst, e) {
		return 0, nil
	}
	if err := w.copy(filepath.Join(w.src, filepath.FromSlash(e.Path)), dst, e); err != nil {
		return 0, err
	}
	w.copied = append(w.copied, dst)
	w.index[k] = dst // later files of this release with the same content link to it
	return e.Size, nil
}

// link hard-links old to dst when old still looks like the file the
// manifest describes (regular, read-only, same size and mode). Any doubt or
// failure (EMLINK, a pruned release) makes the caller copy instead. The
// content is not re-hashed (that would cost what linking saves): a file
// edited and made read-only again is only caught by Verify.
func (w *writer) link(old, dst string, e engine.ManifestEntry) bool {
	fi, err := os.Lstat(old)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != e.Size ||
		fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != fileMode(e) {
		return false
	}
	return os.Link(old, dst) == nil
}

// copy copies src to a new read-only file dst, checking size and hash.
func (w *writer) copy(src, dst string, e engine.ManifestEntry) error {
	in, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("open source: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer out.Close() // second close after the checked one is harmless
	w.hash.Reset()
	n, err := io.CopyBuffer(io.MultiWriter(out, w.hash), ctxReader{w.ctx, in}, w.buf)
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	if n != e.Size {
		return fmt.Errorf("source has %d bytes, manifest says %d (changed since the manifest was built?)", n, e.Size)
	}
	if sum := hex.EncodeToString(w.hash.Sum(nil)); sum != e.Hash {
		return fmt.Errorf("source sha256 %s, manifest says %s (changed since the manifest was built?)", sum, e.Hash)
	}
	if err := out.Chmod(fileMode(e)); err != nil {
		return err
	}
	if w.sync == SyncEachFile {
		if err := out.Sync(); err != nil {
			return fmt.Errorf("sync: %w", err)
		}
	}
	return out.Close()
}

func (w *writer) writeManifest(m *engine.Manifest) error {
	b, err := m.Marshal()
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	p := filepath.Join(w.dst, engine.ManifestName)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	if err := f.Chmod(0o444); err != nil {
		return err
	}
	w.copied = append(w.copied, p)
	if w.sync == SyncEachFile {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync manifest: %w", err)
		}
	}
	return f.Close()
}

// durable makes everything written so far durable before the rename.
// Linked files need nothing: their content was made durable when the
// release they come from was prepared; the new names are directory entries.
func (w *writer) durable() error {
	switch {
	case w.sync == SyncFS, w.sync == SyncAuto && len(w.copied) > syncAutoFiles:
		return syncFS(w.dst)
	case w.sync == SyncAuto:
		for _, p := range w.copied {
			if err := fsyncPath(p); err != nil {
				return err
			}
		}
	}
	for _, d := range slices.Backward(w.dirs) {
		if err := fsyncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// renameNoReplace renames a directory into place, failing if the target
// exists (rename(2) would silently replace an empty directory). File
// systems without RENAME_NOREPLACE fall back to a plain rename.
func renameNoReplace(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		return os.Rename(from, to)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// reporter throttles progress callbacks.
type reporter struct {
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

func (r *reporter) report(force bool) {
	if r.fn == nil {
		return
	}
	if !force && r.p.FilesDone-r.lastFiles < progressFiles && time.Since(r.last) < progressEvery {
		return
	}
	r.last, r.lastFiles = time.Now(), r.p.FilesDone
	r.fn(r.p)
}
