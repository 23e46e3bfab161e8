package serve

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	gossh "golang.org/x/crypto/ssh"

	"flightdeck/engine"
)

// HostKeyName is the host key's file name in the state directory.
const HostKeyName = "serve_host_ed25519"

// LoadOrCreateHostKey reads the server's private host key at path, or
// generates an ed25519 key there (mode 0600, written under a temporary
// name and renamed, so a crash never leaves half a key) when there is
// none. A key readable by group or others is refused, as sshd does.
// created reports whether the key is new.
func LoadOrCreateHostKey(path string) (signer gossh.Signer, created bool, err error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		fi, err := os.Stat(path)
		if err != nil {
			return nil, false, fmt.Errorf("host key: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return nil, false, fmt.Errorf("host key %s is readable by others (mode %04o): chmod 600 it", path, fi.Mode().Perm())
		}
		s, err := gossh.ParsePrivateKey(b)
		if err != nil {
			return nil, false, fmt.Errorf("host key %s: %w", path, err)
		}
		return s, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, false, fmt.Errorf("host key: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("generate host key: %w", err)
	}
	blk, err := gossh.MarshalPrivateKey(priv, "flightdeck serve host key")
	if err != nil {
		return nil, false, fmt.Errorf("encode host key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("host key directory: %w", err)
	}
	tmp := filepath.Join(filepath.Dir(path), engine.TempPrefix+filepath.Base(path)+"-"+engine.RandomSuffix(8))
	if err := os.WriteFile(tmp, pem.EncodeToMemory(blk), 0o600); err != nil {
		return nil, false, fmt.Errorf("write host key: %w", err)
	}
	// Link, not rename: two servers starting at once must not replace
	// each other's key; the loser reads the winner's.
	if err := os.Link(tmp, path); err != nil {
		_ = os.Remove(tmp)
		if errors.Is(err, fs.ErrExist) {
			return LoadOrCreateHostKey(path)
		}
		return nil, false, fmt.Errorf("install host key: %w", err)
	}
	_ = os.Remove(tmp)
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		return nil, false, fmt.Errorf("host key: %w", err)
	}
	return s, true, nil
}
