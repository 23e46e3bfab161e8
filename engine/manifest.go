package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// ManifestName is the file inside every release directory that lists the
// release's files with their content hashes. It lets a host receive only
// changed files and lets flightdeck verify that a release is intact.
const ManifestName = ".flightdeck-manifest.json"

// ErrNoManifest is wrapped by host errors about a release that has no
// manifest: one made by another tool (Capistrano) that `flightdeck adopt`
// can hash into one.
var ErrNoManifest = errors.New("the release has no manifest (made by another tool? `flightdeck adopt` hashes it into one)")

// FileKind is the kind of a manifest entry.
type FileKind string

// Kinds of manifest entries.
const (
	KindFile    FileKind = "file"
	KindDir     FileKind = "dir"
	KindSymlink FileKind = "symlink"
)

// ManifestEntry is one file, directory or symlink of a release.
type ManifestEntry struct {
	Path string   `json:"path"` // slash-separated, relative to the release root
	Kind FileKind `json:"kind"`
	Mode uint32   `json:"mode"` // Unix mode bits as built (permissions, setuid 04000, setgid 02000, sticky 01000), before read-only
	Size int64    `json:"size,omitempty"`
	Hash string   `json:"sha256,omitempty"` // files only
	Link string   `json:"link,omitempty"`   // symlinks only
}

// Manifest lists every entry of a release, sorted by path (parents first).
type Manifest struct {
	Release string          `json:"release"`
	Commit  string          `json:"commit,omitempty"`
	Entries []ManifestEntry `json:"entries"`
}

// Files returns the number of regular files and their total size.
func (m *Manifest) Files() (n int, bytes int64) {
	for _, e := range m.Entries {
		if e.Kind == KindFile {
			n++
			bytes += e.Size
		}
	}
	return n, bytes
}

// Marshal encodes the manifest as JSON.
func (m *Manifest) Marshal() ([]byte, error) { return json.MarshalIndent(m, "", " ") }

// ParseManifest decodes a manifest.
func ParseManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parse manifest: %w", err)
	}
	return &m, nil
}

// BuildManifest walks dir and hashes every regular file. The manifest file
// itself, if present, is skipped.
func BuildManifest(dir, release string) (*Manifest, error) {
	return buildManifest(dir, release, func(_, p string, _ int64) (string, error) { return HashFile(p) })
}

// buildManifest walks dir; hash returns the hex SHA-256 of the regular
// file p (rel: its slash-separated path in the release).
func buildManifest(dir, release string, hash func(rel, p string, size int64) (string, error)) (*Manifest, error) {
	m := &Manifest{Release: release}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if rel == ManifestName {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		e := ManifestEntry{Path: rel, Mode: UnixMode(info.Mode())}
		switch {
		case d.IsDir():
			e.Kind = KindDir
		case info.Mode()&fs.ModeSymlink != 0:
			e.Kind = KindSymlink
			if e.Link, err = os.Readlink(p); err != nil {
				return err
			}
		case info.Mode().IsRegular():
			e.Kind = KindFile
			e.Size = info.Size()
			if e.Hash, err = hash(rel, p, e.Size); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unsupported file type %s", rel, info.Mode().Type())
		}
		m.Entries = append(m.Entries, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("build manifest of %s: %w", dir, err)
	}
	sort.SliceStable(m.Entries, func(i, j int) bool { return m.Entries[i].Path < m.Entries[j].Path })
	return m, nil
}

// UnixMode returns the permission bits of m with its setuid, setgid and
// sticky bits as Unix mode bits (04000, 02000, 01000), as a manifest stores
// them: a sticky tmp/ or a setgid shared directory keeps its bits.
func UnixMode(m fs.FileMode) uint32 {
	out := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		out |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		out |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		out |= 0o1000
	}
	return out
}

// HashFile returns the hex SHA-256 of a file's content.
func HashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
