package traffictest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"flightdeck/engine"
	"flightdeck/engine/plan"
	"flightdeck/engine/probe"
	"flightdeck/internal/testbackend"
	"flightdeck/targets/haproxy"
	"flightdeck/targets/haproxy/haproxytest"
	"flightdeck/targets/local"
	"flightdeck/targets/nginx"
	"flightdeck/targets/nginx/nginxtest"
	"flightdeck/targets/prom"
	"flightdeck/targets/prom/promtest"
	"flightdeck/targets/router"
)

// knobs are what a release does, written into its knobs.json.
type knobs struct {
	// FailEvery > 0 answers 500 to every FailEvery-th request a backend
	// serves for the release (5 % errors for 20).
	FailEvery uint64 `json:"fail_every,omitempty"`
}

// backend is one HTTP server standing for a host's application process
// (or one of its slots). It serves the release named in its run file.
type backend struct {
	addr     string
	port     string
	deployTo string
	runFile  string
	srv      *http.Server

	mu       sync.Mutex
	knobs    map[string]knobs
	counters map[string]*atomic.Uint64

	// held counts requests to /hold in progress; they finish when
	// unhold is closed.
	held   atomic.Int64
	unhold chan struct{}
}

func startBackend(t *testing.T, runDir, deployTo string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	b := &backend{
		addr: addr, port: port, deployTo: deployTo, runFile: filepath.Join(runDir, port),
		knobs: map[string]knobs{}, counters: map[string]*atomic.Uint64{}, unhold: make(chan struct{}),
	}
	b.srv = &http.Server{Handler: b, ReadHeaderTimeout: 5 * time.Second}
	go b.srv.Serve(ln)
	t.Cleanup(func() { b.srv.Close() })
	return b
}

