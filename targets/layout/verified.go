package layout

import (
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"flightdeck/engine"
)

// VerifiedName is the record, in releases/, of the files the host's last
// verification found intact: one line per file, its Stamp and the SHA-256
// its content had. Verify hashes again only the files whose stamp is not
// in it (see Layout.Verify). It is written by Verify under a temporary
// name and renamed into place; a missing or unreadable record only means
// that every file is hashed.
const VerifiedName = ".verified"

// verifiedHeader starts the record; another version is ignored.
const verifiedHeader = "flightdeck verified v1\n"

// maxVerified bounds the record read back.
const maxVerified = 64 << 20

// racyMargin: a file modified less than this before a verification read
// the host's clock is not recorded, because a write right after it could
// leave the modification time unchanged: Linux file systems keep
// nanoseconds, but take them from a clock that moves by ticks of 1 to 10
// ms. A file whose modification time has no sub-second part is never
// recorded (see recordable): its file system keeps whole seconds or
// coarser, or the time was set so. (The margin was 2 s for every file: a
// deploy made within seconds of the one before hashed most of the
// previous release again, not recorded at the first.)
const racyMargin = 100 * time.Millisecond

// recordable reports whether a file hashed to its manifest's content may
// be recorded with its stamp: not modified just before (recent), and its
// modification time fine enough that any later write moves it.
func recordable(st Stamp, recent bool) bool {
	return !recent && st.MTime%int64(time.Second) != 0
}

// digest is a SHA-256 as the record keeps it: a fleet's verifications
// each hold a record of the release's files at once.
type digest [32]byte

// digestOf decodes a manifest's SHA-256, in lower-case hex as sha256sum
// and the manifest write it; ok is false when it is not one.
func digestOf(h string) (d digest, ok bool) {
	if len(h) != hex.EncodedLen(len(d)) || strings.Trim(h, "0123456789abcdef") != "" {
		return d, false
	}
	_, err := hex.Decode(d[:], []byte(h))
	return d, err == nil
}

// record is the verified record, sorted by stamp: a fleet's verifications
// each hold one, and a sorted slice takes half the memory of a map.
type record []recorded

type recorded struct {
	st Stamp
	d  digest
}

func cmpStamp(a, b Stamp) int {
	return cmp.Or(cmp.Compare(a.Dev, b.Dev), cmp.Compare(a.Ino, b.Ino), cmp.Compare(a.Size, b.Size),
		cmp.Compare(a.Perm, b.Perm), cmp.Compare(a.MTime, b.MTime))
}

// newRecord sorts entries into a record. A stamp given twice with two
// digests (which no file can have) is left out: not vouched for.
func newRecord(entries []recorded) record {
	slices.SortFunc(entries, func(a, b recorded) int {
		return cmp.Or(cmpStamp(a.st, b.st), bytes.Compare(a.d[:], b.d[:]))
	})
	entries = slices.Compact(entries)
	out := entries[:0]
	for i := 0; i < len(entries); {
		j := i + 1
		for j < len(entries) && entries[j].st == entries[i].st {
			j++
		}
		if j == i+1 {
			out = append(out, entries[i])
		}
		i = j
	}
	return slices.Clip(out)
}

// lookup returns the digest recorded for st.
func (r record) lookup(st Stamp) (digest, bool) {
	i, ok := slices.BinarySearchFunc(r, st, func(e recorded, st Stamp) int { return cmpStamp(e.st, st) })
	if !ok {
		return digest{}, false
	}
	return r[i].d, true
}

// stampFunc gives a file's stamp now and whether it was modified just
// before it was read (false, false when it has none).
type stampFunc func(path string) (st Stamp, ok, recent bool)

// stampsInMaps is a stampFunc over FS.Stamps' maps.
func stampsInMaps(stamps map[string]Stamp, recent map[string]bool) stampFunc {
	return func(p string) (Stamp, bool, bool) {
		st, ok := stamps[p]
		return st, ok, recent[p]
	}
}

