package ssh

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"flightdeck/internal/atomicfile"
)

// sumsFile, in the control directory, keeps manifestSums between
// processes.
const sumsFile = "manifest-sums.json"

// maxSums bounds the digests kept between processes (~250 bytes each in
// sumsFile): those this process used first, then the others, so that the
// record stays small as releases come and go (a 500-host fleet's last
// eight rollback targets fit).
const maxSums = 1 << 12

// manifestSums are the SHA-256 digests of release manifests already
// hashed on their hosts, each with the identity of the file it was taken
// from: device, inode, size and status change time (ctime), as find
// prints them. A survey or a check lists the release's manifest with that
// identity anyway; when it is the one recorded, the digest is taken from
// here and sha256sum does not run on the host (a process spawned per host
// and command: ~30 % of what a rollback's survey costs a host). Any write
// to the file, a chmod, a new hard link or its replacement moves its
// ctime (or its inode), which nothing but the clock sets: a file whose
// identity is unchanged holds what was hashed. A file changed within
// the racy margin of its listing (coarse clock ticks) is never recorded.
//
// A pool keeps them for its life and, with a private control directory,
// in sumsFile there, so that the next command's survey finds them (last
// writer wins: each entry checks itself against the listing).
type manifestSums struct {
	file string // "" keeps nothing between processes

	once sync.Once
	mu   sync.Mutex
	m    map[sumKey]*sumEntry
	// dirty: an entry was added or dropped since the load.
	dirty bool
	// hits counts the digests given from the record (sha256sum not run).
	hits atomic.Uint64
}

type sumKey struct {
	target string // Target.Key
	path   string // the manifest's absolute path on the host
}

type sumEntry struct {
	stamp string
	sum   [32]byte
	used  bool // looked up or recorded by this process
}

// savedSum is an entry as sumsFile keeps it.
type savedSum struct {
	Target string `json:"target"`
	Path   string `json:"path"`
	Stamp  string `json:"stamp"`
	SHA256 string `json:"sha256"`
}

func newManifestSums(controlDir string) *manifestSums {
	s := &manifestSums{m: map[sumKey]*sumEntry{}}
	if controlDir != "" {
		s.file = filepath.Join(controlDir, sumsFile)
	}
	return s
}

// load reads sumsFile once, when the control directory is private; a
// missing or unreadable file is an empty record.
func (s *manifestSums) load() {
	s.once.Do(func() {
		if s.file == "" || privateDir(filepath.Dir(s.file), false) != nil {
			return
		}
		b, err := os.ReadFile(s.file)
		if err != nil {
			return
		}
		var saved []savedSum
		if json.Unmarshal(b, &saved) != nil {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, e := range saved {
			var sum [32]byte
			if e.Stamp == "" || len(e.SHA256) != hex.EncodedLen(len(sum)) {
				continue
			}
			if _, err := hex.Decode(sum[:], []byte(e.SHA256)); err != nil {
				continue
			}
			k := sumKey{e.Target, e.Path}
			if _, ok := s.m[k]; !ok {
				s.m[k] = &sumEntry{stamp: e.Stamp, sum: sum}
			}
		}
	})
}

// lookup returns the entry for k, if any.
func (s *manifestSums) lookup(k sumKey) (stamp string, sum [32]byte, ok bool) {
	s.load()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[k]
	if !ok {
		return "", sum, false
	}
	e.used = true
	return e.stamp, e.sum, true
}

// record keeps sum for the file k names, as identified by stamp.
func (s *manifestSums) record(k sumKey, stamp string, sum [32]byte) {
	s.load()
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[k]; ok && e.stamp == stamp && e.sum == sum {
		e.used = true
		return
	}
	s.m[k] = &sumEntry{stamp: stamp, sum: sum, used: true}
	s.dirty = true
}

// forget drops k's entry (its file was listed with another identity).
func (s *manifestSums) forget(k sumKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[k]; ok {
		delete(s.m, k)
		s.dirty = true
	}
}

// save writes the entries to sumsFile when they changed: those this
// process used first, up to maxSums. Nothing depends on it succeeding.
func (s *manifestSums) save() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.file == "" || !s.dirty || privateDir(filepath.Dir(s.file), false) != nil {
		return
	}
	out := make([]savedSum, 0, min(len(s.m), maxSums))
	for _, used := range []bool{true, false} {
		for k, e := range s.m {
			if e.used == used && len(out) < maxSums {
				out = append(out, savedSum{Target: k.target, Path: k.path, Stamp: e.stamp, SHA256: hex.EncodeToString(e.sum[:])})
			}
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return
	}
	if atomicfile.Write(s.file, b, 0o600) == nil {
		s.dirty = false
	}
}
