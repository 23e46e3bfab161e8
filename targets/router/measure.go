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
// release (engine.DiffStats).
func Diff(release string, before, after engine.ReleaseStats) engine.Measurement {
	return engine.DiffStats(release, before, after)
}

// Quantile estimates the q-quantile of a histogram (engine.Quantile).
func Quantile(q float64, bounds []float64, counts []uint64) float64 {
	return engine.Quantile(q, bounds, counts)
}
