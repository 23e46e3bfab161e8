// Package router is flightdeck's built-in traffic router: a long-lived
// reverse proxy that keeps routing when the cockpit is closed.
//
// The router holds one pool of backends per release, a Route (stable,
// candidate, candidate weight, optional sticky cookie or header) and A/B
// cohort rules. Each request is routed as follows:
//
//  1. the first cohort rule that matches the request (exact header or cookie
//     value, or a percentage of a stable hash of that value) picks the release;
//  2. otherwise, when the route names a sticky cookie or header and the
//     request carries it, a stable hash of its value is compared with the
//     weight, so one user stays on one side (and only moves from stable to
//     candidate as the weight grows);
//  3. otherwise a per-request random number is compared with the weight.
//
// Within the release, backends are taken round robin, skipping those that
// are not healthy or are draining. When the chosen release has no backend
// in rotation the router answers 503 (it does not silently fall back to the
// other release, so that an SLO gate sees the failure).
//
// The routing table is an immutable snapshot behind an atomic.Pointer: the
// request path takes no lock, and a change made through the admin API is
// visible to the next request.
//
// Retry: a request that fails to connect (dial error: nothing was sent to
// the backend) is retried once on another backend of the same release,
// whatever its method, because the backend provably never saw it. Only
// requests without a body are retried: the body of the first attempt is a
// stream that the transport consumes and closes, and buffering every body
// up front would cost latency and memory on the hot path. A request with a
// body whose dial fails gets 502.
//
// The admin API (JSON over HTTP, normally on loopback) requires
// "Authorization: Bearer <token>" on every endpoint except GET /metrics,
// which stays open by default so that Prometheus can scrape it without a
// secret; set Config.MetricsAuth to require the token there too. The token
// lives in a file created on first start with mode 0600 and reused after.
//
// Routing state (pools, route, cohorts, drained backends) is persisted
// atomically after every change and restored on start. Restored backends
// start out of rotation and join as soon as their first health check passes.
package router
