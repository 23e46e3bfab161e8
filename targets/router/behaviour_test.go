package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"flightdeck/engine"
)

func TestHealthGatesRotation(t *testing.T) {
	good, starting := startBackend(t, "good"), startBackend(t, "starting")
	starting.health.Store(http.StatusServiceUnavailable)
	tr := startRouter(t, testConfig(t))
	tr.setup(t, map[string][]*testBackend{"blue": {good, starting}}, engine.Route{Stable: "blue"})

	// Several health intervals pass while "starting" answers 503.
	for i := range 60 {
		if code, body := get(t, http.DefaultClient, tr.proxyURL+"/", nil); code != 200 || body != "good" {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
	if n := starting.hits.Load(); n != 0 {
		t.Fatalf("a backend answering 503 on its health check got %d requests", n)
	}
	if backendStatus(t, tr.r, starting.addr).Healthy {
		t.Fatal("503 backend reported healthy")
	}

	starting.health.Store(http.StatusOK)
	if err := tr.client.WaitHealthy(ctxT(t), starting.addr); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		get(t, http.DefaultClient, tr.proxyURL+"/", nil)
	}
	if starting.hits.Load() == 0 {
		t.Fatal("backend got no traffic after its health check passed")
	}

	// Failing checks take it out again.
	starting.health.Store(http.StatusServiceUnavailable)
	waitFor(t, "backend to leave rotation", func() bool { return !backendStatus(t, tr.r, starting.addr).Healthy })
	before := starting.hits.Load()
	for range 20 {
		if code, _ := get(t, http.DefaultClient, tr.proxyURL+"/", nil); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	if starting.hits.Load() != before {
		t.Fatal("unhealthy backend still got traffic")
	}
}

func TestNoBackendInRotationIs503(t *testing.T) {
	down := startBackend(t, "down")
	down.health.Store(http.StatusServiceUnavailable)
	tr := startRouter(t, testConfig(t))
	tr.setup(t, map[string][]*testBackend{"blue": {down}}, engine.Route{Stable: "blue"})
	if code, _ := get(t, http.DefaultClient, tr.proxyURL+"/", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", code)
	}
	if s := tr.r.Stats()["blue"]; s.Status5xx != 1 || s.Requests != 1 {
		t.Fatalf("stats %+v, want one 5xx", s)
	}
}

// TestEmptySideFallsBack: when the side a request was routed to has no
// backend in rotation (its last one is draining for a restart), the other
// side serves it instead of failing it.
func TestEmptySideFallsBack(t *testing.T) {
	tests := []struct {
		name     string
		weight   float64
		downSide string
	}{
		{"stable empty at 25%", 25, "blue"},
		{"candidate empty at 100%", 100, "green"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blue, green := startBackend(t, "blue"), startBackend(t, "green")
			tr := startRouter(t, testConfig(t))
			tr.setup(t, map[string][]*testBackend{"blue": {blue}, "green": {green}},
				engine.Route{Stable: "blue", Candidate: "green", Weight: tt.weight})
			down := blue
			if tt.downSide == "green" {
				down = green
			}
			if _, err := tr.r.Drain(context.Background(), down.addr, time.Second); err != nil {
				t.Fatal(err)
			}
			for i := range 200 {
				code, _ := get(t, http.DefaultClient, tr.proxyURL+"/", nil)
				if code != http.StatusOK {
					t.Fatalf("request %d: status %d with %s drained, want the other side to serve", i, code, tt.downSide)
				}
			}
		})
	}
}

// TestPanicModeKeepsServing: when every backend fails its health checks at
// once (slow checks on an overloaded machine, typically) the router keeps
// sending requests to backends that were healthy recently instead of
// answering 503 to everyone; a backend that never passed a check gets nothing.
func TestPanicModeKeepsServing(t *testing.T) {
	a := startBackend(t, "a")
	tr := startRouter(t, testConfig(t))
	tr.setup(t, map[string][]*testBackend{"blue": {a}}, engine.Route{Stable: "blue"})
	a.health.Store(http.StatusServiceUnavailable)
	waitFor(t, "the backend to fail its health checks", func() bool {
		st := tr.r.State()
		return len(st.Backends) == 1 && !st.Backends[0].Healthy
	})
	for i := range 50 {
		if code, body := get(t, http.DefaultClient, tr.proxyURL+"/", nil); code != http.StatusOK || body != "a" {
			t.Fatalf("request %d in panic mode: %d %q, want the recently healthy backend to serve", i, code, body)
		}
	}
}

func TestDrainWaitsForInFlight(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	tr := startRouter(t, testConfig(t))
	tr.setup(t, map[string][]*testBackend{"blue": {a}}, engine.Route{Stable: "blue"})

	slow := make(chan int, 1)
	go func() {
		resp, err := http.Get(tr.proxyURL + "/slow")
		if err != nil {
			slow <- -1
			return
		}
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	<-a.entered
	if got := backendStatus(t, tr.r, a.addr).InFlight; got != 1 {
		t.Fatalf("in flight %d, want 1", got)
	}

	// Add b so that traffic has somewhere to go during the drain.
	if err := tr.client.SetPool(ctxT(t), "blue", []string{a.addr, b.addr}); err != nil {
		t.Fatal(err)
	}
	if err := tr.client.WaitHealthy(ctxT(t), b.addr); err != nil {
		t.Fatal(err)
	}
	drained := make(chan error, 1)
	go func() { drained <- tr.client.Drain(context.Background(), a.addr, 10*time.Second) }()
	waitFor(t, "drain flag", func() bool { return backendStatus(t, tr.r, a.addr).Draining })
	for i := range 20 {
		if _, body := get(t, http.DefaultClient, tr.proxyURL+"/", nil); body != "b" {
			t.Fatalf("request %d reached %q while a drains", i, body)
		}
	}
	select {
	case err := <-drained:
		t.Fatalf("drain returned (%v) while a request was in flight", err)
	default:
	}
	close(a.block)
	if err := <-drained; err != nil {
		t.Fatalf("drain: %v", err)
	}
	if code := <-slow; code != http.StatusOK {
		t.Fatalf("in-flight request finished with %d, want 200", code)
	}
	if st := backendStatus(t, tr.r, a.addr); st.InFlight != 0 || !st.Draining {
		t.Fatalf("after drain: %+v", st)
	}

	if err := tr.client.Undrain(ctxT(t), a.addr); err != nil {
		t.Fatal(err)
	}
	if err := tr.client.WaitHealthy(ctxT(t), a.addr); err != nil {
		t.Fatal(err)
	}
	hitsBefore := a.hits.Load()
	for range 10 {
		get(t, http.DefaultClient, tr.proxyURL+"/", nil)
	}
	if a.hits.Load() == hitsBefore {
		t.Fatal("undrained backend got no traffic")
	}
}

func TestDrainTimeoutReportsInFlight(t *testing.T) {
	a := startBackend(t, "a")
	tr := startRouter(t, testConfig(t))
	tr.setup(t, map[string][]*testBackend{"blue": {a}}, engine.Route{Stable: "blue"})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := http.Get(tr.proxyURL + "/slow"); err == nil {
			resp.Body.Close()
		}
	}()
	<-a.entered
	res, err := tr.r.Drain(ctxT(t), a.addr, 30*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if res.Drained || res.InFlight != 1 {
		t.Fatalf("drain result %+v, want not drained with 1 in flight", res)
	}
	err = tr.client.Drain(ctxT(t), a.addr, 30*time.Millisecond)
	if !errors.Is(err, ErrDrainTimeout) {
		t.Fatalf("client drain error %v, want ErrDrainTimeout", err)
	}
	close(a.block)
	<-done
	if err := tr.client.Drain(ctxT(t), "127.0.0.1:1", time.Second); err == nil {
		t.Fatal("draining an unknown backend succeeded")
	}
}

// deadAddr returns a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestRetryOnDialFailure(t *testing.T) {
	live, doomed := startBackend(t, "live"), startBackend(t, "doomed")
	cfg := testConfig(t)
	cfg.HealthInterval = time.Hour // the router must not notice the death by itself
	tr := startRouter(t, cfg)
	tr.setup(t, map[string][]*testBackend{"blue": {live, doomed}}, engine.Route{Stable: "blue"})
	doomed.srv.Close() // connections to it are now refused
	if !backendStatus(t, tr.r, doomed.addr).Healthy {
		t.Fatal("the dead backend should still be in rotation for this test")
	}
	for i := range 20 {
		code, body := get(t, http.DefaultClient, tr.proxyURL+"/", nil)
		if code != 200 || body != "live" {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
	s := tr.r.Stats()["blue"]
	if s.Status2xx != 20 || s.ConnErrors != 0 {
		t.Fatalf("stats %+v: want 20 successes and no failed request", s)
	}
	if !scrapeHasPositive(t, tr, "flightdeck_router_connection_errors_total", doomed.addr) {
		t.Fatal("connection errors to the dead backend were not counted")
	}

	// A refused connection means the backend never saw the request, and
	// the router read nothing of its body yet: a POST, with a body of
	// known length or a chunked one, goes to the other backend whole.
	before := tr.r.Stats()["blue"]
	for i := range 10 {
		payload := strings.Repeat(fmt.Sprintf("payload %d;", i), 1000)
		var body io.Reader = strings.NewReader(payload)
		if i%2 == 1 {
			body = io.MultiReader(body) // no length known: sent chunked
		}
		resp, err := http.Post(tr.proxyURL+"/echo", "text/plain", body)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(got) != "live:"+payload {
			t.Fatalf("POST %d: %d %.40q", i, resp.StatusCode, got)
		}
	}
	if s := tr.r.Stats()["blue"]; s.Status2xx-before.Status2xx != 10 || s.ConnErrors != 0 {
		t.Fatalf("stats %+v: want 10 more successes and no failed request", s)
	}
}

func TestRetryDisabled(t *testing.T) {
	cfg := testConfig(t)
	cfg.NoRetry = true
	cfg.HealthInterval = time.Hour
	live, doomed := startBackend(t, "live"), startBackend(t, "doomed")
	tr := startRouter(t, cfg)
	tr.setup(t, map[string][]*testBackend{"blue": {live, doomed}}, engine.Route{Stable: "blue"})
	doomed.srv.Close()
	bad := 0
	for range 10 {
		if code, _ := get(t, http.DefaultClient, tr.proxyURL+"/", nil); code == http.StatusBadGateway {
			bad++
		}
	}
	if bad == 0 {
		t.Fatal("without retry, requests to the dead backend should fail")
	}
}

func TestFlipUnderLoad(t *testing.T) {
	blue, green := startBackend(t, "blue"), startBackend(t, "green")
	tr := startRouter(t, testConfig(t))
	tr.setup(t, map[string][]*testBackend{"blue": {blue}, "green": {green}}, engine.Route{Stable: "blue", Candidate: "green"})

	const workers, perWorker = 8, 300
	var failed, okBlue, okGreen atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWorker {
				resp, err := http.Get(tr.proxyURL + "/")
				if err != nil {
					failed.Add(1)
					continue
				}
				var buf [16]byte
				n, _ := resp.Body.Read(buf[:])
				resp.Body.Close()
				switch {
				case resp.StatusCode != 200:
					failed.Add(1)
				case string(buf[:n]) == "green":
					okGreen.Add(1)
				default:
					okBlue.Add(1)
				}
			}
		}()
	}
	go func() { wg.Wait(); close(stop) }()
	ctx := ctxT(t)
	flips := 0
	for w := 100.0; ; w = 100 - w {
		select {
		case <-stop:
		default:
			if err := tr.client.SetRoute(ctx, engine.Route{Stable: "blue", Candidate: "green", Weight: w}); err != nil {
				t.Fatal(err)
			}
			flips++
			// After the admin call returned, the very next request obeys it.
			want := map[float64]string{100: "green", 0: "blue"}[w]
			if _, got := get(t, http.DefaultClient, tr.proxyURL+"/", nil); got != want {
				t.Fatalf("weight %v: next request went to %s", w, got)
			}
			continue
		}
		break
	}
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during %d flips", failed.Load(), workers*perWorker, flips)
	}
	if flips < 2 || okBlue.Load() == 0 || okGreen.Load() == 0 {
		t.Fatalf("flips %d, blue %d, green %d: the test did not exercise both sides", flips, okBlue.Load(), okGreen.Load())
	}
}