// release is what the slot was last started with ("" = not started).
func (b *backend) release() string {
	data, err := os.ReadFile(b.runFile)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// start records rel as the slot's release, as the restart command does.
func (b *backend) start(t *testing.T, rel string) {
	t.Helper()
	if err := os.WriteFile(b.runFile, []byte(rel), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (b *backend) releaseState(rel string) (knobs, *atomic.Uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if k, ok := b.knobs[rel]; ok {
		return k, b.counters[rel], nil
	}
	data, err := os.ReadFile(filepath.Join(b.deployTo, engine.ReleasesDir, rel, "knobs.json"))
	if err != nil {
		return knobs{}, nil, err
	}
	var k knobs
	if err := json.Unmarshal(data, &k); err != nil {
		return knobs{}, nil, err
	}
	b.knobs[rel] = k
	b.counters[rel] = new(atomic.Uint64)
	return k, b.counters[rel], nil
}

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rel := b.release()
	if rel == "" {
		http.Error(w, "not started", http.StatusServiceUnavailable)
		return
	}
	k, n, err := b.releaseState(rel)
	if err != nil {
		http.Error(w, "release "+rel+": "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("X-Release", rel)
	if r.URL.Path == "/hold" {
		b.held.Add(1)
		<-b.unhold
		b.held.Add(-1)
	}
	if r.URL.Path == router.DefaultHealthPath {
		return
	}
	if c := n.Add(1); k.FailEvery > 0 && c%k.FailEvery == 0 {
		http.Error(w, rel+" failed", http.StatusInternalServerError)
		return
	}
	io.WriteString(w, rel)
}

// fleetOpts shape a test fleet.
type fleetOpts struct {
	hosts int
	// slots gives every host a blue and a green backend (blue/green, A/B);
	// otherwise each host has one backend (canary).
	slots bool
	// env is YAML appended to the environment (strategy, gate, ...),
	// indented by four spaces. PROXY_URL in it is replaced by the traffic
	// layer's public URL, PROM_URL by the address of the Prometheus server
	// started when prometheus is set.
	env string
	// prometheus starts a real Prometheus scraping the router's /metrics
	// every second, and measures through it when the gate says
	// source: prometheus.
	prometheus bool
	// restartTakes is how long the restart command takes (a real process
	// needs time to come up).
	restartTakes time.Duration
	// router is the traffic layer: "" (the built-in router, in process),
	// "haproxy" (a real HAProxy driven through its Runtime API), "nginx"
	// (a real nginx driven through its upstream file and reloads).
	router string
	// routerExtra is added to the plan's router mapping (", drain: 1s").
	routerExtra string
	// unresolvable adds a first host "h0" whose backend's host name does
	// not resolve (nginx -t refuses it), running no release yet.
	unresolvable bool
	// cohortHeader is the header HAProxy looks its cohort map up with.
	cohortHeader string
}

// fleet is a whole traffic setup: router, backends, local hosts, plan, engine.
type fleet struct {
	t        *testing.T
	dir      string
	plan     *plan.Plan
	env      *plan.Environment
	hosts    []*local.Host
	backends map[string][]*backend // host → [backend] or [blue, green]
	// rtr is the traffic layer the engine drives (any kind).
	rtr      engine.Router
	rt       *router.Router // the built-in router, when the fleet uses it
	rcfg     router.Config
	addrs    [2]string // the router's proxy and admin addresses
	proxyURL string
	client   *router.Client
	ha       *haproxy.Process
	har      *haproxy.Router
	ng       *nginx.Process
	ngr      *nginx.Router
	hub      *engine.Hub
	eng      *engine.Engine
	rec      *recorder
	prom     *promtest.Server
}

var owner = engine.Actor{Name: "tester", Role: engine.RoleOwner, Via: "cli"}

// operator is a second person at the cockpit.
var operator = engine.Actor{Name: "oncall", Role: engine.RoleOperator, Via: "tui"}

func newFleet(t *testing.T, o fleetOpts) *fleet {
	t.Helper()
	switch o.router {
	case "haproxy":
		haproxytest.Require(t)
	case "nginx":
		nginxtest.Require(t)
	}
	dir := t.TempDir()
	f := &fleet{t: t, dir: dir, backends: map[string][]*backend{}, hub: engine.NewHub()}
	runDir := filepath.Join(dir, "run")
	mkdir(t, runDir)
	mkdir(t, filepath.Join(dir, "src"))
	writeFile(t, filepath.Join(dir, "src", "knobs.json"), "{}")
	// The restart command: the slot now runs RELEASE_VERSION (written
	// atomically, so a backend never reads half a name).
	writeFile(t, filepath.Join(dir, "restart.sh"), fmt.Sprintf(
		"set -e\nsleep %.3f\nf=%q/\"$PORT\"\nprintf '%%s' \"$RELEASE_VERSION\" > \"$f.tmp\"\nmv \"$f.tmp\" \"$f\"\necho \"started $RELEASE_VERSION on port $PORT slot ${SLOT:-none}\"\n",
		o.restartTakes.Seconds(), runDir))

	// The hosts' application processes.
	var names []string
	for i := range o.hosts {
		name := fmt.Sprintf("h%d", i+1)
		names = append(names, name)
		deployTo := filepath.Join(dir, "hosts", name)
		if o.slots {
			f.backends[name] = []*backend{startBackend(t, runDir, deployTo), startBackend(t, runDir, deployTo)}
		} else {
			f.backends[name] = []*backend{startBackend(t, runDir, deployTo)}
		}
	}

	var routerYAML string
	var stats router.StatsFunc
	switch o.router {
	case "haproxy":
		routerYAML, stats = f.startHAProxy(names, o)
	case "nginx":
		routerYAML, stats = f.startNginx(names, o)
	default:
		routerYAML, stats = f.startRouter()
	}

	env := strings.ReplaceAll(o.env, "PROXY_URL", f.proxyURL)
	if o.prometheus {
		f.prom = promtest.Start(t, time.Second, f.addrs[1])
		env = strings.ReplaceAll(env, "PROM_URL", f.prom.URL)
	}

	var y strings.Builder
	fmt.Fprintf(&y, "app: shop\nsource: ./src\nkeep_releases: 5\nrestart: sh %s\n", filepath.Join(dir, "restart.sh"))
	if o.routerExtra != "" {
		routerYAML = strings.TrimSuffix(routerYAML, "}") + o.routerExtra + "}"
	}
	fmt.Fprintf(&y, "environments:\n  prod:\n    router: %s\n    hosts:\n", routerYAML)
	if o.unresolvable {
		fmt.Fprintf(&y, "      - {name: h0, local: %q, backend: \"no-such-host.invalid:8080\"}\n", filepath.Join(dir, "hosts", "h0"))
	}
	for _, name := range names {
		deployTo := filepath.Join(dir, "hosts", name)
		if bs := f.backends[name]; o.slots {
			fmt.Fprintf(&y, "      - {name: %s, local: %q, slots: {blue: %q, green: %q}}\n", name, deployTo, bs[0].addr, bs[1].addr)
		} else {
			fmt.Fprintf(&y, "      - {name: %s, local: %q, backend: %q}\n", name, deployTo, bs[0].addr)
		}
	}
	y.WriteString(env)
	pf := filepath.Join(dir, "flightdeck.yaml")
	writeFile(t, pf, y.String())
	var err error
	f.plan, err = plan.Load(pf)
	if err != nil {
		t.Fatalf("plan:\n%s\n%v", y.String(), err)
	}
	f.env, err = f.plan.Env("prod")
	if err != nil {
		t.Fatal(err)
	}
	var hosts []engine.Host
	for _, h := range f.env.Hosts {
		lh := local.New(h.Name, h.Local)
		f.hosts = append(f.hosts, lh)
		hosts = append(hosts, lh)
	}
	if f.har != nil {
		addrs := map[string]string{}
		for name, bs := range f.backends {
			for _, b := range bs {
				addrs[b.addr] = "host " + name
			}
		}
		if err := f.har.Check(ctxT(t), addrs); err != nil {
			t.Fatalf("haproxy does not match the plan: %v", err)
		}
	}
	f.eng = &engine.Engine{
		Plan: f.plan, Env: f.env, Hosts: hosts, StateDir: filepath.Join(dir, "state"), Hub: f.hub,
		Router: f.rtr, Metrics: router.NewMetrics(stats),
	}
	if g := f.env.Gate; g != nil && g.Source == "prometheus" {
		src, err := prom.New(g.Prometheus)
		if err != nil {
			t.Fatal(err)
		}
		f.eng.Metrics = src
	}
	f.rec = newRecorder(t, f.hub)
	return f
}

// startRouter runs the built-in router in process, on loopback listeners.
func (f *fleet) startRouter() (yaml string, stats router.StatsFunc) {
	t, dir := f.t, f.dir
	rcfg := router.Config{
		StateFile: filepath.Join(dir, "router", "state.json"),
		// Quick to notice a backend that came up; slow to give up on one,
		// so that a loaded test machine does not fail health checks.
		HealthInterval: 20 * time.Millisecond,
		HealthTimeout:  5 * time.Second,
		HealthFailures: 5,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	mkdir(t, filepath.Join(dir, "router"))
	rt, err := router.New(rcfg)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	pl, al := listen(t), listen(t)
	rt.Start(pl, al)
	t.Cleanup(func() { rt.Close() })
	f.rt, f.rcfg = rt, rcfg
	f.addrs = [2]string{pl.Addr().String(), al.Addr().String()}
	f.proxyURL = "http://" + pl.Addr().String()
	adminURL := "http://" + al.Addr().String()
	f.client, err = router.NewClient(adminURL, rt.Token())
	if err != nil {
		t.Fatal(err)
	}
	f.client.PollInterval = 10 * time.Millisecond
	f.rtr = f.client
	return fmt.Sprintf("{admin: %q, token_file: %q}", adminURL, filepath.Join(dir, "router", router.DefaultTokenFileName)), f.client.Stats
}

// startHAProxy runs a real HAProxy with a server per backend, and the
// adapter driving it through its Runtime API.
func (f *fleet) startHAProxy(names []string, o fleetOpts) (yaml string, stats router.StatsFunc) {
	t := f.t
	s := haproxy.Setup{Dir: filepath.Join(f.dir, "haproxy"), Listen: listenAddr(t), CohortHeader: o.cohortHeader,
		CheckInterval: 50 * time.Millisecond, CheckTimeout: 5 * time.Second, Fall: 5}
	for _, name := range names {
		for i, b := range f.backends[name] {
			sv := name
			if o.slots {
				sv += "_" + [2]string{"blue", "green"}[i]
			}
			s.Servers = append(s.Servers, haproxy.SetupServer{Name: sv, Addr: b.addr})
		}
	}
	f.ha = haproxytest.Start(t, s)
	f.proxyURL = "http://" + s.Listen
	rc := fmt.Sprintf("{kind: haproxy, socket: %q, backend: app, log_ring: %s", s.Socket(), haproxy.RingName)
	cfg := haproxy.Config{Socket: s.Socket(), Backend: "app", LogRing: haproxy.RingName,
		StateFile: filepath.Join(f.dir, "state", "haproxy-prod.json"), PollInterval: 10 * time.Millisecond}
	if s.Cohorts() {
		rc += fmt.Sprintf(", cohort_backend: app_cohort, cohort_map: %q", s.Map())
		cfg.CohortBackend, cfg.CohortMap = "app_cohort", s.Map()
	}
	har, err := haproxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { har.Close() })
	f.har, f.rtr = har, har
	return rc + "}", har.Stats
}

// startNginx runs a real nginx proxying to an upstream file the adapter
// owns, with the access log in flightdeck's format.
func (f *fleet) startNginx(names []string, o fleetOpts) (yaml string, stats router.StatsFunc) {
	t := f.t
	s := nginx.Setup{Dir: filepath.Join(f.dir, "nginx"), Listen: listenAddr(t), Cohorts: o.slots && strings.Contains(o.env, "kind: ab")}
	for _, name := range names {
		for _, b := range f.backends[name] {
			s.Servers = append(s.Servers, b.addr)
		}
	}
	f.ng = nginxtest.Start(t, s)
	f.proxyURL = "http://" + s.Listen
	cfg := f.ng.Config("prod")
	cfg.PollInterval = 10 * time.Millisecond
	rc := fmt.Sprintf("{kind: nginx, upstream_file: %q, upstream: %s, test_command: %q, reload_command: %q, pid_file: %q, access_log: %q",
		cfg.UpstreamFile, cfg.Upstream, cfg.TestCommand, cfg.ReloadCommand, cfg.PIDFile, cfg.AccessLog)
	if cfg.MapFile != "" {
		rc += fmt.Sprintf(", map_file: %q", cfg.MapFile)
	}
	ngr, err := nginx.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ngr.Close() })
	f.ngr, f.rtr = ngr, ngr
	return rc + "}", ngr.Stats
}

// listenAddr returns a free loopback address.
func listenAddr(t *testing.T) string {
	ln := listen(t)
	defer ln.Close()
	return ln.Addr().String()
}

// restartRouter stops the router and starts a new one with the same
// configuration (state file, token) on the same addresses, as a restart
// of `flightdeck router` would.
func (f *fleet) restartRouter() {
	f.t.Helper()
	if err := f.rt.Close(); err != nil {
		f.t.Fatalf("closing the router: %v", err)
	}
	rt, err := router.New(f.rcfg)
	if err != nil {
		f.t.Fatalf("router restart: %v", err)
	}
	f.t.Cleanup(func() { rt.Close() })
	var lns [2]net.Listener
	for i, addr := range f.addrs {
		if err := pollUntil(10*time.Second, func() bool {
			lns[i], err = net.Listen("tcp", addr)
			return err == nil
		}); err != nil {
			f.t.Fatalf("listening again on %s: %v", addr, err)
		}
	}
	rt.Start(lns[0], lns[1])
	f.rt = rt
}

// build makes release id from a source whose knobs.json says k.
func (f *fleet) build(id string, k knobs) *engine.Artifact {
	f.t.Helper()
	src := filepath.Join(f.dir, "src-"+id)
	mkdir(f.t, src)
	data, _ := json.Marshal(k)
	writeFile(f.t, filepath.Join(src, "knobs.json"), string(data))
	writeFile(f.t, filepath.Join(src, "index.html"), "release "+id+"\n")
	f.plan.Source.Dir = src
	a, cleanup, err := engine.Build(context.Background(), f.plan, id, nil)
	if err != nil {
		f.t.Fatalf("build %s: %v", id, err)
	}
	f.t.Cleanup(cleanup)
	return a
}

// live puts release id on every host by hand (prepare, switch, start the
// blue slot or the backend), puts those backends in id's router pool and
// routes all traffic to it: the fleet as a previous deploy left it.
func (f *fleet) live(id string, k knobs) {
	f.t.Helper()
	ctx := ctxT(f.t)
	a := f.build(id, k)
	var addrs []string
	for _, h := range f.hosts {
		if len(f.backends[h.Name()]) == 0 {
			continue // a host that joins the fleet with this deploy
		}
		if err := h.Prepare(ctx, a, nil); err != nil {
			f.t.Fatal(err)
		}
		if err := h.Switch(ctx, engine.SwitchInfo{Release: id, Actor: "fixture", Action: "deploy"}); err != nil {
			f.t.Fatal(err)
		}
		b := f.backends[h.Name()][0]
		b.start(f.t, id)
		addrs = append(addrs, b.addr)
	}
	if err := f.rtr.SetPool(ctx, id, addrs); err != nil {
		f.t.Fatal(err)
	}
	if err := f.rtr.SetRoute(ctx, engine.Route{Stable: id}); err != nil {
		f.t.Fatal(err)
	}
	for _, a := range addrs {
		if err := f.rtr.WaitHealthy(ctx, a); err != nil {
			f.t.Fatal(err)
		}
	}
}

type runResult struct {
	st  *engine.State
	err error
}

// deploy starts a deploy of a in the background.
func (f *fleet) deploy(a *engine.Artifact) <-chan runResult {
	out := make(chan runResult, 1)
	go func() {
		st, err := f.eng.Deploy(context.WithoutCancel(f.t.Context()), owner, a, "test deploy "+a.ID)
		out <- runResult{st, err}
	}()
	return out
}

// rollback starts a rollback run to release to in the background.
func (f *fleet) rollback(to string) <-chan runResult {
	out := make(chan runResult, 1)
	go func() {
		st, err := f.eng.Rollback(context.WithoutCancel(f.t.Context()), owner, to, "test rollback "+to)
		out <- runResult{st, err}
	}()
	return out
}

// wait waits for a run to finish.
func (f *fleet) wait(ch <-chan runResult) *engine.State {
	f.t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			f.t.Fatalf("run: %v\nevents:\n%s", r.err, f.rec.dump())
		}
		if r.st != nil && r.st.Status == engine.StatusFinished {
			// The recorder reads the hub on its own goroutine: let it catch up.
			f.rec.waitFor(f.t, "the run's end", func(e engine.Event) bool {
				return e.Type == engine.EvRunFinished && e.Run == r.st.Run
			})
		}
		return r.st
	case <-time.After(90 * time.Second):
		f.t.Fatalf("run did not finish in 90s\nevents:\n%s", f.rec.dump())
	}
	return nil
}

