package router

import (
	"context"
	"fmt"
	"time"

	"flightdeck/engine"
)

var _ engine.MetricsSource = (*Metrics)(nil)

// StatsFunc reads cumulative per-release counters: Client.Stats, or
// Router.StatsFunc for a router in the same process.
type StatsFunc func(ctx context.Context) (map[string]engine.ReleaseStats, error)

// StatsFunc adapts Router.Stats for NewMetrics.
func (r *Router) StatsFunc() StatsFunc {
	return func(context.Context) (map[string]engine.ReleaseStats, error) { return r.Stats(), nil }
}

// Metrics measures releases from the router's own counters. It implements
// engine.MetricsSource.
type Metrics struct {
	stats StatsFunc
}

// NewMetrics returns a metrics source reading counters through stats.
func NewMetrics(stats StatsFunc) *Metrics { return &Metrics{stats: stats} }

// Measure takes a snapshot, waits for window (or until ctx ends), takes
// another and reports the difference: requests, errors (5xx plus
// connection failures), error rate and p99 interpolated within the
// histogram bucket. No request in the window gives NoData.
func (m *Metrics) Measure(ctx context.Context, release string, window time.Duration) (engine.Measurement, error) {
	before, err := m.stats(ctx)
	if err != nil {
		return engine.Measurement{}, fmt.Errorf("measuring %s: %w", release, err)
	}
	t := time.NewTimer(window)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return engine.Measurement{}, fmt.Errorf("measuring %s: %w", release, ctx.Err())
	case <-t.C:
	}
	after, err := m.stats(ctx)
	if err != nil {
		return engine.Measurement{}, fmt.Errorf("measuring %s: %w", release, err)
	}
	return Diff(release, before[release], after[release]), nil
}

// Diff computes the measurement between two cumulative snapshots of one
// release. A counter that went backwards (router restarted, pool deleted)
// is treated as starting from zero.
func Diff(release string, before, after engine.ReleaseStats) engine.Measurement {
	if after.Requests < before.Requests || len(before.Latency.Counts) != len(after.Latency.Counts) {
		before = engine.ReleaseStats{}
	}
	sub := func(a, b uint64) uint64 {
		if a < b {
			return 0
		}
		return a - b
	}
	m := engine.Measurement{Release: release}
	reqs := sub(after.Requests, before.Requests)
	if reqs == 0 {
		m.NoData = true
		return m
	}
	errs := sub(after.Status5xx, before.Status5xx) + sub(after.ConnErrors, before.ConnErrors)
	m.Requests = float64(reqs)
	m.Errors = float64(errs)
	m.ErrorRate = m.Errors / m.Requests
	counts := make([]uint64, len(after.Latency.Counts))
	for i := range counts {
		var b uint64
		if i < len(before.Latency.Counts) {
			b = before.Latency.Counts[i]
		}
		counts[i] = sub(after.Latency.Counts[i], b)
	}
	m.P99 = time.Duration(Quantile(0.99, after.Latency.Bounds, counts) * float64(time.Second))
	return m
}

// Quantile estimates the q-quantile (0..1) of a histogram (counts per
// bucket, the last one +Inf) by linear interpolation within the bucket
// holding the rank, as Prometheus' histogram_quantile does. A rank in the
// overflow bucket returns the highest finite bound. Empty: 0.
func Quantile(q float64, bounds []float64, counts []uint64) float64 {
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 || len(bounds) == 0 {
		return 0
	}
	rank := q * float64(total)
	var cum uint64
	for i, c := range counts {
		prev := cum
		cum += c
		if float64(cum) < rank || c == 0 {
			continue
		}
		if i >= len(bounds) {
			return bounds[len(bounds)-1]
		}
		lo := 0.0
		if i > 0 {
			lo = bounds[i-1]
		}
		return lo + (bounds[i]-lo)*(rank-float64(prev))/float64(c)
	}
	return bounds[len(bounds)-1]
}
