package nginx_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"flightdeck/engine"
	"flightdeck/internal/testbackend"
	"flightdeck/targets/nginx"
	"flightdeck/targets/nginx/nginxtest"
	"flightdeck/targets/router"
)

// lab is nginx in front of backends, and an adapter driving it.
type lab struct {
	t    *testing.T
	proc *nginx.Process
	rt   *nginx.Router
	be   map[string]*testbackend.Backend
	url  string
}

func newLab(t *testing.T, cohorts bool, names ...string) *lab {
	t.Helper()
	nginxtest.Require(t)
	l := &lab{t: t, be: map[string]*testbackend.Backend{}}
	s := nginx.Setup{Listen: freeAddr(t), Cohorts: cohorts}
	for _, n := range names {
		l.be[n] = testbackend.Start(t, n)
		s.Servers = append(s.Servers, l.be[n].Addr)
	}
	l.proc = nginxtest.Start(t, s)
	l.url = "http://" + s.Listen + "/"
	cfg := l.proc.Config("test")
	cfg.PollInterval = 10 * time.Millisecond
	rt, err := nginx.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	l.rt = rt
	return l
}

// draining reports whether the adapter's state has addr draining.
func (l *lab) draining(ctx context.Context, addr string) bool {
	l.t.Helper()
	st, err := l.rt.State(ctx)
	if err != nil {
		l.t.Fatal(err)
	}
	for _, b := range st.Backends {
		if b.Addr == addr {
			return b.Draining
		}
	}
	return false
}

func (l *lab) addr(names ...string) []string { return testbackend.Addrs(l.be, names...) }

func (l *lab) hits(n int, h http.Header) map[string]int {
	l.t.Helper()
	return testbackend.Hits(l.t, l.url, n, h, "X-Backend")
}

func (l *lab) upstreamFile() string {
	l.t.Helper()
	data, err := os.ReadFile(l.proc.Setup.UpstreamFile())
	if err != nil {
		l.t.Fatal(err)
	}
	return string(data)
}

func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestCanaryWeightsAndAccessLog writes a 5 % canary on one of four
// servers, checks the file, the split of real requests through nginx and
// the per-release counters read from the access log.
func TestCanaryWeightsAndAccessLog(t *testing.T) {
	l := newLab(t, false, "a", "b", "c", "d")
	c := ctx(t)
	must(t, l.rt.Check(c))
	before, err := l.rt.Stats(c) // the log's end: what came before is history
	must(t, err)
	must(t, l.rt.SetPool(c, "v1", l.addr("a", "b", "c")))
	must(t, l.rt.SetPool(c, "v2", l.addr("d")))
	must(t, l.rt.SetRoute(c, engine.Route{Stable: "v1", Candidate: "v2", Weight: 5}))
	file := l.upstreamFile()
	// 5 / (95/3) × 100 = 15.8
	for _, want := range []string{"upstream app {", "server " + l.be["a"].Addr + " weight=100; # v1", "server " + l.be["d"].Addr + " weight=16; # v2"} {
		if !strings.Contains(file, want) {
			t.Errorf("upstream file lacks %q:\n%s", want, file)
		}
	}
	l.be["d"].Delay.Store(int64(30 * time.Millisecond))
	l.be["d"].FailEvery.Store(4)
	n := 632 // two whole rounds of 100+100+100+16 per worker
	h := l.hits(n, nil)
	if h["d"] < 20 || h["d"] > 45 {
		t.Errorf("%d requests split %v; want about 5 %% (32) on d", n, h)
	}
	// nginx logs a request just after its response: read until the log
	// holds every request sent.
	served := l.be["d"].Hits.Load()
	var after map[string]engine.ReleaseStats
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		after, err = l.rt.Stats(c)
		must(t, err)
		if after["v1"].Requests+after["v2"].Requests-before["v1"].Requests-before["v2"].Requests >= uint64(n) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	m := router.Diff("v2", before["v2"], after["v2"])
	if int64(m.Requests) != served || int64(m.Errors) != served/4 {
		t.Errorf("v2 measured from the access log %+v; d served %d, every 4th a 500", m, served)
	}
	if m.P99 < 30*time.Millisecond || m.P99 > time.Second {
		t.Errorf("v2 p99 %s; every request took 30 ms or more", m.P99)
	}
	if v1 := router.Diff("v1", before["v1"], after["v1"]); int(v1.Requests) != h["a"]+h["b"]+h["c"] || v1.Errors != 0 {
		t.Errorf("v1 measured %+v; want %d requests, no error", v1, h["a"]+h["b"]+h["c"])
	}
	// Per server: the same counters by address (the cockpit's per-host figures).
	byAddr, err := l.rt.BackendStats(c)
	must(t, err)
	if d := byAddr[l.be["d"].Addr]; int64(d.Requests-before["v2"].Requests) != served || int64(d.Status5xx) < served/4 {
		t.Errorf("server d counted %+v; it served %d, every 4th a 500", d, served)
	}
	if a := byAddr[l.be["a"].Addr]; int(a.Requests) < h["a"] || a.Status5xx != 0 {
		t.Errorf("server a counted %d requests (%d 5xx); it served %d, no error", a.Requests, a.Status5xx, h["a"])
	}
	// A new adapter reads the routing state back from the file.
	again, err := nginx.New(l.proc.Config("test"))
	must(t, err)
	st, err := again.State(c)
	must(t, err)
	if st.Route.Candidate != "v2" || st.Route.Weight != 5 || len(st.Backends) != 4 {
		t.Errorf("state read back: %+v", st)
	}
}

