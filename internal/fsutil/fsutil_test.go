package fsutil

import (
	"os"
	"path/filepath"
	"strings"
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

func TestReadFileLimit(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("12345"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFileLimit(p, 5); err != nil || string(b) != "12345" {
		t.Fatalf("at the limit: %q %v", b, err)
	}
	if _, err := ReadFileLimit(p, 4); err == nil || !strings.Contains(err.Error(), "larger than 4 bytes") {
		t.Fatalf("over the limit: %v", err)
	}
	// An endless file ends with an error, not with all memory.
	if _, err := ReadFileLimit("/dev/zero", 1<<10); err == nil {
		t.Fatal("/dev/zero read to the end")
	}
}
