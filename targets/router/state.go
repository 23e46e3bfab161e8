package router

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"

	"flightdeck/engine"
	"flightdeck/internal/atomicfile"
	"flightdeck/internal/fsutil"
)

// stateVersion is the format version of the state file.
const stateVersion = 1

// state is the persisted routing state: what the operator asked for.
// Health and in-flight counts are live facts and are not persisted.
type state struct {
	Version int                 `json:"version"`
	Route   engine.Route        `json:"route"`
	Cohorts []engine.CohortRule `json:"cohorts"`
	Pools   map[string][]string `json:"pools"`
	Drained []string            `json:"drained"`
}

func newState() *state {
	return &state{Version: stateVersion, Pools: map[string][]string{}}
}

func (s *state) clone() *state {
	c := &state{
		Version: s.Version,
		Route:   s.Route,
		Cohorts: slices.Clone(s.Cohorts),
		Pools:   make(map[string][]string, len(s.Pools)),
		Drained: slices.Clone(s.Drained),
	}
	for k, v := range s.Pools {
		c.Pools[k] = slices.Clone(v)
	}
	return c
}

// poolOf returns the release whose pool holds addr.
func (s *state) poolOf(addr string) (string, bool) {
	for rel, addrs := range s.Pools {
		if slices.Contains(addrs, addr) {
			return rel, true
		}
	}
	return "", false
}

// validate checks the whole state; the error says what is wrong in terms
// an operator can act on.
func (s *state) validate() error {
	owner := map[string]string{}
	for _, rel := range slices.Sorted(maps.Keys(s.Pools)) {
		addrs := s.Pools[rel]
		if err := engine.ValidateReleaseID(rel); err != nil {
			return fmt.Errorf("pool %q: %w", rel, err)
		}
		for _, a := range addrs {
			if err := validateAddr(a); err != nil {
				return fmt.Errorf("pool %q: %w", rel, err)
			}
			if o, dup := owner[a]; dup {
				if o == rel {
					return fmt.Errorf("pool %q: backend %s listed twice", rel, a)
				}
				return fmt.Errorf("pool %q: backend %s already belongs to release %q; remove it from that pool first", rel, a, o)
			}
			owner[a] = rel
		}
	}
	if err := validateRoute(s.Route, s.Pools); err != nil {
		return err
	}
	for i, c := range s.Cohorts {
		if err := validateCohort(c, s.Pools); err != nil {
			return fmt.Errorf("cohort %d: %w", i, err)
		}
	}
	for _, a := range s.Drained {
		if _, ok := owner[a]; !ok {
			return fmt.Errorf("drained backend %s is in no pool", a)
		}
	}
	return nil
}

func validateAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("backend %q is not host:port: %w", a, err)
	}
	if host == "" {
		return fmt.Errorf("backend %q has no host", a)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("backend %q: port must be 1-65535", a)
	}
	if strings.ContainsAny(a, "/?#@ ") {
		return fmt.Errorf("backend %q: only host:port is allowed", a)
	}
	return nil
}

func validateRoute(r engine.Route, pools map[string][]string) error {
	if math.IsNaN(r.Weight) || r.Weight < 0 || r.Weight > 100 {
		return fmt.Errorf("route: weight %v is outside 0..100", r.Weight)
	}
	if r.Stable == "" {
		if r.Candidate != "" || r.Weight != 0 {
			return errors.New("route: a candidate or a weight needs a stable release")
		}
		return nil
	}
	if _, ok := pools[r.Stable]; !ok {
		return fmt.Errorf("route: unknown release %q (stable): set its pool first", r.Stable)
	}
	if r.Candidate == "" {
		if r.Weight != 0 {
			return fmt.Errorf("route: weight %v needs a candidate release", r.Weight)
		}
	} else {
		if _, ok := pools[r.Candidate]; !ok {
			return fmt.Errorf("route: unknown release %q (candidate): set its pool first", r.Candidate)
		}
		if r.Candidate == r.Stable {
			return fmt.Errorf("route: candidate and stable are both %q", r.Stable)
		}
	}
	if r.StickyHeader != "" && !validToken(r.StickyHeader) {
		return fmt.Errorf("route: sticky header %q is not a valid header name", r.StickyHeader)
	}
	if r.StickyCookie != "" && !validToken(r.StickyCookie) {
		return fmt.Errorf("route: sticky cookie %q is not a valid cookie name", r.StickyCookie)
	}
	return nil
}

