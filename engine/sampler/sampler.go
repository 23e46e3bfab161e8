// Package sampler samples an environment's traffic source every second,
// all the time (during every strategy, while a run is paused, between
// runs), independently of the SLO gate windows, and keeps per-release
// series of requests per second, error rate and p99, plus each host's
// latest request and error rates where the source counts per backend.
//
// Readers (the cockpit, every SSH session) take an immutable Snapshot:
// one coalesced value per sample, never a message per sample or per host.
// Samples are not journaled; the journal keeps the gate measurements.
package sampler

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"flightdeck/engine"
)

// Counters reads cumulative per-release (per-pool) counters: the built-in
// router, HAProxy and nginx (every engine.Router does). When the same
// value is an engine.BackendStatser, per-host figures come from it.
type Counters interface {
	Stats(ctx context.Context) (map[string]engine.ReleaseStats, error)
}

// Instant measures a release over a window ending now without waiting
// (Prometheus).
type Instant interface {
	MeasureNow(ctx context.Context, release string, window time.Duration) (engine.Measurement, error)
}

// Config says what to sample.
type Config struct {
	// Counters is the source of cumulative counters; or
	Counters Counters
	// Instant is a source queried for a window ending now, for each of
	// Releases() (with Window, default 10 s).
	Instant  Instant
	Releases func() []string
	Window   time.Duration
	// Hosts maps a host to its backend addresses (two for slot
	// strategies), for per-host figures.
	Hosts map[string][]string
	// Attribute, when set and returning a non-empty map, names the release
	// each backend address serves; the per-release series are then summed
	// per backend instead of read per pool (a symlink fleet is one pool
	// whose hosts switch release).
	Attribute func() map[string]string
	// Source names the source for the screen: router, haproxy, nginx, prometheus.
	Source string
	// Interval between samples (default 1 s); Keep is the number of points
	// kept (default 600: ten minutes).
	Interval time.Duration
	Keep     int
	Now      func() time.Time
}

// Point is one sample of one release.
type Point struct {
	RPS       float64       `json:"rps"`
	ErrorRate float64       `json:"error_rate"`
	P99       time.Duration `json:"p99"`
	// NoData: no request in the interval (or the source had nothing).
	NoData bool `json:"no_data,omitempty"`
}

// Series are the points of one release, aligned with Snapshot.Times.
type Series struct {
	Release string  `json:"release"`
	Points  []Point `json:"points"`
}

// Last returns the newest point that has data, and whether there is one.
func (s Series) Last() (Point, bool) {
	for i := len(s.Points) - 1; i >= 0; i-- {
		if !s.Points[i].NoData {
			return s.Points[i], true
		}
	}
	return Point{}, false
}

// Rate is a host's latest figures.
type Rate struct {
	RPS       float64 `json:"rps"`
	ErrorRate float64 `json:"error_rate"`
	NoData    bool    `json:"no_data,omitempty"`
}

// Snapshot is the sampler's state after a sample. It is never modified
// once published.
type Snapshot struct {
	// Version grows by one per sample: a reader redraws only when it changed.
	Version  uint64        `json:"version"`
	Source   string        `json:"source"`
	Interval time.Duration `json:"interval"`
	// Times are the sample times, oldest first; every series has one
	// point per time.
	Times  []time.Time `json:"times"`
	Series []Series    `json:"series"`
	// Hosts are each host's latest figures (only where the source counts
	// per backend).
	Hosts map[string]Rate `json:"hosts,omitempty"`
	// Err is why the last sample failed ("" when it worked).
	Err string `json:"err,omitempty"`
}

// Find returns the series of release, or nil.
func (s *Snapshot) Find(release string) *Series {
	for i := range s.Series {
		if s.Series[i].Release == release {
			return &s.Series[i]
		}
	}
	return nil
}

// Sampler samples a traffic source. Create it with New.
type Sampler struct {
	cfg  Config
	snap atomic.Pointer[Snapshot]
	// changed is closed (and replaced) when a new snapshot is published.
	changed atomic.Pointer[chan struct{}]

	mu       sync.Mutex // serialises Sample
	have     bool
	prevAt   time.Time
	prevRel  map[string]engine.ReleaseStats
	prevAddr map[string]engine.ReleaseStats
	times    []time.Time
	series   []*series
	version  uint64
}

type series struct {
	release string
	points  []Point
}

// maxSeries bounds the releases kept: the newest ones with data win.
const maxSeries = 6

