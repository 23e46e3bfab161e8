package serve

import (
	"crypto/sha256"
	"errors"
	"io/fs"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"flightdeck/internal/fsutil"
)

// keyring holds the authorised keys and, when they came from a file,
// re-reads it when it changes, as sshd reads authorized_keys afresh at
// every login: a key added or removed takes effect without a restart.
// A file that no longer parses leaves the last good keys in force (and is
// logged); an empty or missing file lets nobody in.
type keyring struct {
	path string // "" when the keys were given, not read from a file
	log  *slog.Logger
	cur  atomic.Pointer[Keys]

	mu      sync.Mutex
	stamp   fileStamp // of the file as last read (parsed or not)
	checked time.Time
}

// fileStamp tells whether a file changed since it was read: by its
// content's digest, since a same-size replacement within the same
// second (or one that keeps the modification time) leaves mtime and
// size as they were, and a revoked key must not stay in force.
type fileStamp struct {
	sum [sha256.Size]byte
	ok  bool // the file existed and was read
}

// recheckEvery rate-limits the checks made by sessions' watch loops;
// logins always check.
const recheckEvery = time.Second

func newKeyring(initial *Keys, path string, log *slog.Logger) *keyring {
	k := &keyring{path: path, log: log}
	k.cur.Store(initial)
	if path != "" {
		k.stamp = stampOf(path)
	}
	return k
}

// readStamped reads the keys file and its stamp; a file that cannot be
// read has the zero stamp and err set.
func readStamped(path string) ([]byte, fileStamp, error) {
	b, err := fsutil.ReadFileLimit(path, maxKeysFileBytes)
	if err != nil {
		return nil, fileStamp{}, err
	}
	return b, fileStamp{sum: sha256.Sum256(b), ok: true}, nil
}

func stampOf(path string) fileStamp {
	_, st, _ := readStamped(path)
	return st
}

// keys returns the keys in force, re-reading the file first if it
// changed. A login passes now=true; periodic checks are rate-limited.
func (k *keyring) keys(now bool) *Keys {
	if k.path != "" {
		k.refresh(now)
	}
	return k.cur.Load()
}

func (k *keyring) refresh(now bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	t := time.Now()
	if !now && t.Sub(k.checked) < recheckEvery {
		return
	}
	k.checked = t
	b, st, err := readStamped(k.path)
	if st == k.stamp {
		return
	}
	k.stamp = st
	old := k.cur.Load()
	if errors.Is(err, fs.ErrNotExist) {
		k.cur.Store(&Keys{byKey: map[string]Identity{}})
		k.log.Error("authorized keys file is gone: nobody can connect", "file", k.path)
		return
	}
	if err != nil {
		k.log.Error("authorized keys not reloaded: the previous keys stay in force", "file", k.path, "err", err)
		return
	}
	keys, err := ParseKeys(k.path, b)
	if err != nil {
		k.log.Error("authorized keys not reloaded: the previous keys stay in force", "err", err)
		return
	}
	k.cur.Store(keys)
	added, removed := diffKeys(old, keys)
	k.log.Info("authorized keys reloaded", "file", k.path, "keys", keys.Len(), "added", added, "removed", removed)
	if keys.Len() == 0 {
		k.log.Warn("authorized keys file has no keys: nobody can connect", "file", k.path)
	}
}

// diffKeys names (by "name fingerprint") the identities added and removed.
func diffKeys(old, cur *Keys) (added, removed []string) {
	label := func(id Identity) string { return id.Name + " " + id.Fingerprint }
	for w, id := range cur.byKey {
		if _, ok := old.byKey[w]; !ok {
			added = append(added, label(id))
		}
	}
	for w, id := range old.byKey {
		if _, ok := cur.byKey[w]; !ok {
			removed = append(removed, label(id))
		}
	}
	return added, removed
}
