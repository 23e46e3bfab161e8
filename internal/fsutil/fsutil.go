// Package fsutil holds small file helpers shared by packages that must
// not depend on each other.
package fsutil

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// CopyFile copies src to a new file dst (it must not exist) with mode.
func CopyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// ErrTooLarge is returned (wrapped) by ReadFileLimit for a file over its limit.
var ErrTooLarge = errors.New("too large")

// ReadFileLimit reads a file of at most limit bytes. A larger file (or an
// endless one: -f /dev/zero) is refused after reading limit+1 bytes, with
// an error naming the file and the limit.
func ReadFileLimit(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %w: larger than %s, the limit", path, ErrTooLarge, FormatSize(limit))
	}
	return b, nil
}

// FormatSize writes a byte count in the largest binary unit that divides it.
func FormatSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
