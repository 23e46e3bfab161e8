package router

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"flightdeck/engine"
)

// latencyBounds are the latency histogram bucket upper bounds in seconds,
// dense around the default 200 ms p99 SLO so that p99 interpolation is
// accurate where the gate decides.
var latencyBounds = [...]float64{
	0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.175, 0.2,
	0.25, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 10,
}

// LatencyBounds returns a copy of the router's latency bucket bounds (seconds).
func LatencyBounds() []float64 { return append([]float64(nil), latencyBounds[:]...) }

// releaseStats are the cheap cumulative counters of one release: plain
// atomics, read by Stats for the engine. Prometheus series are kept
// separately (per backend) and are not read back.
type releaseStats struct {
	requests   atomic.Uint64
	class      [6]atomic.Uint64 // index = status / 100 (1..5)
	connErrors atomic.Uint64
	latency    [len(latencyBounds) + 1]atomic.Uint64
	hist       prometheus.Observer
}

func bucketOf(seconds float64) int {
	// A linear scan over 19 bounds beats a binary search at this size, and
	// most requests end in the first few buckets.
	for i, b := range latencyBounds {
		if seconds <= b {
			return i
		}
	}
	return len(latencyBounds)
}

// outcome of one proxied request for the counters.
type outcome uint8

const (
	outcomeStatus   outcome = iota // a status was returned (see code)
	outcomeConnErr                 // transport failure: the client got 502
	outcomeCanceled                // the client went away
)

func (s *releaseStats) record(o outcome, code int, d time.Duration) {
	s.requests.Add(1)
	switch o {
	case outcomeStatus:
		if c := code / 100; c >= 1 && c <= 5 {
			s.class[c].Add(1)
		}
	case outcomeConnErr:
		s.connErrors.Add(1)
	}
	sec := d.Seconds()
	s.latency[bucketOf(sec)].Add(1)
	if s.hist != nil {
		s.hist.Observe(sec)
	}
}

func (s *releaseStats) snapshot() engine.ReleaseStats {
	rs := engine.ReleaseStats{
		Requests:   s.requests.Load(),
		Status2xx:  s.class[2].Load(),
		Status3xx:  s.class[3].Load(),
		Status4xx:  s.class[4].Load(),
		Status5xx:  s.class[5].Load(),
		ConnErrors: s.connErrors.Load(),
		Latency: engine.Histogram{
			Bounds: LatencyBounds(),
			Counts: make([]uint64, len(latencyBounds)+1),
		},
	}
	for i := range s.latency {
		rs.Latency.Counts[i] = s.latency[i].Load()
	}
	return rs
}

// promMetrics are the router's Prometheus series.
type promMetrics struct {
	requests   *prometheus.CounterVec
	connErrors *prometheus.CounterVec
	duration   *prometheus.HistogramVec
}

var codeClasses = [6]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

func newPromMetrics(reg prometheus.Registerer, backends func() []*backend) (*promMetrics, error) {
	m := &promMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flightdeck_router_requests_total",
			Help: "Proxied requests by release, backend and status class (backend \"none\": no backend in rotation; code_class \"5xx\" includes the router's own 502/503).",
		}, []string{"release", "backend", "code_class"}),
		connErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flightdeck_router_connection_errors_total",
			Help: "Failed attempts to reach a backend (dial or transport errors), including attempts that were retried elsewhere.",
		}, []string{"release", "backend"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "flightdeck_router_request_duration_seconds",
			Help:    "Time from request received to response fully copied, by release.",
			Buckets: latencyBounds[:],
		}, []string{"release"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.connErrors, m.duration, &backendCollector{list: backends}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *promMetrics) forget(release, addr string) {
	l := prometheus.Labels{"release": release}
	if addr != "" {
		l["backend"] = addr
		m.requests.DeletePartialMatch(l)
		m.connErrors.DeletePartialMatch(l)
		return
	}
	m.requests.DeletePartialMatch(l)
	m.connErrors.DeletePartialMatch(l)
	m.duration.DeletePartialMatch(l)
}

var (
	descHealthy = prometheus.NewDesc("flightdeck_router_backend_healthy",
		"1 when the backend's last health checks passed.", []string{"release", "backend"}, nil)
	descDraining = prometheus.NewDesc("flightdeck_router_backend_draining",
		"1 when the backend is drained (out of rotation).", []string{"release", "backend"}, nil)
	descInFlight = prometheus.NewDesc("flightdeck_router_backend_in_flight",
		"Requests currently proxied to the backend.", []string{"release", "backend"}, nil)
	descIdleConns = prometheus.NewDesc("flightdeck_router_backend_idle_connections",
		"Kept-alive connections to the backend waiting for a request.", []string{"release", "backend"}, nil)
	descDials = prometheus.NewDesc("flightdeck_router_backend_dials_total",
		"Connections the router opened (or tried to open) to the backend for requests (health checks keep one of their own).", []string{"release", "backend"}, nil)
	descResends = prometheus.NewDesc("flightdeck_router_backend_resends_total",
		"Idempotent requests sent again because a kept-alive connection to the backend closed before any answer.", []string{"release", "backend"}, nil)
)

// backendCollector reports live backend state at scrape time, so the
// request path pays nothing for it.
type backendCollector struct{ list func() []*backend }

func (c *backendCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descHealthy
	ch <- descDraining
	ch <- descInFlight
	ch <- descIdleConns
	ch <- descDials
	ch <- descResends
}

func (c *backendCollector) Collect(ch chan<- prometheus.Metric) {
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for _, b := range c.list() {
		ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, b2f(b.healthy.Load()), b.release, b.addr)
		ch <- prometheus.MustNewConstMetric(descDraining, prometheus.GaugeValue, b2f(b.draining.Load()), b.release, b.addr)
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(b.inflight.Load()), b.release, b.addr)
		ch <- prometheus.MustNewConstMetric(descIdleConns, prometheus.GaugeValue, float64(b.conns.idleCount()), b.release, b.addr)
		ch <- prometheus.MustNewConstMetric(descDials, prometheus.CounterValue, float64(b.conns.dials.Load()), b.release, b.addr)
		ch <- prometheus.MustNewConstMetric(descResends, prometheus.CounterValue, float64(b.conns.resends.Load()), b.release, b.addr)
	}
}
