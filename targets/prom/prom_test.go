package prom

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"flightdeck/engine/plan"
	"flightdeck/targets/prom/promtest"
	"flightdeck/targets/router"
)

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  *plan.Prometheus
		want string // substring of the error; "" = valid
	}{
		{"defaults", &plan.Prometheus{URL: "http://127.0.0.1:9090"}, ""},
		{"custom", &plan.Prometheus{URL: "https://prom.internal", Requests: `sum(increase(http_requests_total{version="{{.Release}}"}[{{.Window}}]))`}, ""},
		{"nil", nil, "URL is required"},
		{"no url", &plan.Prometheus{}, "URL is required"},
		{"bad scheme", &plan.Prometheus{URL: "127.0.0.1:9090"}, "want http://"},
		{"unknown field", &plan.Prometheus{URL: "http://x", P99: `histogram_quantile(0.99, x{r="{{.Rel}}"})`}, "p99 query"},
		{"bad template", &plan.Prometheus{URL: "http://x", ErrorRate: `x{r="{{.Release"}`}, "error_rate query"},
		{"both bad", &plan.Prometheus{URL: "http://x", ErrorRate: `{{`, Requests: `{{.X}}`}, "requests query"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("New: error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestQueriesRenderReleaseAndWindow(t *testing.T) {
	s, err := New(&plan.Prometheus{URL: "http://127.0.0.1:9090"})
	if err != nil {
		t.Fatal(err)
	}
	qs, err := s.Queries(`v2"x\`, 1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if !strings.Contains(q, `release="v2\"x\\"`) {
			t.Errorf("query %s: release not escaped as a PromQL string", q)
		}
		if !strings.Contains(q, "[1500ms]") {
			t.Errorf("query %s: window not rendered as [1500ms]", q)
		}
	}
	if got := Duration(30 * time.Second); got != "30000ms" {
		t.Errorf("Duration(30s) = %s", got)
	}
	if got := Duration(0); got != "1ms" {
		t.Errorf("Duration(0) = %s, want the 1ms floor", got)
	}
}

// fakeRouterMetrics serves the built-in router's series from a registry the
// test feeds at a steady pace: release "good" never fails, "bad" answers
// 5xx to one request in twenty. Latencies are 20 ms.
func fakeRouterMetrics(t *testing.T) (addr string) {
	t.Helper()
	reg := prometheus.NewRegistry()
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flightdeck_router_requests_total"}, []string{"release", "backend", "code_class"})
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "flightdeck_router_request_duration_seconds", Buckets: router.LatencyBounds()}, []string{"release"})
	reg.MustRegister(reqs, dur)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		n := 0
		deadline := time.After(2 * time.Minute) // bounded even if cleanup never runs
		for {
			select {
			case <-ctx.Done():
				return
			case <-deadline:
				return
			case <-tick.C:
			}
			n++
			reqs.WithLabelValues("good", "b1", "2xx").Inc()
			dur.WithLabelValues("good").Observe(0.02)
			class := "2xx"
			if n%20 == 0 {
				class = "5xx"
			}
			reqs.WithLabelValues("bad", "b2", class).Inc()
			dur.WithLabelValues("bad").Observe(0.02)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestMeasureAgainstPrometheus(t *testing.T) {
	target := fakeRouterMetrics(t)
	srv := promtest.Start(t, 100*time.Millisecond, target)
	srv.WaitUp(t, 1)
	s, err := New(&plan.Prometheus{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	const window = time.Second
	var wg sync.WaitGroup
	measure := func(rel string) measurementOrErr {
		m, err := s.Measure(ctx, rel, window)
		return measurementOrErr{m.Requests, m.ErrorRate, m.P99, m.NoData, err}
	}
	var good, bad, absent measurementOrErr
	wg.Add(3)
	go func() { defer wg.Done(); good = measure("good") }()
	go func() { defer wg.Done(); bad = measure("bad") }()
	go func() { defer wg.Done(); absent = measure("absent") }()
	wg.Wait()

	for name, m := range map[string]measurementOrErr{"good": good, "bad": bad, "absent": absent} {
		if m.err != nil {
			t.Fatalf("Measure(%s): %v", name, m.err)
		}
	}
	// About 200 requests/s each; increase() extrapolates, so allow slack.
	for name, m := range map[string]measurementOrErr{"good": good, "bad": bad} {
		if m.noData || m.requests < 100 || m.requests > 300 {
			t.Errorf("%s: requests %.1f noData %v, want about 200 over 1s", name, m.requests, m.noData)
		}
		if m.p99 < 10*time.Millisecond || m.p99 > 25*time.Millisecond {
			t.Errorf("%s: p99 %s, want within the 10–25 ms bucket of the 20 ms observations", name, m.p99)
		}
	}
	if good.errorRate != 0 {
		t.Errorf("good: error rate %g, want 0 (no 5xx series at all)", good.errorRate)
	}
	if math.Abs(bad.errorRate-0.05) > 0.02 {
		t.Errorf("bad: error rate %g, want about 0.05", bad.errorRate)
	}
	if !absent.noData {
		t.Errorf("absent release: %+v, want NoData", absent)
	}
	// MeasureNow (the cockpit's live sampler) answers the same for the
	// window just past, without waiting.
	now, err := s.MeasureNow(ctx, "bad", window)
	if err != nil || now.NoData || now.Requests < 100 || math.Abs(now.ErrorRate-0.05) > 0.02 {
		t.Errorf("MeasureNow(bad): %+v, %v; want about 200 requests, 5 %% errors", now, err)
	}
}

type measurementOrErr struct {
	requests, errorRate float64
	p99                 time.Duration
	noData              bool
	err                 error
}

func TestMeasureErrorsNameTheQuery(t *testing.T) {
	srv := promtest.Start(t, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	s, err := New(&plan.Prometheus{URL: srv.URL, P99: `histogram_quantile(0.99, sum by (le) (rate(x{release="{{.Release}}"}[{{.Window}}]))`, ErrorRate: `sum(rate(x{release="{{.Release}}"}[{{.Window}}])`})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Measure(ctx, "v1", 10*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "error_rate query") || !strings.Contains(err.Error(), `sum(rate(x{release="v1"}[10ms])`) {
		t.Fatalf("bad PromQL: error %v, want it to name the error_rate query and its text", err)
	}

	// A server that is gone: the error names the query and the server.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	s, err = New(&plan.Prometheus{URL: deadURL})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Measure(ctx, "v1", 10*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "requests query") || !strings.Contains(err.Error(), deadURL) {
		t.Fatalf("unreachable server: error %v, want it to name the requests query and %s", err, deadURL)
	}

	// A cancelled measurement returns promptly with the context's error.
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if _, err := s.Measure(cctx, "v1", time.Hour); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Fatalf("cancelled Measure: %v", err)
	}
}