// send hands a command to the active run.
func (f *fleet) send(c engine.Command) {
	f.t.Helper()
	if err := f.eng.Send(ctxT(f.t), c); err != nil {
		f.t.Fatalf("command %s: %v", c.Kind, err)
	}
}

// currents returns each host's current release as the host reports it.
func (f *fleet) currents() map[string]string {
	f.t.Helper()
	out := map[string]string{}
	for _, h := range f.hosts {
		st, err := h.Inspect(context.Background())
		if err != nil {
			f.t.Fatal(err)
		}
		out[h.Name()] = st.Current
	}
	return out
}

func (f *fleet) assertHostsOn(rel string) {
	f.t.Helper()
	for name, cur := range f.currents() {
		if cur != rel {
			f.t.Errorf("host %s: current is %q, want %q", name, cur, rel)
		}
	}
}

// routerState reads the router's state through its admin API.
func (f *fleet) routerState() engine.RouterState {
	f.t.Helper()
	st, err := f.rtr.State(ctxT(f.t))
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

// poolOf returns the backends of release rel in the router.
func (f *fleet) poolOf(rel string) []string {
	var out []string
	for _, b := range f.routerState().Backends {
		if b.Release == rel {
			out = append(out, b.Addr)
		}
	}
	return out
}

// load starts open-loop traffic through the router at rate requests/s,
// for at most max; it stops at the end of the test. header, when set, is
// sent with every request.
func (f *fleet) load(rate float64, max time.Duration, header map[string]string) *probe.Probe {
	f.t.Helper()
	// A generous timeout: on a loaded CI machine (-race, every package at
	// once) the whole process can stall for a second or two; a request that
	// waits through that is slow, not lost, and slowness is judged by p99.
	cfg := probe.Config{URL: f.proxyURL + "/", Rate: rate, Duration: max, Timeout: 5 * time.Second}
	if len(header) > 0 {
		cfg.Client = &http.Client{
			Transport: headerTransport{base: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 256}, header: header},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	p, err := probe.New(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := p.Start(context.WithoutCancel(f.t.Context())); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(p.Stop)
	return p
}

// headerTransport adds headers to every request.
type headerTransport struct {
	base   http.RoundTripper
	header map[string]string
}

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h.header {
		r.Header.Set(k, v)
	}
	return h.base.RoundTrip(r)
}

// hits sends n requests through the router with the given headers and
// counts the releases that answered (by X-Release; failures count as
// "status NNN" or "error").
func (f *fleet) hits(n int, header map[string]string) map[string]int {
	f.t.Helper()
	h := http.Header{}
	for k, v := range header {
		h.Set(k, v)
	}
	return testbackend.Hits(f.t, f.proxyURL+"/", n, h, "X-Release")
}

// recorder keeps every event the hub publishes.
type recorder struct {
	mu      sync.Mutex
	evs     []engine.Event
	lost    int
	changed chan struct{} // closed (and replaced) when events arrive
}

func newRecorder(t *testing.T, hub *engine.Hub) *recorder {
	rc := &recorder{changed: make(chan struct{})}
	sub := hub.Subscribe(1 << 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			evs, lost, err := sub.Next(ctx)
			if err != nil {
				return
			}
			rc.mu.Lock()
			rc.evs = append(rc.evs, evs...)
			rc.lost += lost
			close(rc.changed)
			rc.changed = make(chan struct{})
			rc.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done; sub.Close() })
	return rc
}

// since returns the events from index i on, and a channel closed when
// more arrive.
func (rc *recorder) since(i int) ([]engine.Event, <-chan struct{}) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if i > len(rc.evs) {
		i = len(rc.evs)
	}
	return append([]engine.Event(nil), rc.evs[i:]...), rc.changed
}

