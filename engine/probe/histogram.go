package probe

import (
	"math/bits"
	"time"
)

// The histogram is log-linear, like HDR histograms: values below
// 2*subCount nanoseconds get a bucket each; above that, every power of two
// is split into subCount equal buckets, so a bucket is never wider than
// 1/subCount of its lower bound. Reporting a bucket's midpoint is then
// within 1/(2*subCount) ≈ 0.8 % of any value in it.
const (
	subBits    = 6
	subCount   = 1 << subBits // buckets per power of two
	maxShift   = 30           // top bucket group covers [2^36, 2^37) ns
	numBuckets = 2*subCount + maxShift*subCount
	// MaxTrackable is the largest latency the histogram tells apart
	// (about 137 s); longer values are recorded as this.
	MaxTrackable = time.Duration(1<<(subBits+1+maxShift) - 1)
)

// Histogram is a fixed-size latency histogram with a relative error below
// 1 %. Recording never allocates. It is not safe for concurrent use.
type Histogram struct {
	counts   [numBuckets]uint64
	n        uint64
	min, max time.Duration
}

func bucketOf(v uint64) int {
	if v < 2*subCount {
		return int(v)
	}
	shift := bits.Len64(v) - (subBits + 1)
	return 2*subCount + (shift-1)*subCount + int(v>>shift) - subCount
}

// bucketRange returns the lowest value of bucket i and its width.
func bucketRange(i int) (lo, width uint64) {
	if i < 2*subCount {
		return uint64(i), 1
	}
	j := i - 2*subCount
	shift := j/subCount + 1
	m := uint64(j%subCount + subCount)
	return m << shift, 1 << shift
}

// Record adds one value. Negative values count as 0, values above
// MaxTrackable as MaxTrackable.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	if d > MaxTrackable {
		d = MaxTrackable
	}
	h.counts[bucketOf(uint64(d))]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.n++
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest recorded value, exactly (0 when empty).
func (h *Histogram) Max() time.Duration { return h.max }

// Quantile returns the q-quantile (0 < q ≤ 1) by the nearest-rank rule:
// the ceil(q*n)-th smallest value, within 1 % of it. It is 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q * float64(h.n))
	if float64(rank) < q*float64(h.n) {
		rank++
	}
	rank = max(1, min(rank, h.n))
	switch rank { // the extremes are known exactly
	case 1:
		return h.min
	case h.n:
		return h.max
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen < rank {
			continue
		}
		lo, w := bucketRange(i)
		v := time.Duration(lo + w/2)
		if w == 1 {
			v = time.Duration(lo)
		}
		return max(h.min, min(v, h.max))
	}
	return h.max
}