// TestRejectedConfig: a change nginx -t refuses leaves the previous file
// in place, nginx not reloaded (same workers, same routing) and an error
// carrying nginx's own message.
func TestRejectedConfig(t *testing.T) {
	l := newLab(t, false, "a", "b")
	c := ctx(t)
	must(t, l.rt.SetPool(c, "v1", l.addr("a", "b")))
	must(t, l.rt.SetRoute(c, engine.Route{Stable: "v1"}))
	prev := l.upstreamFile()
	pid, err := os.ReadFile(l.proc.Setup.PIDFile())
	must(t, err)
	err = l.rt.SetPool(c, "v2", []string{"no-such-host.invalid:8080"})
	var rej *nginx.RejectedError
	if !errors.As(err, &rej) || !strings.Contains(err.Error(), `host not found in upstream "no-such-host.invalid:8080"`) ||
		!strings.Contains(err.Error(), "the previous upstream file is back and nginx was not reloaded") ||
		!strings.Contains(err.Error(), "failed: exit status 1") {
		t.Fatalf("SetPool with an unresolvable server = %v; want nginx's message and its exit status", err)
	}
	if got := l.upstreamFile(); got != prev {
		t.Errorf("the upstream file changed:\n%s\nwant the previous one:\n%s", got, prev)
	}
	if h := l.hits(20, nil); h["a"]+h["b"] != 20 {
		t.Errorf("after the refused change: %v; want a and b serving", h)
	}
	st, err := l.rt.State(c)
	must(t, err)
	if len(st.Backends) != 2 || st.Route.Stable != "v1" {
		t.Errorf("state after the refused change: %+v", st)
	}
	if pid2, _ := os.ReadFile(l.proc.Setup.PIDFile()); string(pid2) != string(pid) {
		t.Errorf("nginx's master changed: %s → %s", pid, pid2)
	}
}

