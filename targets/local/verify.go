package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"flightdeck/engine"
)

// checkManifest rejects a manifest that could write outside the release:
// every path must be relative, clean, without "..", not the manifest file
// itself, listed after its parent, and its parent must be a directory entry
// (so that no entry is ever written through a symlink of the release).
func checkManifest(m *engine.Manifest) error {
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

// fileMode is the on-host permission of a release file: as built, without
// any write bit.
func fileMode(e engine.ManifestEntry) fs.FileMode { return goMode(e.Mode) &^ 0o222 }

// dirMode is the on-host permission of a release directory: as built plus
// owner rwx.
func dirMode(e engine.ManifestEntry) fs.FileMode { return goMode(e.Mode) | 0o700 }

// readManifest reads the manifest stored inside a release directory.
func readManifest(releaseDir string) (*engine.Manifest, error) {
	b, err := os.ReadFile(filepath.Join(releaseDir, engine.ManifestName))
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	m, err := engine.ParseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(releaseDir, engine.ManifestName), err)
	}
	return m, nil
}

// Verify checks that releases/<id> exists and matches the manifest stored
// in it: every entry is present with the right kind; files have the right
// size, SHA-256 and read-only permission; symlinks have the right target.
// Files added after the release was prepared (by hooks) are not reported.
// The error names the first bad path.
func (h *Host) Verify(ctx context.Context, id string) error {
	if err := engine.ValidateReleaseID(id); err != nil {
		return fmt.Errorf("verify %s: %w", h.name, err)
	}
	if _, err := h.verify(ctx, id); err != nil {
		return fmt.Errorf("verify %s release %s: %w", h.name, id, err)
	}
	return nil
}

// verify checks a release and returns its manifest.
func (h *Host) verify(ctx context.Context, id string) (*engine.Manifest, error) {
	root := h.ReleasePath(id)
	fi, err := os.Stat(root)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", root)
	}
	m, err := readManifest(root)
	if err != nil {
		return nil, err
	}
	if m.Release != id {
		return nil, fmt.Errorf("manifest names release %q", m.Release)
	}
	if err := checkManifest(m); err != nil {
		return nil, err
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	for _, e := range m.Entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := verifyEntry(filepath.Join(root, filepath.FromSlash(e.Path)), e, *bp); err != nil {
			return nil, fmt.Errorf("%s: %w", e.Path, err)
		}
	}
	return m, nil
}

func verifyEntry(p string, e engine.ManifestEntry, buf []byte) error {
	fi, err := os.Lstat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errors.New("missing")
		}
		return err
	}
	switch e.Kind {
	case engine.KindDir:
		if !fi.IsDir() {
			return fmt.Errorf("is %s, want a directory", fi.Mode().Type())
		}
	case engine.KindSymlink:
		if fi.Mode()&fs.ModeSymlink == 0 {
			return fmt.Errorf("is %s, want a symlink", fi.Mode().Type())
		}
		t, err := os.Readlink(p)
		if err != nil {
			return err
		}
		if t != e.Link {
			return fmt.Errorf("links to %q, want %q", t, e.Link)
		}
	case engine.KindFile:
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("is %s, want a regular file", fi.Mode().Type())
		}
		if got, want := fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky), fileMode(e); got != want {
			return fmt.Errorf("mode %v, want %v (release files are read-only)", got, want)
		}
		if fi.Size() != e.Size {
			return fmt.Errorf("size %d, want %d", fi.Size(), e.Size)
		}
		sum, err := hashFile(p, buf)
		if err != nil {
			return err
		}
		if sum != e.Hash {
			return fmt.Errorf("sha256 %s, want %s", sum, e.Hash)
		}
	}
	return nil
}

// goMode converts Unix permission bits (setuid as 04000 and so on) to an
// fs.FileMode, which os.Chmod understands.
func goMode(m uint32) fs.FileMode {
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

func hashFile(p string, buf []byte) (string, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	hs := sha256.New()
	if _, err := io.CopyBuffer(hs, struct{ io.Reader }{f}, buf); err != nil {
		return "", fmt.Errorf("hash: %w", err)
	}
	return hex.EncodeToString(hs.Sum(nil)), nil
}
