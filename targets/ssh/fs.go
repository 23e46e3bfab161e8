package ssh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"

	"github.com/pkg/sftp"
	"golang.org/x/sync/errgroup"

	"flightdeck/targets/layout"
)

// remoteFS is the layout's file system over one attempt of an operation
// on the host's connection: SFTP requests (OpenSSH's sftp-server), and
// exec sessions for hashing, tar streams and syncfs. pkg/sftp calls take no
// context: cancelling ctx closes the connection (see Host.run), which
// unblocks them. Every completed request kicks the idle watchdog.
//
// SFTP resolves every element of a name but the last one through
// symlinks, and its open and setstat follow a final symlink too; the
// layout checks with Lstat (and parents' listings) that nothing on the way
// is a symlink before it uses a name. A symlink planted in the short time
// between that check and the use is not caught over SFTP (locally,
// O_NOFOLLOW catches it).
type remoteFS struct {
	r *remote
}

var (
	_ layout.FS        = remoteFS{}
	_ layout.Pipeliner = remoteFS{}
)

func (r *remote) fs() remoteFS { return remoteFS{r} }

// Pipelined says that the layout should send independent requests at
// once: each costs a round trip to the host (see layout.Pipeliner).
func (remoteFS) Pipelined() bool { return true }

func (f remoteFS) Lstat(ctx context.Context, name string) (fs.FileInfo, error) {
	fi, err := f.r.sftp.Lstat(name)
	f.r.kick()
	return fi, err
}

// ReadDir lists a directory; entries are described by lstat (OpenSSH's
// sftp-server lstats them).
func (f remoteFS) ReadDir(ctx context.Context, name string) ([]fs.FileInfo, error) {
	ents, err := f.r.sftp.ReadDirContext(ctx, name)
	f.r.kick()
	return ents, err
}

func (f remoteFS) ReadLink(ctx context.Context, name string) (string, error) {
	t, err := f.r.sftp.ReadLink(name)
	f.r.kick()
	return t, err
}

// ReadFile reads a regular file of at most limit bytes: lstat first, so
// that a symlink is refused rather than followed.
func (f remoteFS) ReadFile(ctx context.Context, name string, limit int64) ([]byte, error) {
	fi, err := f.Lstat(ctx, name)
	if err != nil {
		return nil, err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, &layout.SymlinkError{Path: name, Want: "file"}
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	h, err := f.r.sftp.Open(name)
	if err != nil {
		return nil, err
	}
	defer closeLater(h)
	// One ReadAt of the size lstat gave, plus a byte: pkg/sftp sends its
	// chunks at once (one round trip), where a reader's growing buffers
	// wait for one another (a 100 KB manifest took ~10). The extra byte
	// finds a file that grew since the lstat.
	b := make([]byte, fi.Size()+1)
	n, err := h.ReadAt(b, 0)
	f.r.kick()
	switch {
	case err != nil && !errors.Is(err, io.EOF):
		return nil, err
	case int64(n) > limit:
		return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
	case int64(n) > fi.Size():
		// It grew: read the rest, still bounded by limit.
		rest, err := io.ReadAll(io.NewSectionReader(h, int64(n), limit+1-int64(n)))
		f.r.kick()
		if err != nil {
			return nil, err
		}
		b = append(b[:n], rest...)
		if int64(len(b)) > limit {
			return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
		}
		return b, nil
	}
	return b[:n], nil
}

func (f remoteFS) Mkdir(ctx context.Context, name string, mode fs.FileMode) error {
	if err := f.r.sftp.Mkdir(name); err != nil {
		return err
	}
	f.r.kick()
	if err := f.r.sftp.Chmod(name, mode); err != nil {
		return err
	}
	f.r.kick()
	return nil
}

// Chmod sets a mode, refusing a symlink (SFTP setstat would follow it).
func (f remoteFS) Chmod(ctx context.Context, name string, mode fs.FileMode) error {
	fi, err := f.Lstat(ctx, name)
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("chmod %s: is a symlink", name)
	}
	err = f.r.sftp.Chmod(name, mode)
	f.r.kick()
	return err
}

