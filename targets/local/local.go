// Package local implements engine.Host for a directory on this machine: the
// host's deploy_to, laid out like Capistrano's (releases/<id>, shared/,
// current -> releases/<id>, revisions.log).
//
// Invariants kept by this package:
//
//   - A directory named releases/<id> is always complete: releases are
//     written under releases/.tmp-<id>-<rand> and renamed into place only
//     after their content is on disk (see SyncMode).
//   - Release files are read-only (mode &^ 0222) because unchanged files are
//     hard links shared with older releases. Directories keep their built
//     permissions plus owner rwx: a directory is never shared between
//     releases, so it may stay writable (hooks may add files to a release,
//     and removal never needs a chmod walk of our own trees).
//   - current is only ever replaced by rename(2) of a fresh link, never
//     unlinked and re-created.
//
// The package does not lock: one deploy at a time per host is the engine's
// job. Inspect removes temporary names, so it must not run while another
// process prepares a release on the same deploy_to.
package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"flightdeck/engine"
)

// SyncMode says how Prepare makes a release durable before renaming it into
// place.
type SyncMode int

const (
	// SyncAuto, the default, fsyncs each copied file and each created
	// directory when the release copied at most syncAutoFiles files (the
	// usual incremental release), and otherwise flushes the file system
	// once with syncfs(2) like SyncFS. On a busy machine syncfs also
	// flushes everybody else's dirty data, which costs more than a few
	// fsyncs; on a full release one syncfs beats thousands of fsyncs.
	SyncAuto SyncMode = iota
	// SyncFS flushes the whole file system holding deploy_to once with
	// syncfs(2) before the rename. On Linux this covers every file and
	// directory written for the release, and costs one call instead of one
	// fsync per file.
	SyncFS
	// SyncEachFile fsyncs every copied file as it is written and every
	// created directory.
	SyncEachFile
)

// Host is a deploy target that is a directory on this machine. Its methods
// are safe to call from several goroutines as far as the Host value goes;
// on-disk concurrency is the caller's (the engine's lock).
type Host struct {
	name     string
	deployTo string
	now      func() time.Time
	sync     SyncMode
	bases    int
}

var _ engine.Host = (*Host)(nil)

// Option configures a Host.
type Option func(*Host)

// WithClock sets the clock used for revisions.log lines (tests).
func WithClock(now func() time.Time) Option { return func(h *Host) { h.now = now } }

// WithSyncMode chooses how Prepare makes a release durable (default SyncAuto).
func WithSyncMode(m SyncMode) Option { return func(h *Host) { h.sync = m } }

// WithLinkBases sets how many complete releases besides current Prepare
// reads manifests from to find files it can hard-link (default 2, the
// newest by name). Zero links only from current.
func WithLinkBases(n int) Option {
	return func(h *Host) {
		if n >= 0 {
			h.bases = n
		}
	}
}

// New returns the host name whose deploy_to is the directory deployTo. A
// relative deployTo is made absolute against the working directory.
func New(name, deployTo string, opts ...Option) *Host {
	if abs, err := filepath.Abs(deployTo); err == nil {
		deployTo = abs
	}
	h := &Host{name: name, deployTo: filepath.Clean(deployTo), now: time.Now, bases: 2}
	for _, o := range opts {
		o(h)
	}
	return h
}

// Name is the host's display name.
func (h *Host) Name() string { return h.name }

// DeployTo is the absolute deploy_to directory.
func (h *Host) DeployTo() string { return h.deployTo }

// ReleasePath is the absolute path of releases/<id>.
func (h *Host) ReleasePath(id string) string {
	return filepath.Join(h.deployTo, engine.ReleasesDir, id)
}

// Close does nothing: a local host holds no connection.
func (h *Host) Close() error { return nil }

func (h *Host) releasesDir() string { return filepath.Join(h.deployTo, engine.ReleasesDir) }

