// Package fsutil holds small file helpers shared by packages that must
// not depend on each other.
package fsutil

import (
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
