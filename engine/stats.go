package engine

import "time"

// DiffStats computes the measurement between two cumulative snapshots of
// one release: requests, errors (5xx plus connection failures), error rate
// and p99 interpolated within the histogram bucket. A counter that went
// backwards (router restarted, pool deleted) is treated as starting from
// zero. No request in between gives NoData.
func DiffStats(release string, before, after ReleaseStats) Measurement {
	if after.Requests < before.Requests || len(before.Latency.Counts) != len(after.Latency.Counts) {
		before = ReleaseStats{}
	}
	sub := func(a, b uint64) uint64 {
		if a < b {
			return 0
		}
		return a - b
	}
	m := Measurement{Release: release}
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

// AddStats adds b's counters to a (the latency buckets when their bounds
// agree, or when a has none yet).
func AddStats(a *ReleaseStats, b ReleaseStats) {
	a.Requests += b.Requests
	a.Status2xx += b.Status2xx
	a.Status3xx += b.Status3xx
	a.Status4xx += b.Status4xx
	a.Status5xx += b.Status5xx
	a.ConnErrors += b.ConnErrors
	if len(a.Latency.Counts) == 0 && len(b.Latency.Counts) > 0 {
		a.Latency.Bounds = b.Latency.Bounds
		a.Latency.Counts = make([]uint64, len(b.Latency.Counts))
	}
	if len(a.Latency.Counts) == len(b.Latency.Counts) {
		for i, n := range b.Latency.Counts {
			a.Latency.Counts[i] += n
		}
	}
}