func (rc *recorder) events() []engine.Event {
	evs, _ := rc.since(0)
	return evs
}

// waitFor waits until an event matching pred was published and returns it.
func (rc *recorder) waitFor(t *testing.T, what string, pred func(engine.Event) bool) engine.Event {
	t.Helper()
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	for {
		evs, changed := rc.since(0)
		for _, e := range evs {
			if pred(e) {
				return e
			}
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s\nevents:\n%s", what, rc.dump())
		}
	}
}

// resumeWhenInconclusive plays the operator on a loaded machine: when the
// gate pauses the run as inconclusive (too few requests got through in a
// window), it resumes so that the step is measured again, at most max
// times. Inconclusive is never a pass, so no verdict changes; each resume
// is logged.
func (f *fleet) resumeWhenInconclusive(max int) {
	t := f.t
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		next, resumed := 0, 0
		for resumed < max {
			evs, changed := f.rec.since(next)
			next += len(evs)
			for _, e := range evs {
				if e.Type != engine.EvPaused || e.Actor != engine.AutoActor.Name || !strings.Contains(e.Message, "inconclusive") {
					continue
				}
				resumed++
				t.Logf("operator resumes after an inconclusive measurement: %s", e.Message)
				cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
				err := f.eng.Send(cctx, engine.Command{Kind: engine.CmdResume, Actor: operator, Reason: "measure again"})
				ccancel()
				if err != nil && ctx.Err() == nil {
					t.Logf("resume: %v", err)
				}
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			}
		}
	}()
}

