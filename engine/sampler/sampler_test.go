package sampler_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"flightdeck/engine"
	"flightdeck/engine/plan"
	"flightdeck/engine/sampler"
	"flightdeck/targets/prom"
	"flightdeck/targets/prom/promtest"
	"flightdeck/targets/router"
)

// backend is an HTTP server answering status (and 200 on its health path).
func backend(t *testing.T, status int) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == router.DefaultHealthPath {
			return
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// startRouter starts a built-in router and returns its proxy URL and an
// admin client.
func startRouter(t *testing.T) (string, *router.Client) {
	url, cl, _ := startRouterAdmin(t)
	return url, cl
}

// startRouterAdmin is startRouter that also returns the admin address
// (which serves /metrics).
func startRouterAdmin(t *testing.T) (string, *router.Client, string) {
	t.Helper()
	dir := t.TempDir()
	rt, err := router.New(router.Config{StateFile: filepath.Join(dir, "state.json"), HealthInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	al, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rt.Start(pl, al)
	t.Cleanup(func() { rt.Close() })
	cl, err := router.NewClient("http://"+al.Addr().String(), rt.Token())
	if err != nil {
		t.Fatal(err)
	}
	return "http://" + pl.Addr().String() + "/", cl, al.Addr().String()
}

func setPool(t *testing.T, cl *router.Client, rel string, addrs ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.SetPool(ctx, rel, addrs); err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if err := cl.WaitHealthy(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
}

// send makes n requests through the proxy.
func send(t *testing.T, url string, n int) {
	t.Helper()
	for range n {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestSamplerPerReleaseAndPerHost(t *testing.T) {
	url, cl := startRouter(t)
	v1a, v1b, v2 := backend(t, 200), backend(t, 200), backend(t, 500)
	setPool(t, cl, "v1", v1a, v1b)
	setPool(t, cl, "v2", v2)
	ctx := context.Background()
	if err := cl.SetRoute(ctx, engine.Route{Stable: "v1"}); err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	s := sampler.New(sampler.Config{Counters: cl, Source: "router", Now: clk.now,
		Hosts: map[string][]string{"web-1": {v1a}, "web-2": {v1b}, "web-3": {v2}}})
	if err := s.Sample(ctx); err != nil { // the baseline
		t.Fatal(err)
	}
	if sn := s.Snapshot(); len(sn.Times) != 0 || sn.Version != 1 {
		t.Fatalf("after the baseline: %d times, version %d; want 0, 1", len(sn.Times), sn.Version)
	}
	send(t, url, 40)
	if err := cl.SetRoute(ctx, engine.Route{Stable: "v1", Candidate: "v2", Weight: 100}); err != nil {
		t.Fatal(err)
	}
	send(t, url, 10)
	clk.add(2 * time.Second)
	if err := s.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	sn := s.Snapshot()
	if len(sn.Times) != 1 || len(sn.Series) != 2 {
		t.Fatalf("one sample: %d times, %d series (%+v); want 1, 2", len(sn.Times), len(sn.Series), sn.Series)
	}
	for _, tt := range []struct {
		rel      string
		rps, err float64
	}{{"v1", 20, 0}, {"v2", 5, 1}} {
		p, ok := sn.Find(tt.rel).Last()
		if !ok || p.RPS != tt.rps || p.ErrorRate != tt.err || p.P99 <= 0 {
			t.Errorf("%s: %+v (data %v); want %v req/s, error rate %v, a p99", tt.rel, p, ok, tt.rps, tt.err)
		}
	}
	// Per host: the two v1 hosts share 40 requests over 2 s (round robin).
	h1, h2, h3 := sn.Hosts["web-1"], sn.Hosts["web-2"], sn.Hosts["web-3"]
	if h1.RPS+h2.RPS != 20 || h1.RPS == 0 || h2.RPS == 0 || h1.ErrorRate != 0 || h3.RPS != 5 || h3.ErrorRate != 1 {
		t.Errorf("hosts: %+v; want web-1+web-2 = 20 req/s without errors, web-3 5 req/s all errors", sn.Hosts)
	}
	// No traffic: the sampler keeps sampling, with points that have no data.
	clk.add(time.Second)
	if err := s.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	sn2 := s.Snapshot()
	if len(sn2.Times) != 2 || !sn2.Find("v1").Points[1].NoData || sn2.Version != sn.Version+1 {
		t.Errorf("idle sample: %d times, v1 %+v, version %d", len(sn2.Times), sn2.Find("v1").Points, sn2.Version)
	}
	if len(sn.Times) != 1 || len(sn.Find("v1").Points) != 1 {
		t.Errorf("a published snapshot changed: %d times", len(sn.Times))
	}
}

// A symlink fleet is one pool whose hosts switch release: Attribute splits
// it per release.
func TestSamplerAttribute(t *testing.T) {
	url, cl := startRouter(t)
	a, b := backend(t, 200), backend(t, 503)
	setPool(t, cl, "fleet", a, b)
	ctx := context.Background()
	if err := cl.SetRoute(ctx, engine.Route{Stable: "fleet"}); err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	attr := map[string]string{a: "v1", b: "v1"}
	s := sampler.New(sampler.Config{Counters: cl, Now: clk.now, Attribute: func() map[string]string { return attr }})
	if err := s.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	send(t, url, 20)
	clk.add(time.Second)
	if err := s.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	attr = map[string]string{a: "v1", b: "v2"} // b switched
	send(t, url, 20)
	clk.add(time.Second)
	if err := s.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	sn := s.Snapshot()
	if sn.Find("fleet") != nil {
		t.Errorf("the pool's name is a series: %+v", sn.Series)
	}
	v1, v2 := sn.Find("v1"), sn.Find("v2")
	if v1 == nil || v2 == nil || len(v1.Points) != 2 || len(v2.Points) != 2 {
		t.Fatalf("series: %+v", sn.Series)
	}
	if p := v1.Points[0]; p.RPS != 20 || p.ErrorRate != 0.5 {
		t.Errorf("v1 before the switch: %+v; want 20 req/s, half errors", p)
	}
	if !v2.Points[0].NoData || v2.Points[1].RPS != 10 || v2.Points[1].ErrorRate != 1 || v1.Points[1].RPS != 10 || v1.Points[1].ErrorRate != 0 {
		t.Errorf("after the switch: v1 %+v, v2 %+v; want 10 req/s each, v2 all errors", v1.Points, v2.Points)
	}
}

// fixed is an Instant source (a stand-in for Prometheus' answers in a unit
// test of the ring; Prometheus itself is tested in targets/prom).
type fixed map[string]engine.Measurement

func (f fixed) MeasureNow(_ context.Context, rel string, _ time.Duration) (engine.Measurement, error) {
	return f[rel], nil
}

func TestSamplerKeepsWindow(t *testing.T) {
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	src := fixed{"v1": {Requests: 100, ErrorRate: 0.01, P99: 30 * time.Millisecond}}
	s := sampler.New(sampler.Config{Instant: src, Window: 10 * time.Second, Keep: 5, Now: clk.now,
		Releases: func() []string { return []string{"v1", "v2"} }})
	var snaps []*sampler.Snapshot
	for range 12 {
		clk.add(time.Second)
		changed := s.Changed()
		select {
		case <-changed:
			t.Fatal("Changed is closed before a sample")
		default:
		}
		if err := s.Sample(context.Background()); err != nil {
			t.Fatal(err)
		}
		select {
		case <-changed:
		default:
			t.Fatal("Changed is not closed by a sample")
		}
		snaps = append(snaps, s.Snapshot())
	}
	last := snaps[len(snaps)-1]
	if len(last.Times) != 5 || !last.Times[4].Equal(clk.now()) || len(last.Series) != 1 {
		t.Fatalf("times %v, series %+v; want the last 5 times, only v1 (v2 never had data)", last.Times, last.Series)
	}
	if p := last.Series[0].Points[4]; p.RPS != 10 || p.ErrorRate != 0.01 {
		t.Errorf("point %+v; want 10 req/s (100 over 10 s)", p)
	}
	for i, sn := range snaps {
		if want := min(i+1, 5); len(sn.Times) != want || !sn.Times[want-1].Equal(time.Unix(1_700_000_000+int64(i)+1, 0)) {
			t.Errorf("snapshot %d changed after it was published: %v", i, sn.Times)
		}
	}
}

// TestSamplerPrometheus: with the gate reading Prometheus, the sampler
// asks a real Prometheus (scraping a real router) each second for the
// window just past: per release, requests/s and error rate.
func TestSamplerPrometheus(t *testing.T) {
	url, cl, admin := startRouterAdmin(t)
	srv := promtest.Start(t, 100*time.Millisecond, admin)
	srv.WaitUp(t, 1)
	good, bad := backend(t, 200), backend(t, 500)
	setPool(t, cl, "v1", good)
	setPool(t, cl, "v2", bad)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := cl.SetRoute(ctx, engine.Route{Stable: "v1", Candidate: "v2", Weight: 50}); err != nil {
		t.Fatal(err)
	}
	src, err := prom.New(&plan.Prometheus{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	// Traffic all along.
	tctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for tctx.Err() == nil {
			if resp, err := http.Get(url); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			time.Sleep(5 * time.Millisecond) // the traffic's pace
		}
	}()
	defer func() { stop(); <-done }()
	s := sampler.New(sampler.Config{Instant: src, Source: "prometheus", Window: time.Second,
		Releases: func() []string { return []string{"v1", "v2"} }})
	for {
		if err := s.Sample(ctx); err != nil {
			t.Fatal(err)
		}
		sn := s.Snapshot()
		v1, v2 := sn.Find("v1"), sn.Find("v2")
		if v1 != nil && v2 != nil {
			p1, ok1 := v1.Last()
			p2, ok2 := v2.Last()
			if ok1 && ok2 && p1.RPS > 0 && p2.RPS > 0 {
				if p1.ErrorRate != 0 || p2.ErrorRate < 0.99 || sn.Source != "prometheus" {
					t.Fatalf("v1 %+v, v2 %+v; want v1 without errors, v2 all errors", p1, p2)
				}
				return
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("no data from Prometheus: %+v\n%s", sn, srv.Log())
		}
		time.Sleep(200 * time.Millisecond) // the next sample's pace
	}
}