// New returns a sampler; call Run (or Sample) to fill it.
func New(cfg Config) *Sampler {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Keep <= 0 {
		cfg.Keep = 600
	}
	if cfg.Window <= 0 {
		cfg.Window = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Sampler{cfg: cfg}
	s.snap.Store(&Snapshot{Source: cfg.Source, Interval: cfg.Interval})
	ch := make(chan struct{})
	s.changed.Store(&ch)
	return s
}

// Changed returns a channel closed when the next snapshot is published, so
// that a reader redraws as soon as a sample lands.
func (s *Sampler) Changed() <-chan struct{} { return *s.changed.Load() }

// Snapshot returns the latest snapshot (never nil). It is cheap: readers
// may call it on every frame.
func (s *Sampler) Snapshot() *Snapshot { return s.snap.Load() }

// Run samples every Interval until ctx ends. A sample that fails is
// recorded in the snapshot (Err) and tried again at the next tick; a slow
// source is given one interval per sample.
func (s *Sampler) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		sctx, cancel := context.WithTimeout(ctx, s.cfg.Interval)
		_ = s.Sample(sctx)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sample takes one sample now and publishes a new snapshot. The first
// sample of a counters source only sets the baseline (a rate needs two
// readings).
func (s *Sampler) Sample(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	var (
		rel   map[string]Point
		hosts map[string]Rate
		err   error
	)
	switch {
	case s.cfg.Instant != nil:
		rel, err = s.instant(ctx)
	case s.cfg.Counters != nil:
		rel, hosts, err = s.counters(ctx, now)
	default:
		err = fmt.Errorf("no traffic source")
	}
	if err != nil {
		s.publish(func(sn *Snapshot) { sn.Err = err.Error() })
		return err
	}
	if rel == nil { // a baseline
		s.publish(nil)
		return nil
	}
	s.append(now, rel)
	s.publish(func(sn *Snapshot) { sn.Hosts = hosts })
	return nil
}

func (s *Sampler) instant(ctx context.Context) (map[string]Point, error) {
	var rels []string
	if s.cfg.Releases != nil {
		rels = s.cfg.Releases()
	}
	out := make(map[string]Point, len(rels))
	for _, r := range rels {
		if r == "" {
			continue
		}
		m, err := s.cfg.Instant.MeasureNow(ctx, r, s.cfg.Window)
		if err != nil {
			return nil, err
		}
		out[r] = point(m, s.cfg.Window)
	}
	return out, nil
}

func (s *Sampler) counters(ctx context.Context, now time.Time) (map[string]Point, map[string]Rate, error) {
	var byAddr map[string]engine.ReleaseStats
	if bs, ok := s.cfg.Counters.(engine.BackendStatser); ok {
		var err error
		if byAddr, err = bs.BackendStats(ctx); err != nil {
			return nil, nil, err
		}
	}
	var attr map[string]string
	if s.cfg.Attribute != nil && byAddr != nil {
		attr = s.cfg.Attribute()
	}
	var byRel map[string]engine.ReleaseStats
	if len(attr) == 0 {
		var err error
		if byRel, err = s.cfg.Counters.Stats(ctx); err != nil {
			return nil, nil, err
		}
	}
	prevRel, prevAddr, prevAt, had := s.prevRel, s.prevAddr, s.prevAt, s.have
	s.prevRel, s.prevAddr, s.prevAt, s.have = byRel, byAddr, now, true
	if !had {
		return nil, nil, nil
	}
	elapsed := now.Sub(prevAt)
	if elapsed <= 0 {
		elapsed = s.cfg.Interval
	}
	deltas := make(map[string]engine.ReleaseStats, len(byAddr))
	for a, after := range byAddr {
		deltas[a] = sub(prevAddr[a], after)
	}
	rel := map[string]Point{}
	if len(attr) > 0 {
		sums := map[string]*engine.ReleaseStats{}
		for a, d := range deltas {
			r := attr[a]
			if r == "" {
				continue
			}
			if sums[r] == nil {
				sums[r] = &engine.ReleaseStats{}
			}
			engine.AddStats(sums[r], d)
		}
		for r, d := range sums {
			rel[r] = point(engine.DiffStats(r, engine.ReleaseStats{}, *d), elapsed)
		}
	} else {
		for r, after := range byRel {
			rel[r] = point(engine.DiffStats(r, prevRel[r], after), elapsed)
		}
	}
	var hosts map[string]Rate
	if byAddr != nil && len(s.cfg.Hosts) > 0 {
		hosts = make(map[string]Rate, len(s.cfg.Hosts))
		for h, addrs := range s.cfg.Hosts {
			var d engine.ReleaseStats
			for _, a := range addrs {
				engine.AddStats(&d, deltas[a])
			}
			p := point(engine.DiffStats(h, engine.ReleaseStats{}, d), elapsed)
			hosts[h] = Rate{RPS: p.RPS, ErrorRate: p.ErrorRate, NoData: p.NoData}
		}
	}
	return rel, hosts, nil
}

// sub returns after minus before (after alone when a counter went back:
// the source restarted).
func sub(before, after engine.ReleaseStats) engine.ReleaseStats {
	if after.Requests < before.Requests || len(before.Latency.Counts) != len(after.Latency.Counts) {
		return after
	}
	d := engine.ReleaseStats{
		Requests:   after.Requests - before.Requests,
		Status2xx:  after.Status2xx - min(before.Status2xx, after.Status2xx),
		Status3xx:  after.Status3xx - min(before.Status3xx, after.Status3xx),
		Status4xx:  after.Status4xx - min(before.Status4xx, after.Status4xx),
		Status5xx:  after.Status5xx - min(before.Status5xx, after.Status5xx),
		ConnErrors: after.ConnErrors - min(before.ConnErrors, after.ConnErrors),
		Latency:    engine.Histogram{Bounds: after.Latency.Bounds, Counts: make([]uint64, len(after.Latency.Counts))},
	}
	for i, n := range after.Latency.Counts {
		d.Latency.Counts[i] = n - min(before.Latency.Counts[i], n)
	}
	return d
}

func point(m engine.Measurement, over time.Duration) Point {
	if m.NoData || m.Requests <= 0 {
		return Point{NoData: true}
	}
	return Point{RPS: m.Requests / over.Seconds(), ErrorRate: m.ErrorRate, P99: m.P99}
}

// append adds one time and one point per known series (NoData for a
// release the source did not report), starts series for new releases
// (padded with NoData), drops the oldest time past Keep and the oldest
// series with no data past maxSeries.
func (s *Sampler) append(now time.Time, rel map[string]Point) {
	for _, r := range slices.Sorted(maps.Keys(rel)) {
		if s.find(r) == nil && !rel[r].NoData {
			s.series = append(s.series, &series{release: r, points: make([]Point, len(s.times), s.cfg.Keep)})
			for i := range s.series[len(s.series)-1].points {
				s.series[len(s.series)-1].points[i].NoData = true
			}
		}
	}
	s.times = grow(s.times, now, s.cfg.Keep)
	for _, se := range s.series {
		p, ok := rel[se.release]
		if !ok {
			p = Point{NoData: true}
		}
		se.points = grow(se.points, p, s.cfg.Keep)
	}
	// Forget series without any data in the window, then the oldest past maxSeries.
	s.series = slices.DeleteFunc(s.series, func(se *series) bool {
		return !slices.ContainsFunc(se.points, func(p Point) bool { return !p.NoData })
	})
	if n := len(s.series) - maxSeries; n > 0 {
		s.series = slices.Delete(s.series, 0, n)
	}
}

func (s *Sampler) find(r string) *series {
	for _, se := range s.series {
		if se.release == r {
			return se
		}
	}
	return nil
}

// grow appends v, keeping at most keep values. Published snapshots hold
// sub-slices of the same backing array: growing only ever writes past
// their length, or moves to a new array, so they never change.
func grow[T any](xs []T, v T, keep int) []T {
	if len(xs) >= keep {
		xs = xs[len(xs)-keep+1:]
	}
	if len(xs) == cap(xs) {
		n := make([]T, len(xs), max(len(xs)+1, min(max(2*cap(xs), 16), 2*keep)))
		copy(n, xs)
		xs = n
	}
	return append(xs, v)
}

func (s *Sampler) publish(edit func(*Snapshot)) {
	s.version++
	sn := &Snapshot{Version: s.version, Source: s.cfg.Source, Interval: s.cfg.Interval,
		Times: s.times[:len(s.times):len(s.times)]}
	if old := s.snap.Load(); old != nil {
		sn.Hosts = old.Hosts
	}
	sn.Series = make([]Series, len(s.series))
	for i, se := range s.series {
		sn.Series[i] = Series{Release: se.release, Points: se.points[:len(se.points):len(se.points)]}
	}
	if edit != nil {
		edit(sn)
	}
	s.snap.Store(sn)
	ch := make(chan struct{})
	close(*s.changed.Swap(&ch))
}
