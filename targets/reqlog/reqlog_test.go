package reqlog

import (
	"testing"
	"time"

	"flightdeck/targets/router"
)

func TestRecordAndSum(t *testing.T) {
	tl := New()
	for range 98 {
		tl.Record("a:1", 200, 10*time.Millisecond)
	}
	tl.Record("a:1", 503, 300*time.Millisecond)
	tl.Record("a:1", 0, -1) // a connection error: no latency
	tl.Record("b:1", 404, 2*time.Second)
	tl.Record("c:1", 500, time.Millisecond)
	got := tl.ByRelease(map[string][]string{"v1": {"a:1", "b:1"}, "v2": {"z:1"}})
	v1 := got["v1"]
	if v1.Requests != 101 || v1.Status2xx != 98 || v1.Status4xx != 1 || v1.Status5xx != 1 || v1.ConnErrors != 1 {
		t.Errorf("v1 %+v", v1)
	}
	var n uint64
	for _, c := range v1.Latency.Counts {
		n += c
	}
	if n != 100 {
		t.Errorf("%d latencies in the histogram, want 100 (the connection error has none)", n)
	}
	m := router.Diff("v1", got["v2"], v1) // from nothing to v1's counters
	if m.Requests != 101 || m.Errors != 2 || m.P99 < 250*time.Millisecond || m.P99 > 2*time.Second {
		t.Errorf("measured %+v", m)
	}
	if got["v2"].Requests != 0 {
		t.Errorf("v2 (z:1 never seen) %+v", got["v2"])
	}
}
