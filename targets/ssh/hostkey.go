package ssh

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// UnknownHostKeyError refuses a host whose key is in no known_hosts file.
type UnknownHostKeyError struct {
	Host        string // host:port as dialled
	KeyType     string
	Fingerprint string // SHA256:...
	Line        string // the known_hosts line that would trust it
	KnownHosts  string // the file it would go to
}

func (e *UnknownHostKeyError) Error() string {
	return fmt.Sprintf("host key of %s is unknown: %s %s; nothing was sent.\n"+
		"  Check the fingerprint out of band (ssh-keyscan -p PORT HOST | ssh-keygen -lf -), then either add this line to %s:\n"+
		"    %s\n"+
		"  or trust new hosts on first use with --accept-new-host-keys (ssh: accept_new_host_keys: true)",
		e.Host, e.KeyType, e.Fingerprint, e.KnownHosts, e.Line)
}

// HostKeyChangedError refuses a host whose key differs from the one
// recorded. It is never accepted automatically.
type HostKeyChangedError struct {
	Host        string
	KeyType     string
	Fingerprint string
	// Known lists where the recorded keys are (file:line).
	Known []string
}

func (e *HostKeyChangedError) Error() string {
	return fmt.Sprintf("HOST KEY OF %s HAS CHANGED: it now offers %s %s, which does not match %s. "+
		"Someone could be intercepting the connection, or the host was reinstalled. "+
		"Refused even with --accept-new-host-keys: after checking with the host's owner, remove the old entry (ssh-keygen -R) and trust the new key",
		e.Host, e.KeyType, e.Fingerprint, strings.Join(e.Known, ", "))
}

// hostKeys verifies host keys against known_hosts files and, when asked,
// records keys of unknown hosts in the first file.
type hostKeys struct {
	files    []string
	onAccept func(host, fingerprint string)

	mu       sync.Mutex
	check    gossh.HostKeyCallback // nil until loaded
	accepted map[string]gossh.PublicKey
}

func newHostKeys(files []string, onAccept func(host, fingerprint string)) *hostKeys {
	return &hostKeys{files: files, onAccept: onAccept, accepted: map[string]gossh.PublicKey{}}
}

// load (re)reads the known_hosts files; missing files count as empty.
func (k *hostKeys) load() (gossh.HostKeyCallback, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.check != nil {
		return k.check, nil
	}
	var existing []string
	for _, f := range k.files {
		if _, err := os.Stat(f); err == nil {
			existing = append(existing, f)
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("known_hosts %s: %w", f, err)
		}
	}
	cb, err := knownhosts.New(existing...)
	if err != nil {
		return nil, fmt.Errorf("read known_hosts: %w", err)
	}
	k.check = cb
	return cb, nil
}

// algorithms returns the host key algorithms of keys already known for
// addr, so that the server is asked for a key type we can verify (as
// OpenSSH does). Nil means no preference.
func (k *hostKeys) algorithms(addr string, remote net.Addr) []string {
	cb, err := k.load()
	if err != nil {
		return nil
	}
	var ke *knownhosts.KeyError
	if err := cb(addr, remote, probeKey{}); !errors.As(err, &ke) || len(ke.Want) == 0 {
		return nil
	}
	var algs []string
	seen := map[string]bool{}
	for _, w := range ke.Want {
		for _, a := range algorithmsFor(w.Key.Type()) {
			if !seen[a] {
				seen[a] = true
				algs = append(algs, a)
			}
		}
	}
	return algs
}

func algorithmsFor(keyType string) []string {
	switch keyType {
	case gossh.KeyAlgoRSA:
		return []string{gossh.KeyAlgoRSASHA512, gossh.KeyAlgoRSASHA256, gossh.KeyAlgoRSA}
	case gossh.CertAlgoRSAv01:
		return []string{gossh.CertAlgoRSASHA512v01, gossh.CertAlgoRSASHA256v01, gossh.CertAlgoRSAv01}
	}
	return []string{keyType}
}

// probeKey is a key no host has; checking it lists the known keys.
type probeKey struct{}

func (probeKey) Type() string                          { return "flightdeck-probe" }
func (probeKey) Marshal() []byte                       { return []byte("flightdeck-probe") }
func (probeKey) Verify([]byte, *gossh.Signature) error { return errors.New("probe key") }

// callback returns the HostKeyCallback for connections of a target.
func (k *hostKeys) callback(acceptNew bool) gossh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key gossh.PublicKey) error {
		cb, err := k.load()
		if err != nil {
			return err
		}
		norm := knownhosts.Normalize(hostname)
		k.mu.Lock()
		acc, ok := k.accepted[norm]
		k.mu.Unlock()
		if ok {
			if bytes.Equal(acc.Marshal(), key.Marshal()) {
				return nil
			}
			return &HostKeyChangedError{Host: hostname, KeyType: key.Type(),
				Fingerprint: gossh.FingerprintSHA256(key), Known: []string{"the key accepted earlier in this run"}}
		}
		err = cb(hostname, remote, key)
		if err == nil {
			return nil
		}
		var ke *knownhosts.KeyError
		if !errors.As(err, &ke) {
			return fmt.Errorf("verify host key of %s: %w", hostname, err)
		}
		fp := gossh.FingerprintSHA256(key)
		if len(ke.Want) > 0 {
			known := make([]string, len(ke.Want))
			for i, w := range ke.Want {
				known[i] = fmt.Sprintf("%s:%d", w.Filename, w.Line)
			}
			return &HostKeyChangedError{Host: hostname, KeyType: key.Type(), Fingerprint: fp, Known: known}
		}
		line := knownhosts.Line([]string{norm}, key)
		target := "~/.ssh/known_hosts"
		if len(k.files) > 0 {
			target = k.files[0]
		}
		if !acceptNew || len(k.files) == 0 {
			return &UnknownHostKeyError{Host: hostname, KeyType: key.Type(), Fingerprint: fp, Line: line, KnownHosts: target}
		}
		if err := k.record(norm, key, line); err != nil {
			return err
		}
		if k.onAccept != nil {
			k.onAccept(hostname, fp)
		}
		return nil
	}
}

// record appends line to the first known_hosts file.
func (k *hostKeys) record(norm string, key gossh.PublicKey, line string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	file := k.files[0]
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("record host key: %w", err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("record host key: %w", err)
	}
	// Start on a new line if the file does not end with one.
	prefix := ""
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		b := make([]byte, 1)
		if r, err := os.Open(file); err == nil {
			if _, err := r.ReadAt(b, st.Size()-1); err == nil && b[0] != '\n' {
				prefix = "\n"
			}
			r.Close()
		}
	}
	if _, err := f.WriteString(prefix + line + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("record host key in %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("record host key in %s: %w", file, err)
	}
	k.accepted[norm] = key
	return nil
}
