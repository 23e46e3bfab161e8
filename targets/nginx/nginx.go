// Package nginx drives an existing open-source nginx as flightdeck's
// traffic layer. nginx has no runtime API, so the adapter owns one file
// the operator's configuration includes (Config.UpstreamFile) and every
// change is: write the file atomically (temporary file, fsync, rename),
// run nginx's configuration test (Config.TestCommand, "nginx -t"), and
// reload gracefully (Config.ReloadCommand, "nginx -s reload"). When the
// test fails, the previous file is put back, nginx is not reloaded and
// the error carries nginx's own message. Old workers finish the requests
// they hold, so a reload loses none.
//
// Router implements engine.Router. The file holds an upstream block with
// a server line per backend the routing state (targets/pools) places:
// weight=N for a backend serving its share, backup for a warm one (a
// release not routed: it serves only if every other server fails), down
// for a drained one; backends in no pool are left out. The routing state
// itself is a comment line of the same file, so the file is the
// adapter's only memory.
//
// Draining: the server is marked down and nginx reloaded; Drain then
// waits until the workers of the previous generation (which hold the
// requests in flight) have exited, or the timeout. Health: open-source
// nginx only has passive checks, so the adapter checks a backend's
// health path itself before it counts it healthy or puts it back.
//
// A/B: Config.MapFile is a second file the adapter writes the same way: a
// map (or split_clients for a percentage) setting $flightdeck_UPSTREAM to
// UPSTREAM_cohort for the cohort's requests; the configuration proxies to
// http://$flightdeck_UPSTREAM.
//
// Metrics come from the access log written with LogFormat: Stats reads
// what was added since its last call and counts each upstream try
// against the release of its address (requests, status classes, latency
// histogram), for router.NewMetrics to measure.
package nginx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"flightdeck/engine"
	"flightdeck/targets/pools"
	"flightdeck/targets/reqlog"
	"flightdeck/targets/router"
)

// Config configures an adapter.
type Config struct {
	// UpstreamFile is the file flightdeck owns; the operator's nginx.conf
	// includes it (inside http {}).
	UpstreamFile string
	// Upstream names the upstream block (proxy_pass http://Upstream).
	Upstream string
	// MapFile is the cohort map include (A/B); empty without cohorts.
	MapFile string
	// TestCommand and ReloadCommand run through /bin/sh (defaults
	// "nginx -t" and "nginx -s reload").
	TestCommand, ReloadCommand string
	// PIDFile is the nginx master's pid file (default /run/nginx.pid).
	PIDFile string
	// AccessLog is the log written with LogFormat (metrics).
	AccessLog string
	// HealthPath is the backends' health check path (default /healthz).
	HealthPath string
	// Env names the environment in the files' header.
	Env string
	// PollInterval paces health and reload checks (default 50 ms).
	PollInterval time.Duration
	// ReloadTimeout bounds the wait for a reload to take effect (default 30 s).
	ReloadTimeout time.Duration
	// HealthTimeout bounds Undrain's wait for a backend's health (default 30 s).
	HealthTimeout time.Duration
}

// Router drives one nginx upstream. It implements engine.Router.
type Router struct {
	cfg Config
	hc  *http.Client

	mu sync.Mutex // serialises changes; guards st
	st *pools.State

	logMu sync.Mutex
	tail  tail
	tally *reqlog.Tally
}

var _ engine.Router = (*Router)(nil)

// New reads the routing state from the upstream file (a file flightdeck
// did not write yet is an empty state).
func New(cfg Config) (*Router, error) {
	if cfg.UpstreamFile == "" || cfg.Upstream == "" {
		return nil, errors.New("nginx: upstream_file and upstream are required")
	}
	if cfg.TestCommand == "" {
		cfg.TestCommand = "nginx -t"
	}
	if cfg.ReloadCommand == "" {
		cfg.ReloadCommand = "nginx -s reload"
	}
	if cfg.PIDFile == "" {
		cfg.PIDFile = "/run/nginx.pid"
	}
	if cfg.HealthPath == "" {
		cfg.HealthPath = router.DefaultHealthPath
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 50 * time.Millisecond
	}
	if cfg.ReloadTimeout <= 0 {
		cfg.ReloadTimeout = 30 * time.Second
	}
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = 30 * time.Second
	}
	data, err := os.ReadFile(cfg.UpstreamFile)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("nginx: reading %s: %w", cfg.UpstreamFile, err)
	}
	st, err := parseState(data)
	if err != nil {
		return nil, fmt.Errorf("nginx: %s: %w", cfg.UpstreamFile, err)
	}
	return &Router{cfg: cfg, st: st, tally: reqlog.New(), tail: tail{path: cfg.AccessLog},
		hc: &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 2 * time.Second}}, nil
}

