// Package traffictest holds the integration tests of flightdeck's traffic
// side, run with real parts on 127.0.0.1: the built-in router (in
// process, on loopback listeners), one HTTP backend per host or slot,
// local hosts (directories), the engine driving them through the router's
// admin API, Prometheus when the gate reads it, and bounded load through
// the router.
//
// A test backend serves the release its slot was last started with: the
// plan's restart command writes RELEASE_VERSION into a file named after
// the backend's port, and the backend reads that file on every request.
// What a release does (answer 5xx to one request in N) comes from
// knobs.json inside the release directory, so the behaviour travels with
// the release exactly as a real build's would.
package traffictest