func TestShutdownFinishesInFlight(t *testing.T) {
	a := startBackend(t, "a")
	tr := startRouter(t, testConfig(t))
	tr.setup(t, map[string][]*testBackend{"blue": {a}}, engine.Route{Stable: "blue"})
	slow := make(chan int, 1)
	go func() {
		resp, err := http.Get(tr.proxyURL + "/slow")
		if err != nil {
			slow <- -1
			return
		}
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	<-a.entered
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- tr.r.Shutdown(ctx)
	}()
	// New connections are refused once the listener closed.
	waitFor(t, "listener to close", func() bool {
		c, err := net.Dial("tcp", tr.proxyURL[len("http://"):])
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(a.block)
	if code := <-slow; code != http.StatusOK {
		t.Fatalf("in-flight request got %d during shutdown", code)
	}
	if err := <-shut; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func TestRunServesUntilCancelled(t *testing.T) {
	cfg := testConfig(t)
	cfg.Listen = deadAddr(t) // a free port, for the short time it takes
	cfg.Admin = deadAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	tok := ""
	waitFor(t, "token file", func() bool {
		var err error
		tok, err = ReadToken(cfg.StateFile[:len(cfg.StateFile)-len("router.json")] + DefaultTokenFileName)
		return err == nil
	})
	c, err := NewClient("http://"+cfg.Admin, tok)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "admin API", func() bool {
		_, err := c.State(context.Background())
		return err == nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := c.State(context.Background()); err == nil {
		t.Fatal("admin API still answers after Run returned")
	}
}

func TestQuantileAndDiff(t *testing.T) {
	bounds := []float64{0.1, 0.2, 0.5}
	tests := []struct {
		name   string
		q      float64
		counts []uint64
		want   float64
	}{
		{"empty", 0.99, []uint64{0, 0, 0, 0}, 0},
		{"all in first bucket", 0.5, []uint64{10, 0, 0, 0}, 0.05},
		{"interpolate second bucket", 0.99, []uint64{90, 10, 0, 0}, 0.1 + 0.1*0.9},
		{"overflow returns top bound", 0.99, []uint64{0, 0, 0, 5}, 0.5},
		{"exact boundary", 0.5, []uint64{50, 50, 0, 0}, 0.1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Quantile(tc.q, bounds, tc.counts); abs(got-tc.want) > 1e-9 {
				t.Fatalf("Quantile = %v, want %v", got, tc.want)
			}
		})
	}
	before := engine.ReleaseStats{Requests: 100, Status5xx: 1, Latency: engine.Histogram{Bounds: bounds, Counts: []uint64{100, 0, 0, 0}}}
	after := engine.ReleaseStats{Requests: 300, Status5xx: 3, ConnErrors: 2, Latency: engine.Histogram{Bounds: bounds, Counts: []uint64{280, 20, 0, 0}}}
	m := Diff("blue", before, after)
	if m.Requests != 200 || m.Errors != 4 || abs(m.ErrorRate-0.02) > 1e-12 {
		t.Fatalf("diff %+v", m)
	}
	// 200 in window: 180 ≤ 100 ms, 20 in (100, 200]; rank 198 → 0.1 + 0.1*18/20.
	if want := time.Duration(0.19 * float64(time.Second)); absDur(m.P99-want) > time.Microsecond {
		t.Fatalf("p99 %v, want %v", m.P99, want)
	}
	if m := Diff("blue", after, after); !m.NoData {
		t.Fatalf("no request in window must be NoData, got %+v", m)
	}
}

func TestMetricsMeasure(t *testing.T) {
	a := startBackend(t, "a")
	tr := startRouter(t, testConfig(t))
	tr.setup(t, map[string][]*testBackend{"blue": {a}}, engine.Route{Stable: "blue"})
	// The first read signals that the window started; the second waits
	// until the traffic was sent, so the window holds exactly 40 requests.
	started, sent := make(chan struct{}), make(chan struct{})
	calls := 0
	src := NewMetrics(func(ctx context.Context) (map[string]engine.ReleaseStats, error) {
		calls++
		if calls == 1 {
			defer close(started)
		} else {
			<-sent
		}
		return tr.client.Stats(ctx)
	})
	type result struct {
		m   engine.Measurement
		err error
	}
	res := make(chan result, 1)
	go func() {
		m, err := src.Measure(context.Background(), "blue", 10*time.Millisecond)
		res <- result{m, err}
	}()
	<-started
	for i := range 40 {
		path := "/"
		if i%10 == 0 {
			path = "/fail"
		}
		get(t, http.DefaultClient, tr.proxyURL+path, nil)
	}
	close(sent)
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.m.NoData || r.m.Requests != 40 || r.m.Errors != 4 || abs(r.m.ErrorRate-0.1) > 1e-12 {
		t.Fatalf("measurement %+v", r.m)
	}
	if r.m.P99 <= 0 || r.m.P99 > time.Second {
		t.Fatalf("p99 %v", r.m.P99)
	}
	idle, err := NewMetrics(tr.r.StatsFunc()).Measure(ctxT(t), "blue", 10*time.Millisecond)
	if err != nil || !idle.NoData {
		t.Fatalf("idle window: %+v, %v", idle, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := src.Measure(ctx, "blue", time.Hour); err == nil {
		t.Fatal("Measure ignored a cancelled context")
	}
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func TestHealthRoundsShareOnePhase(t *testing.T) {
	iv := 100 * time.Millisecond
	base := time.Unix(1_700_000_000, 0) // a multiple of the interval
	tests := []struct {
		now  time.Time
		want time.Duration
	}{
		{base, iv},
		{base.Add(time.Nanosecond), iv - time.Nanosecond},
		{base.Add(30 * time.Millisecond), 70 * time.Millisecond},
		{base.Add(99 * time.Millisecond), time.Millisecond},
		{base.Add(250 * time.Millisecond), 50 * time.Millisecond},
	}
	for _, tc := range tests {
		got := untilNextRound(tc.now, iv)
		if got != tc.want {
			t.Errorf("at +%s: wait %s, want %s", tc.now.Sub(base), got, tc.want)
		}
		// Whoever asks, the round they wait for is the same instant.
		if next := tc.now.Add(got); next.UnixNano()%int64(iv) != 0 {
			t.Errorf("at +%s: next round %s is off the shared phase", tc.now.Sub(base), next)
		}
	}
}