// Config returns the adapter's configuration (defaults filled in).
func (r *Router) Config() Config { return r.cfg }

// Close releases the access log.
func (r *Router) Close() error {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	r.tail.close()
	return nil
}

// RejectedError is a change nginx's configuration test refused: the
// previous files were put back and nginx was not reloaded.
type RejectedError struct {
	Command string
	Output  string
	// Err is how the command ended (an exit status, or killed at its
	// timeout: then nginx said nothing).
	Err error
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("nginx rejected the new configuration (%s failed: %v; the previous upstream file is back and nginx was not reloaded): %s",
		e.Command, e.Err, strings.TrimSpace(e.Output))
}

func (e *RejectedError) Unwrap() error { return e.Err }

// Check verifies, before anything changes, that the files can be written
// and nginx's master runs.
func (r *Router) Check(ctx context.Context) error {
	if _, err := masterPID(r.cfg.PIDFile); err != nil {
		return err
	}
	return nil
}

// change applies fn to a copy of the routing state, writes the files,
// tests and reloads; on failure the previous files and state stay.
func (r *Router) change(ctx context.Context, fn func(*pools.State) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := r.st.Clone()
	if err := fn(next); err != nil {
		return err
	}
	if err := checkCohortValues(next); err != nil {
		return err
	}
	if err := r.write(ctx, next); err != nil {
		return err
	}
	r.st = next
	return nil
}

// files renders the upstream file and the map file for st.
func (r *Router) files(st *pools.State) (map[string][]byte, error) {
	up, err := renderUpstream(st, r.cfg.Upstream, r.cfg.Env, r.cfg.MapFile != "")
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{r.cfg.UpstreamFile: up}
	if r.cfg.MapFile != "" {
		out[r.cfg.MapFile] = renderMap(st, r.cfg.Upstream, r.cfg.Env)
	} else if len(st.Cohorts) > 0 {
		return nil, errors.New("cohort rules need map_file in the plan's router")
	}
	return out, nil
}

// write puts st's files in place, tests the configuration and reloads
// nginx, waiting until workers of the new configuration run. A file that
// would not change is not rewritten; nothing changed, no reload.
func (r *Router) write(ctx context.Context, st *pools.State) error {
	want, err := r.files(st)
	if err != nil {
		return err
	}
	prev := map[string][]byte{} // nil: the file did not exist
	changed := false
	for path, data := range want {
		old, err := os.ReadFile(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			old = nil
		case err != nil:
			return fmt.Errorf("nginx: reading %s: %w", path, err)
		}
		prev[path] = old
		changed = changed || !bytes.Equal(old, data)
	}
	if !changed {
		return nil
	}
	restore := func() error {
		var errs []error
		for path, old := range prev {
			if old == nil {
				errs = append(errs, os.Remove(path))
				continue
			}
			errs = append(errs, pools.WriteFile(path, old, 0o644))
		}
		return errors.Join(errs...)
	}
	for path, data := range want {
		if bytes.Equal(prev[path], data) {
			continue
		}
		if err := pools.WriteFile(path, data, 0o644); err != nil {
			rerr := restore()
			return errors.Join(fmt.Errorf("nginx: writing %s: %w", path, err), rerr)
		}
	}
	if out, err := r.run(ctx, r.cfg.TestCommand); err != nil {
		rej := &RejectedError{Command: r.cfg.TestCommand, Output: out, Err: err}
		if rerr := restore(); rerr != nil {
			return fmt.Errorf("%w (and putting the previous files back failed: %v)", rej, rerr)
		}
		return rej
	}
	master, err := masterPID(r.cfg.PIDFile)
	if err != nil {
		rerr := restore()
		return errors.Join(fmt.Errorf("nginx: not reloaded: %w", err), rerr)
	}
	old, err := workers(master)
	if err != nil {
		return fmt.Errorf("nginx: listing workers: %w", err)
	}
	if out, err := r.run(ctx, r.cfg.ReloadCommand); err != nil {
		rerr := restore()
		return errors.Join(fmt.Errorf("nginx: %s failed (the previous upstream file is back): %w: %s", r.cfg.ReloadCommand, err, strings.TrimSpace(out)), rerr)
	}
	return r.waitReloaded(ctx, master, old)
}