func (f remoteFS) Symlink(ctx context.Context, target, name string) error {
	err := f.r.sftp.Symlink(target, name)
	f.r.kick()
	return err
}

// Rename uses SFTP's rename, which OpenSSH refuses when newname exists.
func (f remoteFS) Rename(ctx context.Context, oldname, newname string) error {
	err := f.r.sftp.Rename(oldname, newname)
	f.r.kick()
	return err
}

// Replace uses posix-rename@openssh.com (rename(2)).
func (f remoteFS) Replace(ctx context.Context, oldname, newname string) error {
	err := f.r.sftp.PosixRename(oldname, newname)
	f.r.kick()
	return err
}

// Append appends data (lstat first: a symlink is refused), then fsyncs the
// file with fsync@openssh.com.
func (f remoteFS) Append(ctx context.Context, name string, data []byte) error {
	if fi, err := f.Lstat(ctx, name); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return &layout.SymlinkError{Path: name, Want: "file"}
	} else if err != nil && !isNotExist(err) {
		return err
	}
	h, err := f.r.sftp.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	if _, err := h.Write(data); err != nil {
		h.Close()
		return fmt.Errorf("append to %s: %w", name, err)
	}
	if err := h.Sync(); err != nil {
		h.Close()
		return fmt.Errorf("sync %s: %w", name, err)
	}
	f.r.kick()
	closeLater(h) // the line is durable: fsync answered
	return nil
}

// SyncDir fsyncs a directory: OpenSSH's sftp-server opens a directory
// read-only as a file handle, which fsync@openssh.com accepts.
func (f remoteFS) SyncDir(ctx context.Context, name string) error {
	h, err := f.r.sftp.Open(name)
	if err != nil {
		return fmt.Errorf("open %s for sync: %w", name, err)
	}
	defer closeLater(h)
	if err := h.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", name, err)
	}
	f.r.kick()
	return nil
}

// closeLater closes a handle without waiting for the server's answer: one
// round trip less for a handle that was only read, or whose writes an
// fsync already made durable (its close has nothing left to report). A
// connection that ends first ends the wait.
func closeLater(h *sftp.File) {
	go func() { _ = h.Close() }()
}

// RemoveAll removes a tree without following symlinks: with one `rm -rf`
// on the host (a pruned release is hundreds of files: one SFTP request
// each, and a sequential walk of its directories, took seconds on a
// loaded host), else, when rm fails (a read-only directory in the tree,
// no rm), over SFTP, making directories writable first and removing
// files concurrently.
func (f remoteFS) RemoveAll(ctx context.Context, root string) error {
	r := f.r
	st, err := r.sftp.Lstat(root)
	r.kick()
	if isNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return r.sftp.Remove(root)
	}
	if _, err := r.output("rm -rf -- " + Quote(root)); err == nil {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var files []string
	dirs := []string{root}
	for i := 0; i < len(dirs); i++ {
		d := dirs[i]
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := r.sftp.Chmod(d, 0o700); err != nil && !isNotExist(err) {
			return fmt.Errorf("make %s writable: %w", d, err)
		}
		entries, err := r.sftp.ReadDir(d)
		r.kick()
		if err != nil && !isNotExist(err) {
			return fmt.Errorf("list %s: %w", d, err)
		}
		for _, e := range entries {
			p := path.Join(d, e.Name())
			if e.IsDir() {
				dirs = append(dirs, p)
			} else {
				files = append(files, p)
			}
		}
	}
	g, _ := errgroup.WithContext(ctx)
	g.SetLimit(r.h.pool.opts.Workers)
	for _, p := range files {
		g.Go(func() error {
			if err := r.sftp.Remove(p); err != nil && !isNotExist(err) {
				return fmt.Errorf("remove %s: %w", p, err)
			}
			r.kick()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := r.sftp.RemoveDirectory(dirs[i]); err != nil && !isNotExist(err) {
			return fmt.Errorf("remove %s: %w", dirs[i], err)
		}
		r.kick()
	}
	return nil
}
