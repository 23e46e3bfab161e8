package haproxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"flightdeck/engine"
	"flightdeck/internal/testbackend"
	"flightdeck/targets/haproxy"
	"flightdeck/targets/haproxy/haproxytest"
	"flightdeck/targets/pools"
	"flightdeck/targets/router"
)

// lab is HAProxy in front of backends, and an adapter driving it.
type lab struct {
	t    *testing.T
	proc *haproxy.Process
	rt   *haproxy.Router
	be   map[string]*testbackend.Backend // by name
	url  string
}

type labOpts struct {
	names    []string
	disabled []string // start in maintenance
	cohort   bool     // cohort backend on header X-Beta
	// checkEvery is HAProxy's health check interval (default 100 ms).
	checkEvery time.Duration
}

func newLab(t *testing.T, o labOpts) *lab {
	t.Helper()
	haproxytest.Require(t)
	l := &lab{t: t, be: map[string]*testbackend.Backend{}}
	s := haproxy.Setup{Listen: freeAddr(t), CheckInterval: o.checkEvery}
	if o.cohort {
		s.CohortHeader = "X-Beta"
	}
	for _, n := range o.names {
		b := testbackend.Start(t, n)
		l.be[n] = b
		s.Servers = append(s.Servers, haproxy.SetupServer{Name: n, Addr: b.Addr, Disabled: slices.Contains(o.disabled, n)})
	}
	l.proc = haproxytest.Start(t, s)
	l.url = "http://" + s.Listen
	cfg := haproxy.Config{Socket: l.proc.Setup.Socket(), Backend: "app", LogRing: haproxy.RingName,
		StateFile: filepath.Join(t.TempDir(), "haproxy-state.json"), PollInterval: 10 * time.Millisecond}
	if o.cohort {
		cfg.CohortBackend, cfg.CohortMap = "app_cohort", l.proc.Setup.Map()
	}
	rt, err := haproxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	l.rt = rt
	return l
}

func (l *lab) addr(names ...string) []string { return testbackend.Addrs(l.be, names...) }

// hits sends n requests (with header h, when set) and counts who answered.
func (l *lab) hits(n int, h http.Header) map[string]int {
	l.t.Helper()
	return testbackend.Hits(l.t, l.url+"/", n, h, "X-Backend")
}

