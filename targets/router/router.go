package router

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"flightdeck/engine"
)

// Router is the built-in traffic router. Create it with New, attach
// listeners with Start, stop it with Shutdown or Close.
type Router struct {
	cfg      Config
	log      *slog.Logger
	token    string
	registry *prometheus.Registry
	prom     *promMetrics

	table atomic.Pointer[table]

	mu       sync.Mutex // serialises changes; guards st, backends, stats
	st       *state
	backends map[string]*backend
	stats    map[string]*releaseStats

	dialer     *net.Dialer
	transport  *http.Transport // protocol upgrades (see needsReverseProxy)
	bufs       bufferPool
	writers    sync.Pool
	discardLog *log.Logger

	ctx    context.Context // lives until Close; parent of health checkers
	cancel context.CancelFunc

	srvMu   sync.Mutex
	servers []*http.Server
}

// ErrUnknownBackend is returned for an address that is in no pool.
var ErrUnknownBackend = errors.New("unknown backend")

// New restores the routing state from cfg.StateFile, loads or creates the
// admin token and starts the health checkers of the restored backends.
// Call Close (or Shutdown) to stop them.
func New(cfg Config) (*Router, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	st, err := loadState(cfg.StateFile)
	if err != nil {
		return nil, err
	}
	tok, err := loadOrCreateToken(cfg.TokenFile)
	if err != nil {
		return nil, err
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	r := &Router{
		cfg:        cfg,
		log:        cfg.Logger,
		token:      tok,
		registry:   reg,
		backends:   map[string]*backend{},
		stats:      map[string]*releaseStats{},
		discardLog: log.New(io.Discard, "", 0),
	}
	r.prom, err = newPromMetrics(reg, r.backendList)
	if err != nil {
		return nil, fmt.Errorf("registering router metrics: %w", err)
	}
	dialer := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	r.dialer = dialer
	r.transport = &http.Transport{
		Proxy:                 nil, // never route backend traffic through an environment proxy
		DialContext:           dialer.DialContext,
		MaxIdleConns:          0, // no global cap; the per-host cap bounds it
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // pass encodings through untouched
		WriteBufferSize:       16 << 10,
		ReadBufferSize:        16 << 10,
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.mu.Lock()
	defer r.mu.Unlock()
	r.apply(st)
	return r, nil
}

// Token returns the admin bearer token (for in-process clients and tests).
func (r *Router) Token() string { return r.token }

// Registry returns the registry holding the router's metrics.
func (r *Router) Registry() *prometheus.Registry { return r.registry }

// backendList returns every backend of the current snapshot.
func (r *Router) backendList() []*backend {
	t := r.table.Load()
	if t == nil {
		return nil
	}
	out := make([]*backend, 0, len(t.backends))
	for _, b := range t.backends {
		out = append(out, b)
	}
	return out
}

// update applies fn to a copy of the state, validates, persists and only
// then publishes it: on any error nothing changes.
func (r *Router) update(fn func(st *state) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := r.st.clone()
	if err := fn(next); err != nil {
		return err
	}
	if err := next.validate(); err != nil {
		return &badRequestError{err}
	}
	if err := saveState(r.cfg.StateFile, next); err != nil {
		return err
	}
	r.apply(next)
	return nil
}

// badRequestError marks an error caused by the caller's input.
type badRequestError struct{ err error }

func (e *badRequestError) Error() string { return e.err.Error() }
func (e *badRequestError) Unwrap() error { return e.err }

func badRequest(format string, args ...any) error {
	return &badRequestError{fmt.Errorf(format, args...)}
}

// apply makes st current: starts and stops backends, sets drain flags and
// publishes a new snapshot. Called with r.mu held.
func (r *Router) apply(st *state) {
	want := map[string]string{}
	for rel, addrs := range st.Pools {
		for _, a := range addrs {
			want[a] = rel
		}
		if r.stats[rel] == nil {
			r.stats[rel] = &releaseStats{hist: r.prom.duration.WithLabelValues(rel)}
		}
	}
	for a, b := range r.backends {
		if rel, ok := want[a]; !ok || rel != b.release {
			b.stop()
			<-b.done
			b.conns.close()
			b.health.close()
			delete(r.backends, a)
			r.prom.forget(b.release, a)
		}
	}
	for rel := range r.stats {
		if _, ok := st.Pools[rel]; !ok {
			delete(r.stats, rel)
			r.prom.forget(rel, "")
		}
	}
	for a, rel := range want {
		if _, ok := r.backends[a]; ok {
			continue
		}
		b := &backend{addr: a, release: rel, recheck: make(chan struct{}, 1), done: make(chan struct{})}
		b.proxy = r.newProxy(b)
		b.conns = newConnPool(a, r.dialer, maxIdlePerBackend)
		b.health = newConnPool(a, r.dialer, 1)
		for i, c := range codeClasses {
			b.codes[i] = r.prom.requests.WithLabelValues(rel, a, c)
		}
		b.connErrors = r.prom.connErrors.WithLabelValues(rel, a)
		var ctx context.Context
		ctx, b.stop = context.WithCancel(r.ctx)
		r.backends[a] = b
		go r.healthLoop(ctx, b)
	}
	for a, b := range r.backends {
		b.draining.Store(slices.Contains(st.Drained, a))
	}
	r.st = st
	r.table.Store(buildTable(st, r.backends, r.stats))
}

// State returns the routing state with live backend facts.
func (r *Router) State() engine.RouterState {
	r.mu.Lock()
	defer r.mu.Unlock()
	rs := engine.RouterState{
		Route:    r.st.Route,
		Cohorts:  slices.Clone(r.st.Cohorts),
		Backends: []engine.BackendStatus{},
	}
	if rs.Cohorts == nil {
		rs.Cohorts = []engine.CohortRule{}
	}
	for _, b := range r.backends {
		rs.Backends = append(rs.Backends, engine.BackendStatus{
			Addr: b.addr, Release: b.release,
			Healthy: b.healthy.Load(), Draining: b.draining.Load(), InFlight: b.inflight.Load(),
		})
	}
	slices.SortFunc(rs.Backends, func(a, b engine.BackendStatus) int {
		return cmp.Or(cmp.Compare(a.Release, b.Release), cmp.Compare(a.Addr, b.Addr))
	})
	return rs
}

// Pools returns the configured pools (release → backend addresses).
func (r *Router) Pools() map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st.clone().Pools
}

// Stats returns cumulative per-release counters since the router started.
func (r *Router) Stats() map[string]engine.ReleaseStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]engine.ReleaseStats, len(r.stats))
	for rel, s := range r.stats {
		out[rel] = s.snapshot()
	}
	return out
}

