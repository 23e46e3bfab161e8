package engine

import (
	"context"
	"io"
	"sync"
	"time"
)

// Artifact is a built release on this machine: a directory whose contents
// become releases/<ID> on every host, and the manifest of its files.
type Artifact struct {
	ID       string
	Dir      string
	Manifest *Manifest
	// Commit is the source commit, when the release was built from git.
	Commit string

	stored struct {
		once sync.Once
		m    *Manifest
		b    []byte
		err  error
	}
}

// StoredManifest is the manifest every host stores in the release
// (ManifestName): Manifest naming the release and its commit, and its
// encoding, made once for all hosts. Manifest must not change once it
// was called.
func (a *Artifact) StoredManifest() (*Manifest, []byte, error) {
	a.stored.once.Do(func() {
		m := *a.Manifest
		m.Release = a.ID
		if m.Commit == "" {
			m.Commit = a.Commit
		}
		a.stored.m = &m
		a.stored.b, a.stored.err = m.Marshal()
	})
	return a.stored.m, a.stored.b, a.stored.err
}

// Progress reports how far a host's prepare has come.
type Progress struct {
	FilesDone, FilesTotal int
	BytesDone, BytesTotal int64
	// BytesSent counts bytes actually transferred (unchanged files are linked, not sent).
	BytesSent int64
}

// HostStatus is what a host reports about itself.
type HostStatus struct {
	// Current is the release id `current` points to ("" when none).
	Current string
	// Releases are the complete releases present, oldest first.
	Releases []string
}

// SwitchInfo describes a switch or rollback for the host's revisions.log.
type SwitchInfo struct {
	Release  string
	Previous string
	Actor    string
	Action   SwitchKind // "" means deploy
	// Checked says the caller checked the release complete just before,
	// on this host (Host.Check, or the Host.Prepare that wrote it, which
	// checks what it wrote): Switch does not list it again.
	Checked bool
}

// ExecRequest is a command run on (or for) a host: a hook or a restart.
type ExecRequest struct {
	Command string
	Env     map[string]string
	Dir     string // working directory; default the release path
	Timeout time.Duration
	// Output receives combined stdout/stderr as it is produced.
	Output io.Writer
}

// Surveyor is a Host that cleans, inspects and checks a rollback target
// (Clean, Inspect, Check) in one pass, reading what the three share once:
// a run's start uses it when a host has it. check is Check's answer for
// target, given when the host holds target and current is not it (nil
// otherwise); err is Clean's or Inspect's.
type Surveyor interface {
	Survey(ctx context.Context, target string) (st HostStatus, check error, err error)
}

// Host is a deploy target the engine acts on. Implementations live under
// targets/ (a local directory, a server over SSH). Every method must honour
// ctx and be safe to call again after a crash (idempotent where it says so).
type Host interface {
	// Name is the host's display name from the plan.
	Name() string
	// Inspect reports the current release and the releases present. It
	// changes nothing on the host: read-only commands call it without the
	// lock.
	Inspect(ctx context.Context) (HostStatus, error)
	// Clean removes leftovers of interrupted work (temporary release
	// directories, stray current.* links) so that they can never become
	// current. Only the holder of the environment's lock may call it: a
	// running Prepare writes under such a temporary name.
	Clean(ctx context.Context) error
	// Prepare makes releases/<a.ID> complete on the host. Files whose hash
	// equals a previous release's are hard-linked; the release is written
	// under a temporary name and renamed into place when complete; its files
	// are read-only. Idempotent: an already complete release is left alone.
	Prepare(ctx context.Context, a *Artifact, progress func(Progress)) error
	// Check reports whether releases/<id> is complete: its manifest and every
	// entry of it present with its kind, size and read-only mode (no
	// hashing: cheap enough to run on every host before a rollback).
	Check(ctx context.Context, id string) error
	// Verify checks that releases/<id> is complete and its content matches
	// its manifest's hashes.
	Verify(ctx context.Context, id string) error
	// Switch points current at releases/<info.Release> atomically (a fresh
	// link renamed over current) and appends a line to revisions.log. It
	// refuses a release that is not complete.
	Switch(ctx context.Context, info SwitchInfo) error
	// Prune removes the oldest releases beyond keep, never the current one
	// nor any in protect. It returns the removed ids.
	Prune(ctx context.Context, keep int, protect []string) ([]string, error)
	// Exec runs a command for this host (on the host for remote hosts).
	Exec(ctx context.Context, req ExecRequest) error
	// ReleasePath is the absolute path of releases/<id> on the host.
	ReleasePath(id string) string
	// Close releases connections held for the host.
	Close() error
}