// Inspect reports the release current points to and the complete releases,
// sorted by name (release ids default to UTC timestamps, which sort oldest
// first; the order is for listing only, rollback names an explicit id). A
// release is any directory under releases/ whose name is a valid release id
// (so releases made by Capistrano before flightdeck are listed too).
//
// Inspect first removes leftovers of interrupted work: releases/.tmp-*
// directories (half-prepared or half-pruned releases) and current.tmp-* or
// .tmp-* links in deploy_to. It creates nothing: a missing deploy_to gives
// an empty status. Current is reported as the link says, even when that
// release directory is missing (it is then absent from Releases).
func (h *Host) Inspect(ctx context.Context) (engine.HostStatus, error) {
	var st engine.HostStatus
	if err := ctx.Err(); err != nil {
		return st, err
	}
	if _, err := os.Stat(h.deployTo); errors.Is(err, fs.ErrNotExist) {
		return st, nil
	} else if err != nil {
		return st, fmt.Errorf("inspect %s: %w", h.name, err)
	}
	if err := h.removeLeftovers(ctx); err != nil {
		return st, fmt.Errorf("inspect %s: %w", h.name, err)
	}
	cur, err := h.current()
	if err != nil {
		return st, fmt.Errorf("inspect %s: %w", h.name, err)
	}
	st.Current = cur
	rels, err := h.releases()
	if err != nil {
		return st, fmt.Errorf("inspect %s: %w", h.name, err)
	}
	st.Releases = rels
	return st, nil
}

// removeLeftovers deletes temporary names left by a crash.
func (h *Host) removeLeftovers(ctx context.Context) error {
	ents, err := os.ReadDir(h.releasesDir())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read releases: %w", err)
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), engine.TempPrefix) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := removeTree(filepath.Join(h.releasesDir(), e.Name())); err != nil {
			return fmt.Errorf("remove leftover: %w", err)
		}
	}
	top, err := os.ReadDir(h.deployTo)
	if err != nil {
		return fmt.Errorf("read deploy_to: %w", err)
	}
	for _, e := range top {
		n := e.Name()
		if e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		if strings.HasPrefix(n, engine.CurrentLink+engine.TempPrefix) || strings.HasPrefix(n, engine.TempPrefix) {
			if err := os.Remove(filepath.Join(h.deployTo, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove leftover link: %w", err)
			}
		}
	}
	return nil
}

// current reads the current link and returns the release id it names, or
// "" when there is no current link.
func (h *Host) current() (string, error) {
	link := filepath.Join(h.deployTo, engine.CurrentLink)
	target, err := os.Readlink(link)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) && errors.Is(pe.Err, errEINVAL) {
			return "", fmt.Errorf("%s is not a symlink", link)
		}
		return "", fmt.Errorf("read current: %w", err)
	}
	abs := target
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(h.deployTo, abs)
	}
	abs = filepath.Clean(abs)
	id := filepath.Base(abs)
	parent := filepath.Dir(abs)
	if parent != h.releasesDir() && !sameDir(parent, h.releasesDir()) {
		return "", fmt.Errorf("current points outside %s: %s", h.releasesDir(), target)
	}
	if err := engine.ValidateReleaseID(id); err != nil {
		return "", fmt.Errorf("current points at %s: %w", target, err)
	}
	return id, nil
}

