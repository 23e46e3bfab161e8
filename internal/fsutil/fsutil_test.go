package fsutil

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCopyFile(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	if err := os.WriteFile(src, []byte("content"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CopyFile(src, dst, 0o640); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dst)
	st, _ := os.Stat(dst)
	if err != nil || string(b) != "content" || st.Mode().Perm() != 0o640&^currentUmask() {
		t.Fatalf("copy: %q %v mode %v", b, err, st.Mode())
	}
	if err := CopyFile(src, dst, 0o640); !os.IsExist(err) {
		t.Fatalf("copy over an existing file: %v, want it refused", err)
	}
}

func currentUmask() os.FileMode {
	dir, _ := os.MkdirTemp("", "umask")
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "f")
	f, _ := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o777)
	f.Close()
	st, _ := os.Stat(p)
	return 0o777 &^ st.Mode().Perm()
}
