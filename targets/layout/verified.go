package layout

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
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
// leave the modification time unchanged (time stamps are only as fine as
// the file system keeps them: a second on some, a clock tick on others).
const racyMargin = 2 * time.Second

// hashChanged hashes the files of m under root that the host's record of
// its last verification does not vouch for, and records what it found.
// A file is vouched for when its stamp now (device, inode, size, mode,
// modification time) is in the record with the manifest's SHA-256: the
// file was hashed to that content and nothing rewrote it since, since any
// write moves the modification time to the host's clock. The stamps are
// read before anything is hashed, so a file changed while it is hashed
// has another stamp by the next verification.
func (l *Layout) hashChanged(ctx context.Context, fsys FS, root string, m *engine.Manifest, stamps map[string]Stamp, recent map[string]bool, rec map[Stamp]string) error {
	var files []engine.ManifestEntry
	next := map[Stamp]string{}
	for _, e := range m.Entries {
		if e.Kind != engine.KindFile {
			continue
		}
		st, ok := stamps[e.Path]
		if ok && st.Size == e.Size && rec[st] == e.Hash {
			next[st] = e.Hash
			continue
		}
		files = append(files, e)
	}
	err := hashFiles(ctx, fsys, root, files, func(e engine.ManifestEntry) {
		// A file modified just before now may be modified again without
		// its time stamp moving: hashed again next time.
		if st, ok := stamps[e.Path]; ok && st.Size == e.Size && !recent[e.Path] {
			next[st] = e.Hash
		}
	})
	if err != nil {
		return err
	}
	if !maps.Equal(next, rec) {
		// Only a cache: a record that cannot be written costs a full
		// hash next time, never a wrong answer.
		_ = l.writeVerified(ctx, fsys, next)
	}
	return nil
}

// readVerified reads the record of the last verification; nil when it is
// missing, unreadable or of another version.
func (l *Layout) readVerified(ctx context.Context, fsys FS) map[Stamp]string {
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
// "DEV INO SIZE PERM(octal) MTIME(ns) SHA256".
func parseVerified(b []byte) (map[Stamp]string, error) {
	rest, ok := bytes.CutPrefix(b, []byte(verifiedHeader))
	if !ok {
		return nil, errors.New("not a verified record of this version")
	}
	rec := map[Stamp]string{}
	sc := bufio.NewScanner(bytes.NewReader(rest))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 6 || len(f[5]) != 64 || strings.Trim(f[5], "0123456789abcdef") != "" {
			return nil, fmt.Errorf("bad line %q", sc.Text())
		}
		st, err := parseStamp(f[:5])
		if err != nil {
			return nil, fmt.Errorf("bad line %q: %w", sc.Text(), err)
		}
		rec[st] = f[5]
	}
	return rec, sc.Err()
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
func formatVerified(rec map[Stamp]string) []byte {
	n := len(verifiedHeader)
	var tmp [96]byte // the longest stamp is 95 bytes
	for st, h := range rec {
		n += len(appendStamp(tmp[:0], st)) + 1 + len(h) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, verifiedHeader...)
	for st, h := range rec {
		b = appendStamp(b, st)
		b = append(b, ' ')
		b = append(b, h...)
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
func (l *Layout) writeVerified(ctx context.Context, fsys FS, rec map[Stamp]string) error {
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
		tree   map[string]TreeEntry
		stamps map[string]Stamp
		recent map[string]bool
		serr   error
		rec    map[Stamp]string
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
	switch {
	case tree != nil:
		stamps, recent = TreeStamps(tree)
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
	return m, l.hashChanged(ctx, fsys, root, m, stamps, recent, rec)
}
