package probe

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketsCoverEveryValueOnce(t *testing.T) {
	t.Parallel()
	var prevEnd uint64
	for i := 0; i < numBuckets; i++ {
		lo, w := bucketRange(i)
		if lo != prevEnd {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, prevEnd)
		}
		if got := bucketOf(lo); got != i {
			t.Fatalf("bucketOf(%d) = %d, want %d", lo, got, i)
		}
		if got := bucketOf(lo + w - 1); got != i {
			t.Fatalf("bucketOf(%d) = %d, want %d", lo+w-1, got, i)
		}
		if w > 1 && float64(w)/float64(lo) > 1.0/subCount {
			t.Fatalf("bucket %d [%d, +%d) is wider than 1/%d of its start", i, lo, w, subCount)
		}
		prevEnd = lo + w
	}
	if prevEnd-1 != uint64(MaxTrackable) {
		t.Fatalf("last bucket ends at %d, want MaxTrackable %d", prevEnd-1, MaxTrackable)
	}
}

// exactQuantile is the nearest-rank quantile of sorted values.
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}

func TestHistogramQuantilesWithinOnePercent(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name string
		gen  func() time.Duration
	}{
		{"constant", func() time.Duration { return 150 * time.Millisecond }},
		{"tiny exact values", func() time.Duration { return time.Duration(rng.IntN(128)) }},
		{"uniform 1µs-10ms", func() time.Duration { return time.Microsecond + time.Duration(rng.Int64N(int64(10*time.Millisecond))) }},
		{"log-uniform 10µs-60s", func() time.Duration {
			return time.Duration(math.Exp(math.Log(1e4) + rng.Float64()*(math.Log(6e10)-math.Log(1e4))))
		}},
		{"bimodal with slow tail", func() time.Duration {
			if rng.IntN(100) < 3 {
				return 2*time.Second + time.Duration(rng.Int64N(int64(time.Second)))
			}
			return 2*time.Millisecond + time.Duration(rng.Int64N(int64(time.Millisecond)))
		}},
	}
	for _, tt := range tests {
		for _, n := range []int{1, 7, 1000, 100_000} {
			var h Histogram
			vals := make([]time.Duration, n)
			for i := range vals {
				vals[i] = tt.gen()
				h.Record(vals[i])
			}
			slices.Sort(vals)
			for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
				want := exactQuantile(vals, q)
				got := h.Quantile(q)
				if diff := math.Abs(float64(got - want)); diff > 0.01*float64(want) {
					t.Errorf("%s n=%d: q%.3f = %v, exact %v (off by %.2f %%)", tt.name, n, q, got, want, 100*diff/float64(want))
				}
			}
			if h.Count() != uint64(n) || h.Quantile(1/float64(n+1)) != vals[0] || h.Max() != vals[n-1] {
				t.Errorf("%s n=%d: count/min/max = %d/%v/%v, want %d/%v/%v", tt.name, n, h.Count(), h.Quantile(1/float64(n+1)), h.Max(), n, vals[0], vals[n-1])
			}
		}
	}
}

func TestHistogramEdges(t *testing.T) {
	t.Parallel()
	var h Histogram
	if h.Quantile(0.99) != 0 || h.Max() != 0 {
		t.Fatal("empty histogram must report 0")
	}
	h.Record(-time.Second)
	h.Record(10 * time.Minute)
	if h.Quantile(0.01) != 0 || h.Max() != MaxTrackable || h.Quantile(1) != MaxTrackable {
		t.Fatalf("clamping: min %v max %v q1 %v", h.Quantile(0.01), h.Max(), h.Quantile(1))
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	var h Histogram
	vals := make([]time.Duration, 1024)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range vals {
		vals[i] = time.Duration(rng.Int64N(int64(2 * time.Second)))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		h.Record(vals[i&1023])
	}
}

func BenchmarkHistogramQuantile(b *testing.B) {
	var h Histogram
	rng := rand.New(rand.NewPCG(5, 6))
	for range 100_000 {
		h.Record(time.Duration(rng.Int64N(int64(2 * time.Second))))
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = h.Quantile(0.99)
	}
}