// servers reads the servers of backend be: name → (weight, admin state bits).
func (l *lab) servers(be string) map[string][2]int {
	l.t.Helper()
	a, err := l.rt.Runtime().Do(ctx(l.t), "show servers state "+be)
	if err != nil {
		l.t.Fatal(err)
	}
	out := map[string][2]int{}
	for _, line := range strings.Split(a[0], "\n")[2:] {
		f := strings.Fields(line)
		var w, adm int
		fmt.Sscan(f[7], &w)
		fmt.Sscan(f[6], &adm)
		out[f[3]] = [2]int{w, adm}
	}
	return out
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestCanaryWeights sets a 5 % canary on one of four servers and checks
// the weights HAProxy reports, the split of real requests, and the
// per-release counters and latency the gate reads.
func TestCanaryWeights(t *testing.T) {
	l := newLab(t, labOpts{names: []string{"a", "b", "c", "d"}})
	c := ctx(t)
	addrs := map[string]string{}
	for n, b := range l.be {
		addrs[b.Addr] = "host " + n
	}
	must(t, l.rt.Check(c, addrs))
	must(t, l.rt.SetPool(c, "v1", l.addr("a", "b", "c")))
	must(t, l.rt.SetPool(c, "v2", l.addr("d")))
	must(t, l.rt.SetRoute(c, engine.Route{Stable: "v1", Candidate: "v2", Weight: 5}))
	for _, a := range l.addr("a", "b", "c", "d") {
		must(t, l.rt.WaitHealthy(c, a))
	}
	got := l.servers("app")
	// 5 % on d against 95 % over three: 5 / (95/3) × 256 = 40.4.
	for n, w := range map[string]int{"a": 256, "b": 256, "c": 256, "d": 40} {
		if got[n][0] != w || got[n][1]&0x3b != 0 {
			t.Errorf("server %s: weight %d admin %#x, want weight %d, ready", n, got[n][0], got[n][1], w)
		}
	}
	before, err := l.rt.Stats(c)
	must(t, err)
	l.be["d"].Delay.Store(int64(30 * time.Millisecond))
	l.be["d"].FailEvery.Store(4)
	n := 808 // whole rounds of the weights 256+256+256+40
	h := l.hits(n, nil)
	if h["d"] < 30 || h["d"] > 50 || h["a"]+h["b"]+h["c"]+h["d"] != n-h["status 500"] {
		t.Errorf("%d requests split %v; want about 40 on d (5 %%)", n, h)
	}
	// The ring delivers the log lines a moment after the responses.
	var m engine.Measurement
	deadline := time.Now().Add(10 * time.Second)
	for {
		after, err := l.rt.Stats(c)
		must(t, err)
		m = router.Diff("v2", before["v2"], after["v2"])
		var seen uint64
		for _, k := range after["v2"].Latency.Counts {
			seen += k
		}
		if seen >= uint64(m.Requests) || time.Now().After(deadline) {
			v1 := router.Diff("v1", before["v1"], after["v1"])
			if int(v1.Requests) != h["a"]+h["b"]+h["c"] || v1.Errors != 0 {
				t.Errorf("v1 measured %+v; want %d requests, no error", v1, h["a"]+h["b"]+h["c"])
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if int(m.Requests) != int(l.be["d"].Hits.Load()) || int(m.Errors) != int(l.be["d"].Hits.Load())/4 {
		t.Errorf("v2 measured %+v; d served %d requests, every 4th a 500", m, l.be["d"].Hits.Load())
	}
	if m.P99 < 30*time.Millisecond || m.P99 > time.Second {
		t.Errorf("v2 p99 %s; every request took 30 ms or more", m.P99)
	}
	// Per server: the same counters by address (the cockpit's per-host figures).
	byAddr, err := l.rt.BackendStats(c)
	must(t, err)
	for _, n := range []string{"a", "d"} {
		got := byAddr[l.be[n].Addr]
		if int64(got.Requests) < l.be[n].Hits.Load() || got.Requests == 0 {
			t.Errorf("server %s: %d requests counted, it served %d", n, got.Requests, l.be[n].Hits.Load())
		}
	}
	if d := byAddr[l.be["d"].Addr]; int64(d.Status5xx) < l.be["d"].Hits.Load()/4 || byAddr[l.be["a"].Addr].Status5xx != 0 {
		t.Errorf("5xx by server: a %d, d %d; want 0 and every 4th of d's", byAddr[l.be["a"].Addr].Status5xx, d.Status5xx)
	}
}

// TestDrainWaitsForSessions drains a server with a request in flight:
// Drain returns once it finished, no new request reaches the server, and
// Undrain brings it back only after a fresh health check.
func TestDrainWaitsForSessions(t *testing.T) {
	l := newLab(t, labOpts{names: []string{"a", "b"}})
	c := ctx(t)
	must(t, l.rt.SetPool(c, "v1", l.addr("a", "b")))
	must(t, l.rt.SetRoute(c, engine.Route{Stable: "v1"}))
	for _, a := range l.addr("a", "b") {
		must(t, l.rt.WaitHealthy(c, a))
	}
	// Park one slow request on a (round robin: try until a holds one).
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}}
	var wg sync.WaitGroup
	slowDone := make(chan error, 4)
	for {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := hc.Get(l.url + "/slow")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			slowDone <- err
		}()
		select {
		case <-l.be["a"].InSlow:
		case <-l.be["b"].InSlow:
			l.be["b"].Unblock()
			continue
		}
		break
	}
	drained := make(chan error, 1)
	go func() { drained <- l.rt.Drain(c, l.be["a"].Addr, 10*time.Second) }()
	// While the request is in flight, a is drained: everything goes to b.
	deadline := time.Now().Add(10 * time.Second)
	for l.servers("app")["a"][1]&0x08 == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a never went to drain")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-drained:
		t.Fatalf("Drain returned (%v) with a request in flight", err)
	default:
	}
	if h := l.hits(20, nil); h["b"] != 20 {
		t.Errorf("during the drain: %v; want all 20 on b", h)
	}
	l.be["a"].Unblock()
	select {
	case err := <-drained:
		must(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Drain did not return after the request finished")
	}
	wg.Wait()
	for range cap(slowDone) {
		select {
		case err := <-slowDone:
			if err != nil {
				t.Errorf("a request in flight during the drain failed: %v", err)
			}
		default:
		}
	}
	// Undrain while a's health check fails: it must stay out.
	l.be["a"].Ready.Store(false)
	must(t, l.rt.Undrain(c, l.be["a"].Addr))
	wctx, cancel := context.WithTimeout(c, 500*time.Millisecond)
	err := l.rt.WaitHealthy(wctx, l.be["a"].Addr)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitHealthy of a failing server = %v, want the deadline", err)
	}
	if h := l.hits(20, nil); h["b"] != 20 {
		t.Errorf("undrained but unhealthy a got traffic: %v", h)
	}
	l.be["a"].Ready.Store(true)
	must(t, l.rt.WaitHealthy(c, l.be["a"].Addr))
	if h := l.hits(20, nil); h["a"] == 0 || h["b"] == 0 {
		t.Errorf("after the undrain: %v; want both", h)
	}
	// A drain that times out says so and leaves the server drained.
	hold := make(chan error, 1)
	go func() {
		resp, err := hc.Get(l.url + "/slow")
		if err == nil {
			resp.Body.Close()
		}
		hold <- err
	}()
	var busy string
	select {
	case <-l.be["a"].InSlow:
		busy = "a"
	case <-l.be["b"].InSlow:
		busy = "b"
	}
	err = l.rt.Drain(c, l.be[busy].Addr, 200*time.Millisecond)
	if !errors.Is(err, router.ErrDrainTimeout) {
		t.Errorf("Drain past its timeout = %v, want ErrDrainTimeout", err)
	}
	l.be[busy].Unblock()
	<-hold
}

