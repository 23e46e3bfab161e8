// Package reqlog turns a load balancer's request log into the per-release
// counters the engine measures with: requests, status classes, connection
// errors and a latency histogram (the built-in router's buckets), kept per
// upstream address and summed over a release's pool on demand.
//
// The HAProxy adapter feeds it from HAProxy's log ring (streamed over the
// Runtime API) for latency; the nginx adapter from its access log for
// everything. The histogram uses router.LatencyBounds, so router.Diff and
// router.Quantile compute a window's error rate and p99 exactly as they do
// for the built-in router.
package reqlog

import (
	"sync"
	"time"

	"flightdeck/engine"
	"flightdeck/targets/router"
)

// Tally holds cumulative per-address counters. It is safe for concurrent use.
type Tally struct {
	bounds []float64
	mu     sync.Mutex
	addrs  map[string]*counts
}

type counts struct {
	requests, connErrors uint64
	class                [6]uint64 // index = status / 100
	latency              []uint64  // len(bounds)+1
}

// New returns an empty tally with the built-in router's latency buckets.
func New() *Tally {
	return &Tally{bounds: router.LatencyBounds(), addrs: map[string]*counts{}}
}

// Record counts one request answered through addr: status is the status
// the upstream answered (0 when none: a connection error), latency how long
// the upstream took (negative when unknown: not added to the histogram).
func (t *Tally) Record(addr string, status int, latency time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.addrs[addr]
	if c == nil {
		c = &counts{latency: make([]uint64, len(t.bounds)+1)}
		t.addrs[addr] = c
	}
	c.requests++
	if k := status / 100; status > 0 && k >= 1 && k <= 5 {
		c.class[k]++
	} else {
		c.connErrors++
	}
	if latency >= 0 {
		c.latency[bucket(t.bounds, latency.Seconds())]++
	}
}

func bucket(bounds []float64, s float64) int {
	for i, b := range bounds {
		if s <= b {
			return i
		}
	}
	return len(bounds)
}

// Sum returns the counters of addrs added together.
func (t *Tally) Sum(addrs []string) engine.ReleaseStats {
	rs := engine.ReleaseStats{Latency: engine.Histogram{
		Bounds: append([]float64(nil), t.bounds...),
		Counts: make([]uint64, len(t.bounds)+1),
	}}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, a := range addrs {
		c := t.addrs[a]
		if c == nil {
			continue
		}
		rs.Requests += c.requests
		rs.Status2xx += c.class[2]
		rs.Status3xx += c.class[3]
		rs.Status4xx += c.class[4]
		rs.Status5xx += c.class[5]
		rs.ConnErrors += c.connErrors
		for i, n := range c.latency {
			rs.Latency.Counts[i] += n
		}
	}
	return rs
}

// ByRelease sums the tally over each release's pool.
func (t *Tally) ByRelease(pools map[string][]string) map[string]engine.ReleaseStats {
	out := make(map[string]engine.ReleaseStats, len(pools))
	for rel, addrs := range pools {
		out[rel] = t.Sum(addrs)
	}
	return out
}