// run runs a command line through /bin/sh and returns its output.
func (r *Router) run(ctx context.Context, cmdline string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", cmdline)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// waitReloaded waits until the new configuration is in effect: a worker
// that was not among old (the previous generation) runs, and every old
// one is shutting down (it stopped accepting connections) or gone.
func (r *Router) waitReloaded(ctx context.Context, master int, old []worker) error {
	deadline := time.Now().Add(r.cfg.ReloadTimeout)
	for {
		ws, err := workers(master)
		if err != nil {
			return err
		}
		fresh, stale := false, false
		for _, w := range ws {
			wasOld := slices.ContainsFunc(old, func(o worker) bool { return o.pid == w.pid })
			fresh = fresh || (!wasOld && !w.shuttingDown)
			stale = stale || (wasOld && !w.shuttingDown)
		}
		if fresh && !stale {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nginx did not switch to workers of the new configuration within %s: see its error log (the file is written and passed %s)", r.cfg.ReloadTimeout, r.cfg.TestCommand)
		}
		if err := sleep(ctx, r.cfg.PollInterval/2); err != nil {
			return err
		}
	}
}

// waitOldWorkers waits until none of old runs any more: every request
// they held has finished.
func (r *Router) waitOldWorkers(ctx context.Context, master int, old []worker, deadline time.Time) (int, error) {
	for {
		ws, err := workers(master)
		if err != nil {
			return 0, err
		}
		left := 0
		for _, w := range ws {
			if slices.ContainsFunc(old, func(o worker) bool { return o.pid == w.pid }) {
				left++
			}
		}
		if left == 0 {
			return 0, nil
		}
		if time.Now().After(deadline) {
			return left, nil
		}
		if err := sleep(ctx, r.cfg.PollInterval); err != nil {
			return left, err
		}
	}
}

// State returns the routing state; health comes from each backend's
// health path, checked now.
func (r *Router) State(ctx context.Context) (engine.RouterState, error) {
	r.mu.Lock()
	st := r.st.Clone()
	r.mu.Unlock()
	out := engine.RouterState{Route: st.Route, Cohorts: slices.Clone(st.Cohorts)}
	if out.Cohorts == nil {
		out.Cohorts = []engine.CohortRule{}
	}
	type res struct {
		i  int
		ok bool
	}
	var bs []engine.BackendStatus
	for _, rel := range slices.Sorted(maps.Keys(st.Pools)) {
		for _, a := range st.Pools[rel] {
			bs = append(bs, engine.BackendStatus{Addr: a, Release: rel, Draining: st.IsDrained(a)})
		}
	}
	ch := make(chan res, len(bs))
	for i, b := range bs {
		go func() { ch <- res{i, r.healthy(ctx, b.Addr)} }()
	}
	for range bs {
		x := <-ch
		bs[x.i].Healthy = x.ok
	}
	out.Backends = bs
	return out, nil
}

// healthy checks addr's health path once.
func (r *Router) healthy(ctx context.Context, addr string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+r.cfg.HealthPath, nil)
	if err != nil {
		return false
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode/100 == 2
}

// waitHealth polls addr's health path until it passes.
func (r *Router) waitHealth(ctx context.Context, addr string) error {
	for !r.healthy(ctx, addr) {
		if err := sleep(ctx, r.cfg.PollInterval); err != nil {
			return fmt.Errorf("waiting for %s%s to answer 2xx: %w", addr, r.cfg.HealthPath, err)
		}
	}
	return nil
}

// SetPool sets release's backends.
func (r *Router) SetPool(ctx context.Context, release string, addrs []string) error {
	return r.change(ctx, pools.PoolChange(release, addrs))
}

// SetRoute changes the traffic split (server weights).
func (r *Router) SetRoute(ctx context.Context, rt engine.Route) error {
	return r.change(ctx, pools.RouteChange(rt))
}

// SetCohorts replaces the cohort rules (the map file).
func (r *Router) SetCohorts(ctx context.Context, rules []engine.CohortRule) error {
	return r.change(ctx, pools.CohortChange(rules))
}

// Drain marks addr down, reloads nginx and waits until the workers that
// held requests before the reload have exited (nil) or timeout passed (an
// error wrapping router.ErrDrainTimeout; addr stays down).
func (r *Router) Drain(ctx context.Context, addr string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = router.DefaultDrainTimeout
	}
	deadline := time.Now().Add(timeout)
	master, err := masterPID(r.cfg.PIDFile)
	if err != nil {
		return fmt.Errorf("draining %s: %w", addr, err)
	}
	old, err := workers(master)
	if err != nil {
		return fmt.Errorf("draining %s: %w", addr, err)
	}
	if err := r.change(ctx, pools.DrainChange(addr, true)); err != nil {
		return fmt.Errorf("draining %w", err)
	}
	left, err := r.waitOldWorkers(ctx, master, old, deadline)
	if err != nil {
		return fmt.Errorf("draining %s: %w", addr, err)
	}
	if left > 0 {
		return fmt.Errorf("draining %s: %w (%d workers of the previous configuration still finishing requests after %s)", addr, router.ErrDrainTimeout, left, timeout)
	}
	return nil
}