// TestDrainWaitsForInFlight drains a server with a request in flight:
// the reload marks it down at once, Drain returns once the old workers
// finished that request, and Undrain waits for the server's health.
func TestDrainWaitsForInFlight(t *testing.T) {
	l := newLab(t, false, "a", "b")
	c := ctx(t)
	must(t, l.rt.SetPool(c, "v1", l.addr("a", "b")))
	must(t, l.rt.SetRoute(c, engine.Route{Stable: "v1"}))
	slow := make(chan error, 8)
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}}
	for {
		go func() {
			resp, err := hc.Get(l.url + "slow")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = errors.New(resp.Status)
				}
			}
			slow <- err
		}()
		select {
		case <-l.be["a"].InSlow:
		case <-l.be["b"].InSlow:
			l.be["b"].Unblock()
			must(t, <-slow)
			continue
		}
		break
	}
	drained := make(chan error, 1)
	go func() { drained <- l.rt.Drain(c, l.be["a"].Addr, 20*time.Second) }()
	// The reload takes effect while Drain runs: the adapter's state says
	// a is draining once nginx runs workers of the new configuration and
	// the old ones stopped accepting (ten answers from b did not prove it:
	// for a moment after a reload the old workers still accept).
	deadline := time.Now().Add(20 * time.Second)
	for !l.draining(c, l.be["a"].Addr) {
		if time.Now().After(deadline) {
			t.Fatalf("a is not draining after 20s:\n%s", l.upstreamFile())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Requests after the reload go to b only; the drain still waits for
	// the old worker holding a's request.
	if h := l.hits(20, nil); h["b"] != 20 {
		t.Errorf("during the drain: %v; want all 20 on b", h)
	}
	select {
	case err := <-drained:
		t.Fatalf("Drain returned (%v) with a request in flight", err)
	default:
	}
	l.be["a"].Unblock()
	select {
	case err := <-drained:
		must(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("Drain did not return after the request finished")
	}
	if err := <-slow; err != nil {
		t.Errorf("the request in flight during the drain failed: %v", err)
	}
	l.be["a"].Ready.Store(false)
	uctx, cancel := context.WithTimeout(c, 300*time.Millisecond)
	err := l.rt.Undrain(uctx, l.be["a"].Addr)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(l.upstreamFile(), "server "+l.be["a"].Addr+" down;") {
		t.Errorf("Undrain of an unhealthy server = %v; want it kept down", err)
	}
	l.be["a"].Ready.Store(true)
	must(t, l.rt.Undrain(c, l.be["a"].Addr))
	must(t, l.rt.WaitHealthy(c, l.be["a"].Addr))
	if h := l.hits(20, nil); h["a"] == 0 || h["b"] == 0 {
		t.Errorf("after the undrain: %v; want both", h)
	}
}

// TestCohortMapFile routes an exact-value cohort to the new release
// through the map file, then drops it.
func TestCohortMapFile(t *testing.T) {
	l := newLab(t, true, "blue", "green")
	c := ctx(t)
	must(t, l.rt.SetPool(c, "v1", l.addr("blue")))
	must(t, l.rt.SetPool(c, "v2", l.addr("green")))
	must(t, l.rt.SetRoute(c, engine.Route{Stable: "v1"}))
	must(t, l.rt.SetCohorts(c, []engine.CohortRule{{Release: "v2", Header: "X-Beta", Value: "on"}}))
	beta := http.Header{"X-Beta": {"on"}}
	if h := l.hits(30, beta); h["green"] != 30 {
		t.Errorf("cohort requests: %v; want all on green (v2)", h)
	}
	if h := l.hits(30, nil); h["blue"] != 30 {
		t.Errorf("other requests: %v; want all on blue (v1)", h)
	}
	must(t, l.rt.SetCohorts(c, []engine.CohortRule{{Release: "v2", Header: "X-User", Percent: 50}}))
	users := map[string]int{}
	for _, u := range []string{"ann", "bob", "cyd", "dan", "eve", "fay", "gus", "hal", "ivy", "jon"} {
		h := l.hits(3, http.Header{"X-User": {u}})
		if len(h) != 1 {
			t.Errorf("user %s answered by %v; want one release", u, h)
		}
		for k := range h {
			users[k]++
		}
	}
	if users["green"] == 0 || users["blue"] == 0 {
		t.Errorf("a 50 %% cohort of 10 users split %v; want some on each", users)
	}
	must(t, l.rt.SetCohorts(c, nil))
	if h := l.hits(30, beta); h["blue"] != 30 {
		t.Errorf("after the cohort was dropped: %v; want all on blue", h)
	}
	data, _ := os.ReadFile(l.proc.Setup.MapFile())
	if !slices.Contains(strings.Fields(string(data)), "default") || strings.Contains(string(data), "cohort;") {
		t.Errorf("map file without cohorts:\n%s", data)
	}
}