// stampsInTree is a stampFunc over a ListTree listing (no copy of it, as
// TreeStamps makes).
func stampsInTree(tree *Tree) stampFunc {
	return func(p string) (Stamp, bool, bool) {
		e, ok := tree.Lookup(p)
		if !ok || !e.Mode().IsRegular() {
			return Stamp{}, false, false
		}
		return e.Stamp, true, e.Recent
	}
}

// hashChanged hashes the files of m under root that the host's record of
// its last verification does not vouch for, and records what it found.
// A file is vouched for when its stamp now (device, inode, size, mode,
// modification time) is in the record with the manifest's SHA-256: the
// file was hashed to that content and nothing rewrote it since, since any
// write moves the modification time to the host's clock. The stamps are
// read before anything is hashed, so a file changed while it is hashed
// has another stamp by the next verification.
func (l *Layout) hashChanged(ctx context.Context, fsys FS, root string, m *engine.Manifest, stampOf stampFunc, rec record) error {
	var files []engine.ManifestEntry
	next := make([]recorded, 0, len(rec))
	for _, e := range m.Entries {
		if e.Kind != engine.KindFile {
			continue
		}
		st, ok, _ := stampOf(e.Path)
		d, valid := digestOf(e.Hash)
		if got, in := rec.lookup(st); ok && valid && in && st.Size == e.Size && got == d {
			next = append(next, recorded{st, d})
			continue
		}
		files = append(files, e)
	}
	err := hashFiles(ctx, fsys, root, files, func(e engine.ManifestEntry) {
		// A file modified just before now may be modified again without
		// its time stamp moving: hashed again next time.
		st, ok, recent := stampOf(e.Path)
		if d, valid := digestOf(e.Hash); ok && valid && st.Size == e.Size && recordable(st, recent) {
			next = append(next, recorded{st, d})
		}
	})
	if err != nil {
		return err
	}
	if nr := newRecord(next); !slices.Equal(nr, rec) {
		// Only a cache: a record that cannot be written costs a full
		// hash next time, never a wrong answer.
		_ = l.writeVerified(ctx, fsys, nr)
	}
	return nil
}

// readVerified reads the record of the last verification; nil when it is
// missing, unreadable or of another version.
func (l *Layout) readVerified(ctx context.Context, fsys FS) record {
	b, err := fsys.ReadFile(ctx, path.Join(l.releasesDir(), VerifiedName), maxVerified)
	if err != nil {
		return nil
	}
	rec, err := parseVerified(b)
	if err != nil {
		return nil
	}
	return rec
}

// parseVerified reads a record: the header, then per line
// "DEV INO SIZE PERM(octal) MTIME(ns) SHA256", fields apart by one space.
// Nothing of b is kept.
func parseVerified(b []byte) (record, error) {
	rest, ok := bytes.CutPrefix(b, []byte(verifiedHeader))
	if !ok {
		return nil, errors.New("not a verified record of this version")
	}
	rec := make([]recorded, 0, bytes.Count(rest, []byte{'\n'})+1)
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte{'\n'})
		var f [6]string
		n, r := 0, line
		for ; n < len(f); n++ {
			var field []byte
			var more bool
			field, r, more = bytes.Cut(r, []byte{' '})
			f[n] = string(field)
			if !more {
				n++
				break
			}
		}
		d, valid := digestOf(f[5])
		if n != len(f) || !valid {
			return nil, fmt.Errorf("bad line %q", line)
		}
		st, err := parseStamp(f[:5])
		if err != nil {
			return nil, fmt.Errorf("bad line %q: %w", line, err)
		}
		rec = append(rec, recorded{st, d})
	}
	return newRecord(rec), nil
}

// parseStamp reads DEV INO SIZE PERM(octal) MTIME(ns).
func parseStamp(f []string) (Stamp, error) {
	var st Stamp
	var err error
	var perm uint64
	if st.Dev, err = strconv.ParseUint(f[0], 10, 64); err != nil {
		return st, err
	}
	if st.Ino, err = strconv.ParseUint(f[1], 10, 64); err != nil {
		return st, err
	}
	if st.Size, err = strconv.ParseInt(f[2], 10, 64); err != nil {
		return st, err
	}
	if perm, err = strconv.ParseUint(f[3], 8, 32); err != nil {
		return st, err
	}
	st.Perm = uint32(perm)
	st.MTime, err = strconv.ParseInt(f[4], 10, 64)
	return st, err
}

