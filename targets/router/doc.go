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
// in rotation (its last one is draining or restarting), the other release
// serves the request. When no backend of either release passes its health
// checks, backends that passed one within the last 30 s keep serving
// ("panic mode": checks failing everywhere at once usually mean slow checks
// on an overloaded machine, not a dead fleet). Only when neither applies
// does the router answer 503, and that answer counts in the release's
// measurements, so that an SLO gate sees it.
//
// The routing table is an immutable snapshot behind an atomic.Pointer: the
// request path takes no lock, and a change made through the admin API is
// visible to the next request.
//
// Upstream: requests are proxied by the router's own HTTP/1.1 client, not
// net/http's Transport: exchange.go runs one exchange (and decides on
// resends), request.go writes the request, response.go reads and frames
// the response head, respbody.go relays the body, fields.go holds the
// field syntax both sides share, and upstream.go pools the connections.
// The request is
// written to a pooled keep-alive connection and the response read back on
// the handler's goroutine, parsed into scratch space owned by a pooled
// per-request writer and relayed straight out of the connection's read
// buffer: no goroutines, channels or header maps per request. Framing
// follows RFC 9112 (Content-Length, chunked with trailers, read until
// close); a response that cannot be framed safely (conflicting lengths,
// obsolete line folding, bad field names or values, an oversized head) is
// refused with 502 and its connection dropped. A backend that sends no
// response head within Config.ResponseHeaderTimeout gets the client a 504.
// When the client goes away mid-exchange, the backend connection is
// closed, so the backend sees the request cancelled. Protocol upgrades
// (WebSocket) and queries that need re-encoding go through
// httputil.ReverseProxy instead, and count as in flight for a drain.
//
// Keep-alive connections: idle ones are kept per backend (at most 512,
// closed after 90 s idle), the most recently used first. A backend may
// close an idle connection at any time (a graceful restart does exactly
// that), so a request that must not be sent twice (one with a body, or a
// non-idempotent method) is only sent on a connection that a non-blocking
// peek found still open; an idempotent request without a body skips the
// peek and, if the connection turns out to be closed before any answer
// byte, is sent again once on a new connection, as net/http's Transport
// does (and so is any request the backend provably did not read: see
// Retry). Health checks use the same client on a kept-alive connection of
// their own, and all backends' checks share one phase, so that a round
// wakes the router once. /metrics shows, per backend, the idle
// connections, the dials and those resends.
//
// Retry: a request that the backend provably did not process is sent
// once to another backend of the same release, whatever its method:
//
//   - its connection was refused (a dial error: nothing was sent, and the
//     exchange reads nothing of the client's body before it holds a
//     connection);
//   - or the connection ended before any byte of an answer and the
//     kernel shows that the backend never read the request (see
//     liveness.unread): the connection was reset, because the backend's
//     socket was closed with the request unread in it or before it
//     arrived (one closed with everything read ends with a FIN), or bytes
//     of the request are still unacknowledged. This is a backend killed
//     or hung while requests arrive, and the keep-alive race of a backend
//     closing an idle connection the router just reused.
//
// When the connection was a reused one, the request first goes once more
// to the same backend on a new connection (a live backend that closed an
// idle connection answers it; a dead one refuses it, and the refusal
// sends the request elsewhere). A backend that read the whole request and
// closed without answering may have acted on it: an idempotent request
// without a body is sent again, any other is answered 502 (nginx's
// proxy_next_upstream without non_idempotent). To send a body again, the
// exchange keeps what it reads of it (proxyState.kept) up to
// Config.RetryBodyLimit; a longer body that has started towards a backend
// makes its request unreplayable. A handler that acts before reading the
// whole body and is killed before answering also leaves a reset: its
// request is sent again, which an idempotency key guards against.
// (Upgrades and re-encoded queries go through httputil.ReverseProxy,
// whose transport closes the body on error: there only requests without
// a body are retried, and only after a refused connection.)
//
// Client connections: each read of a request body waits at most
// Config.BodyReadTimeout (60 s, as nginx's client_body_timeout); a client
// whose body stalls gets 408 and its connection, and the backend's, are
// closed. Config.MaxConns optionally caps the client connections open at
// once: at the cap the router stops accepting and new clients wait in the
// listen backlog. A request with both Content-Length and
// Transfer-Encoding is answered 400 and its connection closed (RFC 9112
// §6.3: a request smuggling pattern). Trailer fields are passed on in
// either direction except those the header rules keep out or set
// (framing, forwarding, routing, authentication, cookies, content
// metadata): see trailerAllowed.
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
