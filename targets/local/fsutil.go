package local

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// errEINVAL is what readlink(2) returns for a path that is not a symlink.
var errEINVAL error = syscall.EINVAL

// bufPool holds copy and hash buffers shared by Prepare and Verify.
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 128<<10)
	return &b
}}

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

// fsyncPath fsyncs a file by name.
func fsyncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("open %s for sync: %w", p, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", p, err)
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

// removeTree removes path and everything below it. Release files are
// read-only, which does not hinder removal (that needs write permission on
// the directories); but a directory someone made read-only does, so on
// failure every directory is made owner-writable and removal is retried.
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
