// Package haproxy drives an existing HAProxy (2.4 or newer) as
// flightdeck's traffic layer, through its Runtime API (the stats socket at
// "level admin", on a unix socket or TCP). Router implements
// engine.Router, so canary, blue/green, A/B and rolling deploys move
// traffic through HAProxy exactly as they do through the built-in router.
//
// The operator's configuration declares one backend (Config.Backend)
// holding a server for every address the plan names (each host's backend
// and both slots), each with a health check. HAProxy knows servers, not
// releases, so the adapter keeps the pools, route, cohorts and drains
// (targets/pools) in its state file and derives every server's
// administrative state and weight from them:
//
//   - a server of a routed release gets a weight (1–256) proportional to
//     its share of the traffic: canary steps are weights across servers;
//   - a server of a release that is not routed is "ready" with weight 0
//     (warm: health-checked, no traffic), so a blue/green flip and a flip
//     back are weight changes only;
//   - a drained server is in "drain" (no new requests; Drain waits until
//     its current sessions, scur, reach 0 or the timeout passes);
//   - a server in no pool is in "maint".
//
// A server that comes back from maint or drain is first forced to "health
// down", so it takes traffic only after a fresh health check passed
// (HAProxy would otherwise count a server leaving maintenance as up at
// once). Changes are sent as one batch of commands, in an order that never
// leaves the backend without a server in rotation: servers are enabled and
// weights raised before weights are lowered and servers disabled.
//
// A/B: a second backend (Config.CohortBackend) holds the same servers; the
// frontend sends a request there when the cohort map (Config.CohortMap)
// has an entry for its header or cookie value, and there only the cohort's
// release has weight. Entries are added, changed and deleted at run time
// (add map, set map, del map): an exact-value cohort is one entry, a
// percent cohort one entry per bucket 0..P-1 of a hash the configuration
// computes (see the README).
//
// HAProxy forgets runtime changes when it reloads or restarts. Every call
// first reads the process identity (show info: pid and start time); when
// it differs from the process the state was last applied to, the whole
// state is applied again and a notice says so (Watch hands it to the run's
// journal, and checks every PollInterval while a run is active).
//
// Metrics: request, 5xx and connection-error counters per server come from
// "show stat"; latency from HAProxy's request log sent to a ring
// (Config.LogRing, with flightdeck's log-format) and streamed over the
// same socket with "show events RING -w -n" into a histogram, because
// HAProxy keeps averages, not percentiles.
package haproxy
