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
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"flightdeck/engine"
	"flightdeck/targets/layout"
)

// syncAutoFiles is the number of copied files up to which SyncAuto fsyncs
// them one by one rather than calling syncfs(2).
const syncAutoFiles = 256

// FS is the layout's file system over local system calls. Its zero value
// uses SyncAuto.
type FS struct {
	sync SyncMode
}

var _ layout.FS = (*FS)(nil)

// bufPool holds copy and hash buffers.
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 128<<10)
	return &b
}}

// symlinkErr turns ELOOP from an O_NOFOLLOW open into a layout.SymlinkError.
func symlinkErr(name, want string, err error) error {
	if errors.Is(err, syscall.ELOOP) {
		return &layout.SymlinkError{Path: name, Want: want}
	}
	return err
}

// Lstat describes name without following a final symlink.
func (*FS) Lstat(ctx context.Context, name string) (fs.FileInfo, error) { return os.Lstat(name) }

// ReadDir lists a directory (never through a final symlink) with lstat
// information for each entry.
func (*FS) ReadDir(ctx context.Context, name string) ([]fs.FileInfo, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, symlinkErr(name, "directory", err)
	}
	defer f.Close()
	return f.Readdir(-1)
}

// ReadLink returns a symlink's target.
func (*FS) ReadLink(ctx context.Context, name string) (string, error) { return os.Readlink(name) }

// ReadFile reads a regular file of at most limit bytes, never through a
// final symlink.
func (*FS) ReadFile(ctx context.Context, name string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, symlinkErr(name, "file", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	return b, nil
}

// Mkdir creates a directory with exactly mode.
func (*FS) Mkdir(ctx context.Context, name string, mode fs.FileMode) error {
	if err := os.Mkdir(name, 0o700); err != nil {
		return err
	}
	return os.Chmod(name, mode)
}

// Chmod sets the mode of name, refusing a symlink.
func (*FS) Chmod(ctx context.Context, name string, mode fs.FileMode) error {
	fi, err := os.Lstat(name)
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("chmod %s: is a symlink", name)
	}
	return os.Chmod(name, mode)
}

// Symlink creates name -> target.
func (*FS) Symlink(ctx context.Context, target, name string) error { return os.Symlink(target, name) }

// Rename renames a directory or file into place, failing if newname exists
// (rename(2) would silently replace an empty directory). File systems
// without RENAME_NOREPLACE fall back to a plain rename.
func (*FS) Rename(ctx context.Context, oldname, newname string) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldname, unix.AT_FDCWD, newname, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		if _, serr := os.Lstat(newname); serr == nil {
			return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: fs.ErrExist}
		}
		return os.Rename(oldname, newname)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err}
	}
	return nil
}

// Replace renames oldname over newname atomically.
func (*FS) Replace(ctx context.Context, oldname, newname string) error {
	return os.Rename(oldname, newname)
}

// RemoveAll removes a tree (see removeTree).
func (*FS) RemoveAll(ctx context.Context, name string) error { return removeTree(name) }

// Append appends data to name (never through a final symlink) and fsyncs it.
func (*FS) Append(ctx context.Context, name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return symlinkErr(name, "file", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("append to %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", name, err)
	}
	return f.Close()
}

// SyncDir fsyncs a directory.
func (*FS) SyncDir(ctx context.Context, name string) error { return fsyncDir(name) }

// Hash returns the SHA-256 of each file, read without following a final
// symlink.
func (*FS) Hash(ctx context.Context, names []string) ([]string, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	h := sha256.New()
	out := make([]string, len(names))
	for i, n := range names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(n, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, symlinkErr(n, "file", err)
		}
		h.Reset()
		_, err = io.CopyBuffer(h, struct{ io.Reader }{f}, *bp)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("hash %s: %w", n, err)
		}
		out[i] = hex.EncodeToString(h.Sum(nil))
	}
	return out, nil
}

