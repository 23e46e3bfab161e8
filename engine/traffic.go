package engine

import (
	"context"
	"time"
)

// Route says how the router splits traffic between the stable release and a
// candidate: Weight percent (0–100, fractions allowed) of requests that match
// no cohort rule go to Candidate. Weight 100 is a full flip.
type Route struct {
	Stable    string  `json:"stable"`
	Candidate string  `json:"candidate,omitempty"`
	Weight    float64 `json:"weight"`
	// Sticky, when set, hashes this cookie or header value so that one user
	// stays on one side; requests without it fall back to the weight.
	StickyCookie string `json:"sticky_cookie,omitempty"`
	StickyHeader string `json:"sticky_header,omitempty"`
}

// CohortRule routes matching requests to Release (A/B). Header or Cookie
// names the request attribute; Value, when set, must match exactly;
// otherwise Percent of the stable hash space of the attribute's value goes
// to Release.
type CohortRule struct {
	Release string  `json:"release"`
	Header  string  `json:"header,omitempty"`
	Cookie  string  `json:"cookie,omitempty"`
	Value   string  `json:"value,omitempty"`
	Percent float64 `json:"percent,omitempty"`
}

// BackendStatus is one backend as the router sees it.
type BackendStatus struct {
	Addr     string `json:"addr"`
	Release  string `json:"release"`
	Healthy  bool   `json:"healthy"`
	Draining bool   `json:"draining"`
	InFlight int64  `json:"in_flight"`
}

// RouterState is the router's whole routing state.
type RouterState struct {
	Route    Route           `json:"route"`
	Cohorts  []CohortRule    `json:"cohorts"`
	Backends []BackendStatus `json:"backends"`
}

// Histogram is a latency histogram: Counts[i] requests took at most
// Bounds[i] seconds (and more than Bounds[i-1]); the last count is the
// overflow bucket (+Inf), so len(Counts) == len(Bounds)+1.
type Histogram struct {
	Bounds []float64 `json:"bounds"`
	Counts []uint64  `json:"counts"`
}

// ReleaseStats are cumulative counters for one release since the router started.
type ReleaseStats struct {
	Requests   uint64    `json:"requests"`
	Status2xx  uint64    `json:"status_2xx"`
	Status3xx  uint64    `json:"status_3xx"`
	Status4xx  uint64    `json:"status_4xx"`
	Status5xx  uint64    `json:"status_5xx"`
	ConnErrors uint64    `json:"conn_errors"`
	Latency    Histogram `json:"latency"`
}

// Router is the traffic router the engine drives: the built-in one
// (targets/router) or an adapter for an existing load balancer.
type Router interface {
	// State returns the current routing state.
	State(ctx context.Context) (RouterState, error)
	// SetPool sets the backends of a release. A new backend joins rotation
	// only after its health check passes.
	SetPool(ctx context.Context, release string, addrs []string) error
	// SetRoute changes the stable/candidate split. It takes effect for the
	// next request.
	SetRoute(ctx context.Context, r Route) error
	// SetCohorts replaces the A/B cohort rules (nil drops them all).
	SetCohorts(ctx context.Context, rules []CohortRule) error
	// Drain takes a backend out of rotation and waits until its in-flight
	// requests finished or timeout passed.
	Drain(ctx context.Context, addr string, timeout time.Duration) error
	// Undrain puts a drained backend back into rotation (after its health check).
	Undrain(ctx context.Context, addr string) error
	// WaitHealthy blocks until addr is in rotation and healthy, or ctx ends.
	WaitHealthy(ctx context.Context, addr string) error
	// Stats returns cumulative per-release counters.
	Stats(ctx context.Context) (map[string]ReleaseStats, error)
}

// BackendStatser is a Router that also counts per backend: cumulative
// counters by backend address, so that the cockpit can show each host's
// request rate and error rate. An address missing from the map has
// answered nothing (all its counters are zero).
type BackendStatser interface {
	BackendStats(ctx context.Context) (map[string]ReleaseStats, error)
}

// RouterWatcher is implemented by routers whose load balancer can lose
// the routing state the engine set (HAProxy forgets runtime changes when
// it reloads). While a run is active the engine calls Watch; it puts the
// current routing state back whenever it was lost and reports each time
// through note, whose message the run journals.
type RouterWatcher interface {
	Watch(ctx context.Context, note func(msg string))
}

// Measurement is one window of SLO metrics for a release.
type Measurement struct {
	Release   string        `json:"release"`
	Requests  float64       `json:"requests"`
	Errors    float64       `json:"errors"`
	ErrorRate float64       `json:"error_rate"` // fraction, 0.001 = 0.1 %
	P99       time.Duration `json:"p99"`
	// NoData is true when the source had nothing for the window (an empty
	// vector or NaN from Prometheus, no requests from the router).
	NoData bool `json:"no_data,omitempty"`
}

// MetricsSource measures a release over a window ending now: the router's
// own counters or a Prometheus server.
type MetricsSource interface {
	Measure(ctx context.Context, release string, window time.Duration) (Measurement, error)
}