// Undrain waits until addr passes its health check, then puts it back in
// rotation (nginx has no active checks to wait for it).
func (r *Router) Undrain(ctx context.Context, addr string) error {
	r.mu.Lock()
	rel := r.st.ReleaseOf(addr)
	r.mu.Unlock()
	if rel == "" {
		return fmt.Errorf("undraining %s: %w", addr, router.ErrUnknownBackend)
	}
	hctx, cancel := context.WithTimeout(ctx, r.cfg.HealthTimeout)
	err := r.waitHealth(hctx, addr)
	cancel()
	if err != nil {
		return fmt.Errorf("undraining %s: %w", addr, err)
	}
	if err := r.change(ctx, pools.DrainChange(addr, false)); err != nil {
		return fmt.Errorf("undraining %w", err)
	}
	return nil
}

// WaitHealthy waits until addr is in rotation (in a pool, not drained)
// and passes its health check.
func (r *Router) WaitHealthy(ctx context.Context, addr string) error {
	r.mu.Lock()
	err := r.st.InRotation(addr)
	r.mu.Unlock()
	if err != nil {
		return err
	}
	return r.waitHealth(ctx, addr)
}

// Stats reads the access log written since the last call and returns
// cumulative per-release counters (since the adapter's first call).
func (r *Router) Stats(ctx context.Context) (map[string]engine.ReleaseStats, error) {
	pools, err := r.readLog()
	if err != nil {
		return nil, err
	}
	return r.tally.ByRelease(pools), nil
}

// BackendStats reads the access log like Stats and returns the counters
// per upstream address of every pool.
func (r *Router) BackendStats(ctx context.Context) (map[string]engine.ReleaseStats, error) {
	pools, err := r.readLog()
	if err != nil {
		return nil, err
	}
	out := map[string]engine.ReleaseStats{}
	for _, addrs := range pools {
		for _, a := range addrs {
			out[a] = r.tally.Sum([]string{a})
		}
	}
	return out, nil
}

// readLog tallies the access log written since the last read and returns
// the pools.
func (r *Router) readLog() (map[string][]string, error) {
	if r.cfg.AccessLog == "" {
		return nil, errors.New("nginx: no access_log in the plan's router to measure with")
	}
	r.logMu.Lock()
	err := r.tail.read(r.tally)
	r.logMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("nginx access log: %w", err)
	}
	r.mu.Lock()
	st := r.st.Clone()
	r.mu.Unlock()
	return st.Pools, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