// BackendStats returns cumulative counters per backend address since the
// backend joined a pool (a backend removed and added again starts from 0).
// A backend that has answered no request yet is left out (its counters are
// all zero): a cockpit sampling a large idle fleet every second reads
// almost nothing.
func (r *Router) BackendStats() map[string]engine.ReleaseStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]engine.ReleaseStats{}
	for a, b := range r.backends {
		if b.stats.requests.Load() > 0 {
			out[a] = b.stats.snapshot()
		}
	}
	return out
}

// SetPool replaces the backends of a release (creating the pool). New
// backends join rotation after their first passing health check.
func (r *Router) SetPool(release string, addrs []string) error {
	if err := engine.ValidateReleaseID(release); err != nil {
		return &badRequestError{fmt.Errorf("release name: %w", err)}
	}
	return r.update(func(st *state) error {
		for _, a := range addrs {
			if rel, ok := st.poolOf(a); ok && rel != release {
				return badRequest("backend %s already belongs to release %q; remove it from that pool first", a, rel)
			}
		}
		st.Pools[release] = slices.Clone(addrs)
		if st.Pools[release] == nil {
			st.Pools[release] = []string{}
		}
		st.Drained = slices.DeleteFunc(st.Drained, func(a string) bool {
			rel, ok := st.poolOf(a)
			return !ok || (rel == release && !slices.Contains(addrs, a))
		})
		return nil
	})
}

// DeletePool removes a release's pool; the route and cohorts must no
// longer name it.
func (r *Router) DeletePool(release string) error {
	return r.update(func(st *state) error {
		addrs, ok := st.Pools[release]
		if !ok {
			return &notFoundError{fmt.Errorf("no pool for release %q", release)}
		}
		delete(st.Pools, release)
		st.Drained = slices.DeleteFunc(st.Drained, func(a string) bool { return slices.Contains(addrs, a) })
		return nil
	})
}

// notFoundError marks a request for something that does not exist.
type notFoundError struct{ err error }

func (e *notFoundError) Error() string { return e.err.Error() }
func (e *notFoundError) Unwrap() error { return e.err }

// SetRoute replaces the route; the next request uses it.
func (r *Router) SetRoute(rt engine.Route) error {
	return r.update(func(st *state) error {
		st.Route = rt
		return nil
	})
}

// SetCohorts replaces the cohort rules (nil or empty drops them all).
func (r *Router) SetCohorts(rules []engine.CohortRule) error {
	return r.update(func(st *state) error {
		st.Cohorts = slices.Clone(rules)
		return nil
	})
}