func validateCohort(c engine.CohortRule, pools map[string][]string) error {
	if _, ok := pools[c.Release]; !ok {
		return fmt.Errorf("unknown release %q: set its pool first", c.Release)
	}
	if (c.Header == "") == (c.Cookie == "") {
		return errors.New("exactly one of header or cookie must be set")
	}
	if c.Header != "" && !validToken(c.Header) {
		return fmt.Errorf("header %q is not a valid header name", c.Header)
	}
	if c.Cookie != "" && !validToken(c.Cookie) {
		return fmt.Errorf("cookie %q is not a valid cookie name", c.Cookie)
	}
	if math.IsNaN(c.Percent) || c.Percent < 0 || c.Percent > 100 {
		return fmt.Errorf("percent %v is outside 0..100", c.Percent)
	}
	if c.Value != "" && c.Percent != 0 {
		return errors.New("set either value (exact match) or percent (hash of the value), not both")
	}
	if c.Value == "" && c.Percent == 0 {
		return errors.New("set value (exact match) or a percent above 0")
	}
	return nil
}

// validToken reports whether s is an RFC 7230 token (header and cookie names).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// maxStateBytes bounds the state file the router reads at start.
const maxStateBytes = 64 << 20

// loadState reads the state file; a missing file is an empty state, a
// corrupt one is an error (starting empty would silently drop all routes).
func loadState(path string) (*state, error) {
	data, err := fsutil.ReadFileLimit(path, maxStateBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return newState(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading router state: %w", err)
	}
	return parseState(path, data)
}

// parseState decodes and validates a state file's content; path is named
// in errors.
func parseState(path string, data []byte) (*state, error) {
	st := newState()
	if err := decodeStrict(data, st); err != nil {
		return nil, fmt.Errorf("parsing router state %s: %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("router state %s: version %d, want %d", path, st.Version, stateVersion)
	}
	if st.Pools == nil {
		st.Pools = map[string][]string{}
	}
	if err := st.validate(); err != nil {
		return nil, fmt.Errorf("router state %s: %w", path, err)
	}
	return st, nil
}

// saveState persists st atomically.
func saveState(path string, st *state) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding router state: %w", err)
	}
	data = append(data, '\n')
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("saving router state: %w", err)
	}
	return nil
}

// loadOrCreateToken returns the admin token stored in path, creating the
// file (mode 0600, 32 random bytes as hex) when it does not exist. A token
// file readable by group or others is refused, as sshd refuses loose keys.
func loadOrCreateToken(path string) (string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		var raw [32]byte
		if _, err := rand.Read(raw[:]); err != nil {
			return "", fmt.Errorf("generating admin token: %w", err)
		}
		tok := hex.EncodeToString(raw[:])
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return "", fmt.Errorf("creating admin token file: %w", err)
		}
		if _, err := f.WriteString(tok + "\n"); err != nil {
			f.Close()
			return "", fmt.Errorf("writing admin token file: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return "", fmt.Errorf("writing admin token file: %w", err)
		}
		if err := f.Close(); err != nil {
			return "", fmt.Errorf("writing admin token file: %w", err)
		}
		return tok, nil
	}
	if err != nil {
		return "", fmt.Errorf("reading admin token file: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("reading admin token file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("admin token file %s has mode %v: it must not be readable by group or others (chmod 600)", path, fi.Mode().Perm())
	}
	tok := strings.TrimSpace(string(data))
	if len(tok) < 16 {
		return "", fmt.Errorf("admin token file %s holds no usable token (at least 16 characters)", path)
	}
	return tok, nil
}

// ReadToken reads the admin token file written by the router, for clients.
func ReadToken(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading admin token file: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("admin token file %s is empty", path)
	}
	return tok, nil
}