// sameDir reports whether a and b name the same directory (through
// symlinks, e.g. an absolute link written via another path to deploy_to).
func sameDir(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// releases lists release directories by name.
func (h *Host) releases() ([]string, error) {
	ents, err := os.ReadDir(h.releasesDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read releases: %w", err)
	}
	var ids []string
	for _, e := range ents {
		if !e.IsDir() || engine.ValidateReleaseID(e.Name()) != nil {
			continue
		}
		ids = append(ids, e.Name())
	}
	slices.Sort(ids)
	return ids, nil
}

// Switch points current at releases/<info.Release>: it checks that the
// release exists and has a manifest (a full Verify is the caller's choice),
// creates current.tmp-<rand> -> releases/<id> (a relative target, like
// Capistrano), renames it over current, fsyncs deploy_to, then appends a
// line to revisions.log and fsyncs it. An empty info.Previous is filled
// from the link being replaced.
func (h *Host) Switch(ctx context.Context, info engine.SwitchInfo) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := engine.ValidateReleaseID(info.Release); err != nil {
		return fmt.Errorf("switch %s: %w", h.name, err)
	}
	rp := h.ReleasePath(info.Release)
	if fi, err := os.Stat(rp); err != nil {
		return fmt.Errorf("switch %s to %s: %w", h.name, info.Release, err)
	} else if !fi.IsDir() {
		return fmt.Errorf("switch %s to %s: %s is not a directory", h.name, info.Release, rp)
	}
	if _, err := os.Lstat(filepath.Join(rp, engine.ManifestName)); err != nil {
		return fmt.Errorf("switch %s to %s: release has no manifest (not prepared by flightdeck?): %w", h.name, info.Release, err)
	}
	if info.Previous == "" {
		prev, err := h.current()
		if err != nil {
			return fmt.Errorf("switch %s: %w", h.name, err)
		}
		info.Previous = prev
	}
	tmp := filepath.Join(h.deployTo, engine.CurrentLink+engine.TempPrefix+engine.RandomSuffix(8))
	target := engine.ReleasesDir + "/" + info.Release
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("switch %s: create link: %w", h.name, err)
	}
	if err := os.Rename(tmp, filepath.Join(h.deployTo, engine.CurrentLink)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("switch %s: rename link over current: %w", h.name, err)
	}
	if err := fsyncDir(h.deployTo); err != nil {
		return fmt.Errorf("switch %s: %w", h.name, err)
	}
	if err := h.appendRevision(info); err != nil {
		return fmt.Errorf("switch %s: current now points at %s but %w", h.name, info.Release, err)
	}
	return nil
}

func (h *Host) appendRevision(info engine.SwitchInfo) error {
	p := filepath.Join(h.deployTo, engine.RevisionsLog)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open revisions.log: %w", err)
	}
	line := engine.RevisionLine(h.now(), info) + "\n"
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return fmt.Errorf("append revisions.log: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync revisions.log: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close revisions.log: %w", err)
	}
	return nil
}

// Prune removes the oldest releases (by name) so that the newest keep
// remain; the release current points to and those in protect are never
// removed (they are kept in addition). Each removed release is first
// renamed to releases/.tmp-<id>-<rand>, so that a crash mid-removal leaves
// a leftover Inspect deletes, never a half-deleted directory that looks like
// a release. It returns the removed ids, oldest first.
func (h *Host) Prune(ctx context.Context, keep int, protect []string) ([]string, error) {
	if keep < 0 {
		return nil, fmt.Errorf("prune %s: keep must be >= 0, got %d", h.name, keep)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cur, err := h.current()
	if err != nil {
		return nil, fmt.Errorf("prune %s: %w", h.name, err)
	}
	rels, err := h.releases()
	if err != nil {
		return nil, fmt.Errorf("prune %s: %w", h.name, err)
	}
	if len(rels) <= keep {
		return nil, nil
	}
	var removed []string
	for _, id := range rels[:len(rels)-keep] {
		if id == cur || slices.Contains(protect, id) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		tmp := filepath.Join(h.releasesDir(), engine.TempPrefix+id+"-"+engine.RandomSuffix(6))
		if err := os.Rename(h.ReleasePath(id), tmp); err != nil {
			return removed, fmt.Errorf("prune %s: rename %s: %w", h.name, id, err)
		}
		removed = append(removed, id)
		if err := removeTree(tmp); err != nil {
			return removed, fmt.Errorf("prune %s: remove %s: %w", h.name, id, err)
		}
	}
	if len(removed) > 0 {
		if err := fsyncDir(h.releasesDir()); err != nil {
			return removed, fmt.Errorf("prune %s: %w", h.name, err)
		}
	}
	return removed, nil
}
