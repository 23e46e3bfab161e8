// Package local implements engine.Host for a directory on this machine: the
// host's deploy_to, laid out and kept by package layout (releases/<id>,
// shared/, current -> releases/<id>, revisions.log). This package provides
// the layout's file system (FS) over local system calls, and Exec.
//
// The package does not lock: one deploy at a time per host is the engine's
// job, and Clean (which removes temporary names) must only run under the
// engine's lock.
package local

import (
	"context"
	"path/filepath"
	"time"

	"flightdeck/engine"
	"flightdeck/targets/layout"
)

// SyncMode says how Prepare makes a release durable before renaming it into
// place.
type SyncMode int

const (
	// SyncAuto, the default, fsyncs each copied file and each created
	// directory when the release copies at most syncAutoFiles files (the
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
	lay  *layout.Layout
	fs   *FS
	opts layout.Options
}

var _ engine.Host = (*Host)(nil)

// Option configures a Host.
type Option func(*Host)

// WithClock sets the clock used for revisions.log lines (tests).
func WithClock(now func() time.Time) Option { return func(h *Host) { h.opts.Now = now } }

// WithFullVerify makes Verify hash every file of a release, not only those
// changed since the host's last verification (the plan's verify_releases:
// full; see layout.Layout.Verify).
func WithFullVerify() Option { return func(h *Host) { h.opts.FullVerify = true } }

// WithSyncMode chooses how Prepare makes a release durable (default SyncAuto).
func WithSyncMode(m SyncMode) Option { return func(h *Host) { h.fs.sync = m } }

// New returns the host name whose deploy_to is the directory deployTo. A
// relative deployTo is made absolute against the working directory.
func New(name, deployTo string, opts ...Option) *Host {
	if abs, err := filepath.Abs(deployTo); err == nil {
		deployTo = abs
	}
	h := &Host{fs: &FS{}}
	for _, o := range opts {
		o(h)
	}
	h.lay = layout.New(name, filepath.ToSlash(filepath.Clean(deployTo)), h.opts)
	return h
}

// Name is the host's display name.
func (h *Host) Name() string { return h.lay.Name() }

// DeployTo is the absolute deploy_to directory.
func (h *Host) DeployTo() string { return filepath.FromSlash(h.lay.DeployTo()) }

// ReleasePath is the absolute path of releases/<id>.
func (h *Host) ReleasePath(id string) string { return filepath.FromSlash(h.lay.ReleasePath(id)) }

// Close does nothing: a local host holds no connection.
func (h *Host) Close() error { return nil }

// Inspect reports current and the releases present; it changes nothing
// (see layout.Layout.Inspect).
func (h *Host) Inspect(ctx context.Context) (engine.HostStatus, error) {
	return h.lay.Inspect(ctx, h.fs)
}

// Survey cleans, inspects and checks target in one pass (see
// layout.Layout.Survey).
func (h *Host) Survey(ctx context.Context, target string) (engine.HostStatus, error, error) {
	return h.lay.Survey(ctx, h.fs, target)
}

// Clean removes leftovers of interrupted work (see layout.Layout.Clean).
func (h *Host) Clean(ctx context.Context) error { return h.lay.Clean(ctx, h.fs) }

// Prepare makes releases/<a.ID> complete (see layout.Layout.Prepare).
func (h *Host) Prepare(ctx context.Context, a *engine.Artifact, progress func(engine.Progress)) error {
	return h.lay.Prepare(ctx, h.fs, a, progress)
}

// Check reports whether releases/<id> is complete (see layout.Layout.Check).
func (h *Host) Check(ctx context.Context, id string) error { return h.lay.Check(ctx, h.fs, id) }

// Verify checks releases/<id> against its manifest, content included
// (see layout.Layout.Verify).
func (h *Host) Verify(ctx context.Context, id string) error { return h.lay.Verify(ctx, h.fs, id) }

// Switch points current at a complete release (see layout.Layout.Switch).
func (h *Host) Switch(ctx context.Context, info engine.SwitchInfo) error {
	return h.lay.Switch(ctx, h.fs, info)
}

// Prune removes old releases (see layout.Layout.Prune).
func (h *Host) Prune(ctx context.Context, keep int, protect []string) ([]string, error) {
	return h.lay.Prune(ctx, h.fs, keep, protect)
}

// Adopt makes a release made by another tool (Capistrano) one of
// flightdeck's (see layout.Layout.Adopt).
func (h *Host) Adopt(ctx context.Context, id string) (engine.AdoptResult, error) {
	return h.lay.Adopt(ctx, h.fs, id)
}