// formatVerified writes a record parseVerified reads, into one buffer of
// the record's size (every host of a fleet holds one while it writes it).
func formatVerified(rec record) []byte {
	n := len(verifiedHeader)
	var tmp [96]byte // the longest stamp is 95 bytes
	for _, e := range rec {
		n += len(appendStamp(tmp[:0], e.st)) + 1 + hex.EncodedLen(len(digest{})) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, verifiedHeader...)
	for _, e := range rec {
		b = appendStamp(b, e.st)
		b = append(b, ' ')
		b = hex.AppendEncode(b, e.d[:])
		b = append(b, '\n')
	}
	return b
}

// appendStamp appends "DEV INO SIZE PERM(octal) MTIME(ns)" to b.
func appendStamp(b []byte, st Stamp) []byte {
	b = strconv.AppendUint(b, st.Dev, 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, st.Ino, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, st.Size, 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(st.Perm), 8)
	b = append(b, ' ')
	return strconv.AppendInt(b, st.MTime, 10)
}

// writeVerified replaces the record: written under a temporary name in
// releases/ (which Clean removes if it is left behind), then renamed over
// the record.
func (l *Layout) writeVerified(ctx context.Context, fsys FS, rec record) error {
	b := formatVerified(rec)
	tmp := path.Join(l.releasesDir(), engine.TempPrefix+"verified-"+engine.RandomSuffix(6))
	op := Op{Kind: engine.KindFile, Name: tmp, Mode: 0o644, Size: int64(len(b)), Open: bytesSource(b)}
	if err := fsys.Write(ctx, []Op{op}, nil); err != nil {
		_ = fsys.RemoveAll(context.WithoutCancel(ctx), tmp)
		return fmt.Errorf("write %s: %w", VerifiedName, err)
	}
	if err := fsys.Replace(ctx, tmp, path.Join(l.releasesDir(), VerifiedName)); err != nil {
		_ = fsys.RemoveAll(context.WithoutCancel(ctx), tmp)
		return fmt.Errorf("write %s: %w", VerifiedName, err)
	}
	return nil
}

// verifyChanged checks releases/<id> as check does while it reads the
// files' stamps and the record of the last verification, then hashes what
// the record does not vouch for (hashChanged). Without stamps (a host that
// cannot give them) every file is hashed.
func (l *Layout) verifyChanged(ctx context.Context, fsys FS, id string) (*engine.Manifest, error) {
	root := l.ReleasePath(id)
	var (
		m      *engine.Manifest
		tree   *Tree
		stamps map[string]Stamp
		recent map[string]bool
		serr   error
		rec    record
	)
	_, lister := fsys.(TreeLister)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if _, err := expect(gctx, fsys, l.releasesDir(), "directory"); err != nil {
			return err
		}
		if exists, err := expect(gctx, fsys, root, "directory"); err != nil {
			return err
		} else if !exists {
			return fmt.Errorf("%s: %w", root, fs.ErrNotExist)
		}
		var err error
		// One ListTree gives the check and the stamps when fsys can.
		m, tree, err = l.checkReleaseTree(gctx, fsys, id, racyMargin, true)
		return err
	})
	// Otherwise the stamps are read beside the check; they are used only
	// once the check has passed (root is then a directory, not a symlink,
	// and every entry has its kind, size and mode).
	if !lister {
		g.Go(func() error {
			stamps, recent, serr = fsys.Stamps(gctx, root, racyMargin)
			return nil
		})
	}
	g.Go(func() error {
		rec = l.readVerified(gctx, fsys)
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var stampOf stampFunc
	switch {
	case tree != nil:
		stampOf = stampsInTree(tree)
	case lister:
		// ListTree failed (the check listed directories instead), and
		// Stamps would run the same listing: every file is hashed.
		serr = errors.New("no listing of the tree")
	}
	if serr != nil {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return m, hashTree(ctx, fsys, root, m)
	}
	if stampOf == nil {
		stampOf = stampsInMaps(stamps, recent)
	}
	return m, l.hashChanged(ctx, fsys, root, m, stampOf, rec)
}