func (rc *recorder) dump() string {
	var b strings.Builder
	for _, e := range rc.events() {
		if e.Type == engine.EvHostOutput {
			continue
		}
		fmt.Fprintf(&b, "  %s %s host=%s rel=%s", e.Type, e.Actor, e.Host, e.Release)
		if e.Phase != "" {
			fmt.Fprintf(&b, " phase=%s", e.Phase)
		}
		if e.Weight != nil {
			fmt.Fprintf(&b, " weight=%g", *e.Weight)
		}
		if e.Wave != 0 {
			fmt.Fprintf(&b, " wave=%d", e.Wave)
		}
		if e.Gate != nil {
			fmt.Fprintf(&b, " gate=%s (%s)", e.Gate.Verdict, e.Gate.Reason)
		}
		if m := e.Sample; m != nil {
			fmt.Fprintf(&b, " sample={requests %.1f errors %.1f rate %.4f p99 %s nodata %v}", m.Requests, m.Errors, m.ErrorRate, m.P99, m.NoData)
		}
		if e.Outcome != "" {
			fmt.Fprintf(&b, " outcome=%s", e.Outcome)
		}
		if e.Message != "" {
			fmt.Fprintf(&b, " msg=%q", e.Message)
		}
		if e.Error != "" {
			fmt.Fprintf(&b, " err=%q", e.Error)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// ofType filters events by type (and run, when run is set).
func ofType(evs []engine.Event, run string, types ...engine.EventType) []engine.Event {
	var out []engine.Event
	for _, e := range evs {
		if run != "" && e.Run != run {
			continue
		}
		for _, ty := range types {
			if e.Type == ty {
				out = append(out, e)
			}
		}
	}
	return out
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mkdir(t testing.TB, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t testing.TB, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

var errTimeout = errors.New("timed out")

// pollUntil polls cond every few milliseconds until it holds or d passes.
func pollUntil(d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return errTimeout
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}