// DrainResult says how a drain ended.
type DrainResult struct {
	Addr     string `json:"addr"`
	Drained  bool   `json:"drained"`   // no request in flight any more
	InFlight int64  `json:"in_flight"` // requests still in flight at the end
}

// Drain takes addr out of rotation (persistently) and waits until its
// in-flight requests finished, timeout passed (0: Config.DrainTimeout) or
// ctx ended.
func (r *Router) Drain(ctx context.Context, addr string, timeout time.Duration) (DrainResult, error) {
	err := r.update(func(st *state) error {
		if _, ok := st.poolOf(addr); !ok {
			return &notFoundError{fmt.Errorf("%w %s", ErrUnknownBackend, addr)}
		}
		if !slices.Contains(st.Drained, addr) {
			st.Drained = append(st.Drained, addr)
		}
		return nil
	})
	if err != nil {
		return DrainResult{Addr: addr}, err
	}
	r.mu.Lock()
	b := r.backends[addr]
	r.mu.Unlock()
	if timeout <= 0 {
		timeout = r.cfg.DrainTimeout
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		n := b.inflight.Load()
		if n == 0 {
			return DrainResult{Addr: addr, Drained: true}, nil
		}
		select {
		case <-ctx.Done():
			return DrainResult{Addr: addr, InFlight: n}, ctx.Err()
		case <-deadline.C:
			return DrainResult{Addr: addr, InFlight: b.inflight.Load()}, nil
		case <-tick.C:
		}
	}
}

// Undrain puts addr back into rotation once a fresh health check passed
// (the process behind it may have been restarted while drained).
func (r *Router) Undrain(addr string) error {
	return r.update(func(st *state) error {
		if _, ok := st.poolOf(addr); !ok {
			return &notFoundError{fmt.Errorf("%w %s", ErrUnknownBackend, addr)}
		}
		if !slices.Contains(st.Drained, addr) {
			return nil
		}
		st.Drained = slices.DeleteFunc(st.Drained, func(a string) bool { return a == addr })
		if b := r.backends[addr]; b != nil {
			b.healthy.Store(false)
			b.checkNow()
		}
		return nil
	})
}

// Start serves the proxy on proxyLn and the admin API on adminLn (either
// may be nil) in background goroutines.
func (r *Router) Start(proxyLn, adminLn net.Listener) {
	r.srvMu.Lock()
	defer r.srvMu.Unlock()
	serve := func(ln net.Listener, h http.Handler, what string) {
		srv := &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          r.discardLog,
		}
		if _, ok := ln.(*clientListener); ok {
			srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
				if cc, ok := c.(*clientConn); ok {
					return context.WithValue(ctx, clientConnKey{}, cc)
				}
				return ctx
			}
			srv.ConnState = func(c net.Conn, s http.ConnState) {
				if cc, ok := c.(*clientConn); ok && s == http.StateIdle {
					cc.requestDone() // the next bytes are a new request's head
				}
			}
		}
		r.servers = append(r.servers, srv)
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				r.log.Error("router listener stopped", "listener", what, "addr", ln.Addr().String(), "err", err)
			}
		}()
	}
	if proxyLn != nil {
		serve(newClientListener(proxyLn, r.cfg.MaxConns), r, "proxy")
	}
	if adminLn != nil {
		serve(adminLn, r.AdminHandler(), "admin")
	}
}

// Shutdown stops accepting connections, waits for in-flight requests until
// ctx ends, then stops the health checkers.
func (r *Router) Shutdown(ctx context.Context) error {
	var errs []error
	for _, s := range r.takeServers() {
		if err := s.Shutdown(ctx); err != nil {
			errs = append(errs, err)
			s.Close()
		}
	}
	r.stopBackends()
	return errors.Join(errs...)
}

// Close stops everything at once.
func (r *Router) Close() error {
	var errs []error
	for _, s := range r.takeServers() {
		errs = append(errs, s.Close())
	}
	r.stopBackends()
	return errors.Join(errs...)
}

// takeServers hands the started servers to the caller that stops them.
func (r *Router) takeServers() []*http.Server {
	r.srvMu.Lock()
	defer r.srvMu.Unlock()
	servers := r.servers
	r.servers = nil
	return servers
}

func (r *Router) stopBackends() {
	r.cancel()
	r.mu.Lock()
	for _, b := range r.backends {
		<-b.done
		b.conns.close()
		b.health.close()
	}
	r.mu.Unlock()
	r.transport.CloseIdleConnections()
}