// TestFromMaintWaitsForCheck: a server that joins a pool from
// maintenance (an idle slot) takes no traffic until its check passed.
func TestFromMaintWaitsForCheck(t *testing.T) {
	l := newLab(t, labOpts{names: []string{"blue", "green"}, disabled: []string{"green"}})
	c := ctx(t)
	must(t, l.rt.SetPool(c, "v1", l.addr("blue")))
	must(t, l.rt.SetRoute(c, engine.Route{Stable: "v1"}))
	if got := l.servers("app")["green"]; got[1]&0x01 == 0 {
		t.Fatalf("green (in no pool) admin %#x, want maintenance", got[1])
	}
	l.be["green"].Ready.Store(false)
	must(t, l.rt.SetPool(c, "v2", l.addr("green")))
	must(t, l.rt.SetRoute(c, engine.Route{Stable: "v1", Candidate: "v2", Weight: 100}))
	wctx, cancel := context.WithTimeout(c, 400*time.Millisecond)
	err := l.rt.WaitHealthy(wctx, l.be["green"].Addr)
	cancel()
	if err == nil {
		t.Fatal("green counted healthy while its check fails")
	}
	// The route says 100 % to v2, but v2 has no server up: v1 serves.
	if h := l.hits(20, nil); h["blue"] != 20 {
		t.Errorf("with green failing its check: %v; want all on blue", h)
	}
	l.be["green"].Ready.Store(true)
	must(t, l.rt.WaitHealthy(c, l.be["green"].Addr))
	if h := l.hits(20, nil); h["green"] != 20 {
		t.Errorf("after green passed its check: %v; want all on green", h)
	}
	st, err := l.rt.State(c)
	must(t, err)
	for _, b := range st.Backends {
		if !b.Healthy || b.Draining {
			t.Errorf("state of %s: %+v", b.Addr, b)
		}
	}
}

