package router

import (
	"math"
	"net/http"
	"net/textproto"
	"strings"
	"sync/atomic"
	"time"
)

// table is an immutable routing snapshot. The request path loads it through
// an atomic.Pointer and never takes a lock; writers build a new table and
// swap it in.
type table struct {
	stable    *pool // nil when no route is set
	candidate *pool // nil when the route has no candidate
	// threshold: a request whose draw is below it goes to the candidate.
	threshold uint64
	// all: weight 100, every request goes to the candidate.
	all bool

	stickyCookie string
	stickyHeader string // canonical MIME header key
	stickySeed   uint64

	cohorts []cohort

	pools    map[string]*pool
	backends map[string]*backend
}

// cohort is a compiled engine.CohortRule.
type cohort struct {
	pool      *pool
	header    string // canonical MIME header key, or ""
	cookie    string // cookie name, or ""
	value     string
	hasValue  bool
	threshold uint64 // hash below it matches (percent rules)
	all       bool   // percent 100
	seed      uint64
}

// pool is the backends of one release in one snapshot.
type pool struct {
	release  string
	backends []*backend
	rr       atomic.Uint32
	stats    *releaseStats
}

// percentThreshold maps a percentage to a threshold over the uint64 space;
// all reports percent >= 100.
func percentThreshold(percent float64) (threshold uint64, all bool) {
	if !(percent > 0) { // also NaN
		return 0, false
	}
	const space = float64(1 << 64)
	t := percent / 100 * space
	if percent >= 100 || t >= space {
		return math.MaxUint64, true
	}
	return uint64(t), false
}

// pick returns the pool that serves req, or nil when no route is set. rnd is
// a uniformly distributed random number used when neither a cohort rule
// nor the sticky attribute decides.
func (t *table) pick(req *http.Request, rnd uint64) *pool {
	for i := range t.cohorts {
		c := &t.cohorts[i]
		v, ok := attribute(req, c.header, c.cookie)
		if !ok {
			continue
		}
		if c.hasValue {
			if v == c.value {
				return c.pool
			}
			continue
		}
		if c.all || hashString(c.seed, v) < c.threshold {
			return c.pool
		}
	}
	if t.candidate == nil || (t.threshold == 0 && !t.all) {
		return t.stable
	}
	if t.all {
		return t.candidate
	}
	if t.stickyCookie != "" || t.stickyHeader != "" {
		if v, ok := attribute(req, t.stickyHeader, t.stickyCookie); ok {
			rnd = hashString(t.stickySeed, v)
		}
	}
	if rnd < t.threshold {
		return t.candidate
	}
	return t.stable
}

// fallback is the pool that serves when p has no backend in rotation: the
// stable release for a candidate or cohort pool, the candidate for the
// stable one; nil when there is no other side.
func (t *table) fallback(p *pool) *pool {
	switch {
	case p == t.stable:
		return t.candidate
	case t.stable != nil:
		return t.stable
	}
	return nil
}

// attribute returns the value of the cookie (checked first) or the header.
func attribute(req *http.Request, header, cookie string) (string, bool) {
	if cookie != "" {
		if v, ok := cookieValue(req.Header, cookie); ok {
			return v, true
		}
	}
	if header != "" {
		if vs := req.Header[header]; len(vs) > 0 && vs[0] != "" {
			return vs[0], true
		}
	}
	return "", false
}

// cookieValue finds a cookie in the Cookie header lines without allocating
// (http.Request.Cookie parses every cookie into a slice).
func cookieValue(h http.Header, name string) (string, bool) {
	for _, line := range h["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			k, v, ok := strings.Cut(part, "=")
			if !ok || k != name {
				continue
			}
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			if v == "" {
				return "", false
			}
			return v, true
		}
	}
	return "", false
}

// next returns the next backend in rotation (healthy and not draining),
// round robin, skipping skip; nil when there is none.
func (p *pool) next(skip *backend) *backend {
	n := uint32(len(p.backends))
	if n == 0 {
		return nil
	}
	start := p.rr.Add(1)
	for i := range n {
		b := p.backends[(start+i)%n]
		if b != skip && b.inRotation() {
			return b
		}
	}
	return nil
}

// panicWindow is how recently a backend must have passed a health check to
// receive traffic in panic mode.
const panicWindow = 30 * time.Second

// nextPanic returns a non-draining backend that passed a health check
// within panicWindow, for when no backend of either side is in rotation:
// failing health checks on every backend at once usually means the checks
// are slow (an overloaded machine), not that every backend is dead, so the
// router keeps serving rather than answering 503 to everyone.
func (p *pool) nextPanic(now time.Time) *backend {
	n := uint32(len(p.backends))
	start := p.rr.Add(1)
	for i := range n {
		b := p.backends[(start+i)%n]
		if !b.draining.Load() && now.UnixNano()-b.lastHealthy.Load() < int64(panicWindow) {
			return b
		}
	}
	return nil
}

// hashString is a stable 64-bit hash (FNV-1a with a seed, then a
// splitmix64 finaliser so that every bit is well mixed). It must never
// change: sticky users and cohorts depend on it across restarts.
func hashString(seed uint64, s string) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037) ^ seed
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// buildTable compiles the persisted state into a snapshot. The state has
// been validated; backends holds every backend of st.Pools.
func buildTable(st *state, backends map[string]*backend, stats map[string]*releaseStats) *table {
	t := &table{
		pools:    make(map[string]*pool, len(st.Pools)),
		backends: make(map[string]*backend, len(backends)),
	}
	for rel, addrs := range st.Pools {
		p := &pool{release: rel, stats: stats[rel]}
		for _, a := range addrs {
			p.backends = append(p.backends, backends[a])
		}
		t.pools[rel] = p
	}
	for a, b := range backends {
		t.backends[a] = b
	}
	r := st.Route
	t.stable = t.pools[r.Stable]
	if r.Candidate != "" {
		t.candidate = t.pools[r.Candidate]
	}
	t.threshold, t.all = percentThreshold(r.Weight)
	t.stickyCookie = r.StickyCookie
	if r.StickyHeader != "" {
		t.stickyHeader = textproto.CanonicalMIMEHeaderKey(r.StickyHeader)
	}
	t.stickySeed = hashString(0, "sticky")
	for _, c := range st.Cohorts {
		cc := cohort{
			pool:     t.pools[c.Release],
			cookie:   c.Cookie,
			value:    c.Value,
			hasValue: c.Value != "",
			seed:     hashString(0, "cohort\x00"+c.Release+"\x00"+c.Header+"\x00"+c.Cookie),
		}
		if c.Header != "" {
			cc.header = textproto.CanonicalMIMEHeaderKey(c.Header)
		}
		cc.threshold, cc.all = percentThreshold(c.Percent)
		t.cohorts = append(t.cohorts, cc)
	}
	return t
}