// Stamps describes every regular file under root (lstat, no symlink
// followed); recent are those modified less than within before the walk
// began, or later.
func (*FS) Stamps(ctx context.Context, root string, within time.Duration) (map[string]layout.Stamp, map[string]bool, error) {
	since := time.Now().Add(-within).UnixNano()
	out := map[string]layout.Stamp{}
	recent := map[string]bool{}
	err := filepath.WalkDir(filepath.FromSlash(root), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("stamps of %s: no inode information", root)
		}
		rel, err := filepath.Rel(filepath.FromSlash(root), p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		out[name] = layout.Stamp{Dev: uint64(st.Dev), Ino: st.Ino, Size: st.Size,
			Perm: st.Mode & 0o7777, MTime: st.Mtim.Nano()}
		if st.Mtim.Nano() > since {
			recent[name] = true
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("stamps of %s: %w", root, err)
	}
	return out, recent, nil
}

// Write creates the ops in order on the calling goroutine and makes them
// durable as the FS's SyncMode says.
func (f *FS) Write(ctx context.Context, ops []layout.Op, done func(i int, sent int64)) error {
	copies := 0
	for _, op := range ops {
		if op.Kind == engine.KindFile && op.Link == "" {
			copies++
		}
	}
	syncfs := f.sync == SyncFS || f.sync == SyncAuto && copies > syncAutoFiles
	eachFile := !syncfs
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	var dirs []string
	seen := map[string]bool{}
	for i, op := range ops {
		if err := ctx.Err(); err != nil {
			return err
		}
		if d := path.Dir(op.Name); !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
		var sent int64
		var err error
		switch op.Kind {
		case engine.KindDir:
			err = f.Mkdir(ctx, op.Name, op.Mode)
		case engine.KindSymlink:
			err = os.Symlink(op.Target, op.Name)
		case engine.KindFile:
			// A failed link (EMLINK, a release pruned meanwhile) falls back
			// to a copy.
			if op.Link == "" || os.Link(op.Link, op.Name) != nil {
				sent, err = copyIn(op, *bp, eachFile)
			}
		default:
			err = fmt.Errorf("unknown kind %q", op.Kind)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", op.Name, err)
		}
		if op.Kind == engine.KindFile && done != nil {
			done(i, sent)
		}
	}
	if len(ops) == 0 {
		return nil
	}
	if syncfs {
		return syncFS(path.Dir(ops[0].Name))
	}
	for _, d := range slices.Backward(dirs) {
		if err := fsyncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// copyIn writes op's content to a new file with op's mode, fsyncing it
// when sync is set.
func copyIn(op layout.Op, buf []byte, sync bool) (int64, error) {
	src, err := op.Open()
	if err != nil {
		return 0, err
	}
	defer src.Close()
	out, err := os.OpenFile(op.Name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return 0, err
	}
	defer out.Close() // a second close after the checked one is harmless
	// struct{io.Writer} keeps os.File.ReadFrom (and its own buffer) out.
	n, err := io.CopyBuffer(struct{ io.Writer }{out}, src, buf)
	if err != nil {
		return n, fmt.Errorf("copy: %w", err)
	}
	if err := out.Chmod(op.Mode); err != nil {
		return n, err
	}
	if sync {
		if err := out.Sync(); err != nil {
			return n, fmt.Errorf("sync: %w", err)
		}
	}
	return n, out.Close()
}

// fsyncDir fsyncs a directory so that entries created, renamed or removed
// in it are durable.
func fsyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s for sync: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// syncFS flushes the file system holding dir with syncfs(2).
func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s for syncfs: %w", dir, err)
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}

// removeTree removes path and everything below it, following no symlink.
// Release files are read-only, which does not hinder removal (that needs
// write permission on the directories); but a directory someone made
// read-only does, so on failure every directory is made owner-writable and
// removal is retried.
func removeTree(path string) error {
	var first error
	for range 4 { // each pass can open one more level of unreadable directories
		err := os.RemoveAll(path)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
		_ = filepath.WalkDir(path, func(p string, d fs.DirEntry, werr error) error {
			if d == nil || !d.IsDir() {
				return nil
			}
			if info, ierr := d.Info(); ierr == nil {
				_ = os.Chmod(p, info.Mode().Perm()|0o700)
			} else {
				_ = os.Chmod(p, 0o700)
			}
			if werr != nil {
				return fs.SkipDir
			}
			return nil
		})
	}
	return fmt.Errorf("remove %s: %w", path, first)
}