// TestReloadReapplies reloads HAProxy under the adapter: the weights it
// set are gone until Watch puts them back and says so.
func TestReloadReapplies(t *testing.T) {
	l := newLab(t, labOpts{names: []string{"a", "b"}})
	c := ctx(t)
	must(t, l.rt.SetPool(c, "v1", l.addr("a")))
	must(t, l.rt.SetPool(c, "v2", l.addr("b")))
	must(t, l.rt.SetRoute(c, engine.Route{Stable: "v1", Candidate: "v2", Weight: 25}))
	must(t, l.rt.WaitHealthy(c, l.be["b"].Addr))
	want := map[string]int{"a": 256, "b": 85}
	if got := l.servers("app"); got["a"][0] != want["a"] || got["b"][0] != want["b"] {
		t.Fatalf("weights %v, want %v", got, want)
	}
	l.rt.Notices() // b's first health check may have been noticed
	must(t, l.proc.Reload(c))
	if got := l.servers("app"); got["b"][0] != 1 {
		t.Fatalf("after the reload b has weight %d; the test expects HAProxy to forget it (config weight 1)", got["b"][0])
	}
	notes := make(chan string, 4)
	wctx, cancel := context.WithCancel(c)
	done := make(chan struct{})
	go func() { defer close(done); l.rt.Watch(wctx, func(m string) { notes <- m }) }()
	defer func() { cancel(); <-done }()
	select {
	case n := <-notes:
		if !strings.Contains(n, "restarted or reloaded") || !strings.Contains(n, "v2 at 25%") {
			t.Errorf("notice %q does not say what was re-applied", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no notice after the reload")
	}
	if got := l.servers("app"); got["a"][0] != want["a"] || got["b"][0] != want["b"] {
		t.Errorf("after Watch re-applied: %v, want %v", got, want)
	}
}

// TestCohortMap routes an exact-value cohort to the new release through
// the cohort backend, then a percent cohort, then drops them. Health
// checks a second apart: the cohort's server leaves maintenance in the
// cohort backend with SetCohorts, and the cohort must not be sent there
// (503) before its first check there passed.
func TestCohortMap(t *testing.T) {
	l := newLab(t, labOpts{names: []string{"blue", "green"}, cohort: true, checkEvery: time.Second})
	c := ctx(t)
	must(t, l.rt.SetPool(c, "v1", l.addr("blue")))
	must(t, l.rt.SetPool(c, "v2", l.addr("green")))
	must(t, l.rt.SetRoute(c, engine.Route{Stable: "v1"}))
	for _, a := range l.addr("blue", "green") {
		must(t, l.rt.WaitHealthy(c, a))
	}
	must(t, l.rt.SetCohorts(c, []engine.CohortRule{{Release: "v2", Header: "X-Beta", Value: "on"}}))
	beta := http.Header{"X-Beta": {"on"}}
	if h := l.hits(30, beta); h["green"] != 30 {
		t.Errorf("cohort requests: %v; want all 30 on green (v2)", h)
	}
	if h := l.hits(30, http.Header{"X-Beta": {"off"}}); h["blue"] != 30 {
		t.Errorf("other requests: %v; want all 30 on blue (v1)", h)
	}
	must(t, l.rt.SetCohorts(c, []engine.CohortRule{{Release: "v2", Header: "X-Beta", Percent: 10}}))
	a, err := l.rt.Runtime().Do(c, "show map "+l.proc.Setup.Map())
	must(t, err)
	if n := len(strings.Split(strings.TrimSpace(a[0]), "\n")); n != 10 {
		t.Errorf("a 10 %% cohort wrote %d map entries, want 10 buckets:\n%s", n, a[0])
	}
	must(t, l.rt.SetCohorts(c, nil))
	if a, _ := l.rt.Runtime().Do(c, "show map "+l.proc.Setup.Map()); strings.TrimSpace(a[0]) != "" {
		t.Errorf("cohorts dropped but the map holds:\n%s", a[0])
	}
	if h := l.hits(30, beta); h["blue"] != 30 {
		t.Errorf("after the cohort was dropped: %v; want all on blue", h)
	}
	if err := l.rt.SetCohorts(c, []engine.CohortRule{{Release: "v2", Header: "X-Beta", Value: "1"}, {Release: "v3", Header: "X-Beta", Value: "2"}}); err == nil {
		t.Error("rules for two releases accepted; one cohort backend cannot serve them")
	}
}

// TestCheckAndFaults: Check names what the plan names and HAProxy lacks;
// a missing socket is ErrUnreachable and changes nothing.
func TestCheckAndFaults(t *testing.T) {
	l := newLab(t, labOpts{names: []string{"a"}})
	c := ctx(t)
	err := l.rt.Check(c, map[string]string{l.be["a"].Addr: "host web-1", "127.0.0.1:1": "host web-2"})
	var ce *haproxy.ConfigError
	if !errors.As(err, &ce) || len(ce.Problems) != 1 ||
		!strings.Contains(ce.Problems[0], "host web-2 names 127.0.0.1:1, which is not a server of HAProxy backend app (it has: a "+l.be["a"].Addr+")") {
		t.Errorf("Check = %v; want one problem naming host web-2, its address and backend app", err)
	}
	stateFile := filepath.Join(t.TempDir(), "s.json")
	gone, err := haproxy.New(haproxy.Config{Socket: filepath.Join(t.TempDir(), "none.sock"), Backend: "app", StateFile: stateFile})
	must(t, err)
	if err := gone.Check(c, nil); !errors.Is(err, haproxy.ErrUnreachable) {
		t.Errorf("Check on a missing socket = %v, want ErrUnreachable", err)
	}
	if err := gone.SetRoute(c, engine.Route{Stable: "v1"}); !errors.Is(err, haproxy.ErrUnreachable) {
		t.Errorf("SetRoute on a missing socket = %v, want ErrUnreachable", err)
	}
	if st, err := pools.Load(stateFile); err != nil || st.Route.Stable != "" {
		t.Errorf("state after a failed change: %+v, %v", st, err)
	}
}
