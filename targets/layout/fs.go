package layout

import (
	"context"
	"io"
	"io/fs"
	"time"

	"flightdeck/engine"
)

// FS is the file system of one host, as the layout needs it. Every kind of
// host (a directory here, a server over SFTP, and next containers)
// implements it and nothing else of the layout: the rules live in Layout.
//
// Names are absolute and slash-separated. No method follows a symbolic
// link in the last element of a name (Lstat semantics); the Layout checks
// the elements between deploy_to and the name before it uses them (see
// SymlinkError). Errors for a missing name satisfy errors.Is(err,
// fs.ErrNotExist). Methods may be called from several goroutines at once.
//
// The per-file work of a release goes through the batch methods (ReadDir,
// Write, Hash), so that an implementation can pipeline or batch it.
type FS interface {
	// Lstat describes name without following a final symlink.
	Lstat(ctx context.Context, name string) (fs.FileInfo, error)
	// ReadDir lists the directory name; every entry is described as
	// Lstat would.
	ReadDir(ctx context.Context, name string) ([]fs.FileInfo, error)
	// ReadLink returns the target of the symlink name.
	ReadLink(ctx context.Context, name string) (string, error)
	// ReadFile returns the content of the regular file name (never through
	// a symlink), failing when it is larger than limit bytes.
	ReadFile(ctx context.Context, name string, limit int64) ([]byte, error)
	// Mkdir creates the directory name with exactly mode (setuid, setgid
	// and sticky bits included), failing if name exists.
	Mkdir(ctx context.Context, name string, mode fs.FileMode) error
	// Chmod sets the mode of name (never through a symlink).
	Chmod(ctx context.Context, name string, mode fs.FileMode) error
	// Symlink creates the symlink name pointing at target.
	Symlink(ctx context.Context, target, name string) error
	// Rename renames oldname to newname, failing if newname exists.
	Rename(ctx context.Context, oldname, newname string) error
	// Replace atomically renames oldname over newname (rename(2)).
	Replace(ctx context.Context, oldname, newname string) error
	// RemoveAll removes name and everything below it, following no
	// symlink; read-only directories below it are made writable first. A
	// missing name is not an error.
	RemoveAll(ctx context.Context, name string) error
	// Append appends data to the file name, creating it (mode 0644) when
	// missing, and makes the file durable (fsync) before returning. It
	// refuses a name that is a symlink.
	Append(ctx context.Context, name string, data []byte) error
	// SyncDir makes the entries of the directory name durable (fsync).
	SyncDir(ctx context.Context, name string) error
	// Write creates ops in order of the slice as far as directories go
	// (a directory before anything in it); files and symlinks may be
	// created concurrently once their directory exists. A file with a Link
	// is hard-linked from it, or written from Open when linking fails. Every
	// name must not exist yet. done, when not nil, is called once per file
	// op when the file is complete, with the bytes written (0 when linked);
	// calls may come from several goroutines. When Write returns without
	// error, every file and directory it wrote is durable (fsync or an
	// equivalent).
	Write(ctx context.Context, ops []Op, done func(i int, sent int64)) error
	// Hash returns the hex SHA-256 of each regular file in names, in order.
	Hash(ctx context.Context, names []string) ([]string, error)
	// Stamps describes every regular file under the directory root,
	// following no symlink, by slash-separated path relative to root.
	// recent names the files modified less than within before the
	// host's clock as read when Stamps began (or later than it). A host
	// that cannot tell (no inode numbers, no nanosecond times) returns an
	// error: its releases are then hashed in full.
	Stamps(ctx context.Context, root string, within time.Duration) (stamps map[string]Stamp, recent map[string]bool, err error)
}

// Stamp is what identifies a regular file's content on a host as long as
// nothing rewrites it: the file (device and inode), its size, its
// permission bits (with setuid, setgid and sticky, as in st_mode&07777)
// and its modification time in nanoseconds since the epoch. Writing to a
// file moves its modification time to the host's clock; replacing it
// changes its inode; chmod changes its mode.
type Stamp struct {
	Dev, Ino uint64
	Size     int64
	Perm     uint32
	MTime    int64
}

// Pipeliner is implemented by an FS whose requests gain from being in
// flight together, as a remote host's do (each costs a round trip): the
// layout then sends the reads that do not depend on one another at once.
type Pipeliner interface {
	// Pipelined reports whether independent requests should be sent at once.
	Pipelined() bool
}

// Op is one entry FS.Write creates.
type Op struct {
	Kind engine.FileKind
	// Name is the absolute name to create.
	Name string
	// Mode is the final mode: permission bits plus fs.ModeSetuid,
	// fs.ModeSetgid and fs.ModeSticky.
	Mode fs.FileMode
	// Target is a symlink's target.
	Target string
	// Link names an existing file on the host to hard-link (files only).
	Link string
	// Size is a file's size in bytes.
	Size int64
	// Open returns a file's content. The reader checks the content
	// against the manifest as it is read and fails at the end when it does
	// not match; it has a Size() int64 method.
	Open func() (io.ReadCloser, error)
}
