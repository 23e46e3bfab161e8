package probe

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// server starts a real HTTP server on 127.0.0.1 and closes it at cleanup.
func server(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// startProbe builds and starts a probe, stopping it at cleanup.
func startProbe(t *testing.T, cfg Config) *Probe {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

// finish waits for a probe with a Duration to end by itself.
func finish(t *testing.T, p *Probe, d time.Duration) Report {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(d):
		t.Fatalf("probe did not finish within %v", d)
	}
	return p.Snapshot()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func within(got, want uint64, frac float64) bool {
	d := float64(got) - float64(want)
	return d <= frac*float64(want) && d >= -frac*float64(want)
}

func TestConstantRate(t *testing.T) {
	t.Parallel()
	var arrivals atomic.Uint64
	s := server(t, func(w http.ResponseWriter, r *http.Request) {
		arrivals.Add(1)
		w.Header().Set("X-Release", "r1")
		_, _ = w.Write([]byte("ok"))
	})
	p := startProbe(t, Config{URL: s.URL, Rate: 200, Duration: time.Second})
	rep := finish(t, p, 10*time.Second)

	if got := arrivals.Load(); !within(got, 200, 0.10) {
		t.Fatalf("server saw %d requests at 200/s for 1 s, want 200 ± 10 %%", got)
	}
	if rep.Total.Requests != arrivals.Load() || rep.Total.Succeeded != rep.Total.Requests || rep.Total.Failed != 0 {
		t.Fatalf("total %+v, server saw %d", rep.Total, arrivals.Load())
	}
	if r1 := rep.Releases["r1"]; r1.Requests != rep.Total.Requests || len(rep.Releases) != 1 {
		t.Fatalf("releases %+v, want everything on r1", rep.Releases)
	}
	if rep.Running || rep.End.Sub(rep.Start) < 990*time.Millisecond || rep.Total.P50 <= 0 || rep.Total.P99 < rep.Total.P50 {
		t.Fatalf("window %v–%v running=%v p50 %v p99 %v", rep.Start, rep.End, rep.Running, rep.Total.P50, rep.Total.P99)
	}
}

func TestStalledBackendDoesNotSlowTheSender(t *testing.T) {
	t.Parallel()
	const stallFrom, stallTo = 300 * time.Millisecond, 800 * time.Millisecond
	var (
		arrivals atomic.Uint64
		once     sync.Once
		first    time.Time
	)
	s := server(t, func(w http.ResponseWriter, r *http.Request) {
		arrivals.Add(1)
		once.Do(func() { first = time.Now() })
		since := time.Since(first)
		if since >= stallFrom && since < stallTo {
			select { // the backend hangs until the stall is over
			case <-time.After(stallTo - since):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("X-Release", "r1")
	})
	p := startProbe(t, Config{URL: s.URL, Rate: 200, Duration: 1500 * time.Millisecond})
	rep := finish(t, p, 10*time.Second)

	if got := arrivals.Load(); !within(got, 300, 0.10) {
		t.Fatalf("server saw %d requests at 200/s for 1.5 s with a 500 ms stall, want 300 ± 10 %% (open loop)", got)
	}
	if rep.Total.Failed != 0 || rep.Total.Requests != arrivals.Load() {
		t.Fatalf("total %+v, server saw %d", rep.Total, arrivals.Load())
	}
	if rep.LongestGap < 400*time.Millisecond || rep.LongestGap > time.Second {
		t.Fatalf("longest gap %v, want about the 500 ms stall", rep.LongestGap)
	}
	if rep.Total.MaxLatency < 400*time.Millisecond || rep.Total.P99 < 300*time.Millisecond {
		t.Fatalf("max latency %v p99 %v, want the stall to show", rep.Total.MaxLatency, rep.Total.P99)
	}
}

// closedPortURL returns a URL on 127.0.0.1 where nothing listens.
func closedPortURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/"
}

func TestFailureClasses(t *testing.T) {
	t.Parallel()
	blockUntilGone := func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	tests := []struct {
		name    string
		handler http.HandlerFunc // nil: nothing listens
		cfg     Config
		check   func(Failures) uint64 // the class that must hold every failure
	}{
		{"5xx", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }, Config{}, func(f Failures) uint64 { return f.Status5xx }},
		{"4xx", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, Config{}, func(f Failures) uint64 { return f.Status4xx }},
		{"redirect not followed", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/elsewhere", http.StatusFound) }, Config{},
			func(f Failures) uint64 { return f.StatusOther }},
		{"refused", nil, Config{}, func(f Failures) uint64 { return f.Refused }},
		{"reset", func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.(*net.TCPConn).SetLinger(0)
				conn.Close()
			}
		}, Config{}, func(f Failures) uint64 { return f.Reset }},
		{"timeout", blockUntilGone, Config{Timeout: 50 * time.Millisecond, MaxInFlight: 1000}, func(f Failures) uint64 { return f.Timeout }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := tt.cfg
			cfg.Rate, cfg.Duration = 100, 200*time.Millisecond
			if tt.handler == nil {
				cfg.URL = closedPortURL(t)
			} else {
				cfg.URL = server(t, tt.handler).URL
			}
			rep := finish(t, startProbe(t, cfg), 10*time.Second)
			tot := rep.Total
			if tot.Requests < 15 || tot.Succeeded != 0 || tot.Failed != tot.Requests || tt.check(tot.Failures) != tot.Requests {
				t.Fatalf("total %+v: want every request failed in class %s", tot, tt.name)
			}
			if rep.LongestGap != 0 || rep.SinceLastSuccess < 190*time.Millisecond {
				t.Fatalf("longest gap %v, since last success %v: nothing succeeded", rep.LongestGap, rep.SinceLastSuccess)
			}
		})
	}
}

func TestTooManyInFlightAreDroppedNotQueued(t *testing.T) {
	t.Parallel()
	var arrivals atomic.Uint64
	var inFlight, maxInFlight atomic.Int64
	s := server(t, func(w http.ResponseWriter, r *http.Request) {
		arrivals.Add(1)
		n := inFlight.Add(1)
		for m := maxInFlight.Load(); n > m && !maxInFlight.CompareAndSwap(m, n); m = maxInFlight.Load() {
		}
		<-r.Context().Done()
		inFlight.Add(-1)
	})
	p := startProbe(t, Config{URL: s.URL, Rate: 100, Duration: 300 * time.Millisecond, MaxInFlight: 2, Timeout: 5 * time.Second})
	waitFor(t, 5*time.Second, "the sending window to end", func() bool {
		rep := p.Snapshot()
		return rep.Total.Failures.Dropped >= 25 && !rep.Running
	})
	// The cap bounds requests in flight at once. (The HTTP transport may
	// send a request again on a fresh connection when its first connection
	// broke before any answer, so arrivals can exceed 2; concurrency cannot.)
	if got, most := arrivals.Load(), maxInFlight.Load(); got < 2 || most != 2 {
		t.Fatalf("server saw %d requests, at most %d at once, with an in-flight cap of 2", got, most)
	}
	p.Stop()
	rep := p.Snapshot()
	if rep.Total.Failures.Dropped != 28 || rep.Aborted != 2 || rep.Total.Requests != 28 {
		t.Fatalf("dropped %d, aborted %d, requests %d: want 28 dropped of 30 and the 2 in flight aborted",
			rep.Total.Failures.Dropped, rep.Aborted, rep.Total.Requests)
	}
	if rep.Releases[UnknownRelease].Failures.Dropped != 28 {
		t.Fatalf("releases %+v: dropped requests belong to %q", rep.Releases, UnknownRelease)
	}
}

func TestPerReleaseSplit(t *testing.T) {
	t.Parallel()
	var n atomic.Uint64
	s := server(t, func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) % 4 {
		case 0:
			w.Header().Set("X-Release", "blue")
		case 1:
			w.Header().Set("X-Release", "green")
		case 2:
			w.Header().Set("X-Release", "green")
			w.WriteHeader(500)
		case 3: // no header
		}
	})
	rep := finish(t, startProbe(t, Config{URL: s.URL, Rate: 200, Duration: 500 * time.Millisecond}), 10*time.Second)
	total := rep.Total.Requests
	blue, green, unknown := rep.Releases["blue"], rep.Releases["green"], rep.Releases[UnknownRelease]
	if blue.Requests+green.Requests+unknown.Requests != total || len(rep.Releases) != 3 {
		t.Fatalf("releases %+v do not add up to %d", rep.Releases, total)
	}
	quarter := total / 4
	for name, got := range map[string]uint64{"blue": blue.Requests, "green ok": green.Succeeded, "green 5xx": green.Failures.Status5xx, "unknown": unknown.Requests} {
		if got < quarter-1 || got > quarter+1 {
			t.Errorf("%s: %d of %d requests, want a quarter", name, got, total)
		}
	}
	if blue.Failed != 0 || green.Failed != green.Failures.Status5xx || rep.Total.Failed != green.Failed {
		t.Fatalf("failures misattributed: blue %+v green %+v total %+v", blue, green, rep.Total)
	}
}

func TestCustomReleaseExtractor(t *testing.T) {
	t.Parallel()
	s := server(t, func(w http.ResponseWriter, r *http.Request) { w.Header().Set("X-Served-By", "pool-b") })
	rep := finish(t, startProbe(t, Config{
		URL: s.URL, Rate: 100, Duration: 100 * time.Millisecond,
		Release: func(r *http.Response) string { return r.Header.Get("X-Served-By") },
	}), 10*time.Second)
	if got := rep.Releases["pool-b"].Succeeded; got == 0 || got != rep.Total.Requests {
		t.Fatalf("releases %+v, want all on pool-b", rep.Releases)
	}
}

func TestMarkToFirstSuccess(t *testing.T) {
	t.Parallel()
	var release atomic.Value
	release.Store("bad")
	s := server(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Release", release.Load().(string))
	})
	p := startProbe(t, Config{URL: s.URL, Rate: 200, Duration: 10 * time.Second})
	waitFor(t, 5*time.Second, "successes of the bad release", func() bool { return p.Snapshot().Releases["bad"].Succeeded > 5 })

	p.Mark("rollback-start")
	markedAt := time.Now()
	if _, ok := p.TimeToSuccess("rollback-start", "good"); ok {
		t.Fatal("time to success of good reported before good served anything")
	}
	waitFor(t, 5*time.Second, "more requests after the mark", func() bool {
		return p.Snapshot().Total.Requests > 40 // some time passes between mark and switch
	})
	release.Store("good")
	switchedAt := time.Now()
	var rto time.Duration
	waitFor(t, 5*time.Second, "the first success of good", func() bool {
		var ok bool
		rto, ok = p.TimeToSuccess("rollback-start", "good")
		return ok
	})
	doneAt := time.Now()
	if rto < switchedAt.Sub(markedAt) || rto > doneAt.Sub(markedAt)+time.Millisecond {
		t.Fatalf("RTO %v, want between %v (switch) and %v (observed)", rto, switchedAt.Sub(markedAt), doneAt.Sub(markedAt))
	}
	if _, ok := p.TimeToSuccess("no-such-mark", "good"); ok {
		t.Fatal("an unknown mark reported a time")
	}
	if d, ok := p.TimeToSuccess("rollback-start", "bad"); !ok || d > rto {
		t.Fatalf("bad after the mark: %v %v, want a success before good's", d, ok)
	}
	rep := p.Snapshot()
	if len(rep.Marks) != 1 || rep.Marks[0].Name != "rollback-start" || !rep.Running {
		t.Fatalf("marks %+v running %v", rep.Marks, rep.Running)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no scheme", Config{URL: "127.0.0.1:80", Rate: 1}, "URL"},
		{"ftp", Config{URL: "ftp://127.0.0.1/", Rate: 1}, "http"},
		{"no rate", Config{URL: "http://127.0.0.1/"}, "rate"},
		{"huge rate", Config{URL: "http://127.0.0.1/", Rate: 1e9}, "rate"},
		{"negative timeout", Config{URL: "http://127.0.0.1/", Rate: 1, Timeout: -1}, "negative"},
	}
	for _, tt := range tests {
		if _, err := New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New = %v, want an error mentioning %q", tt.name, err, tt.want)
		}
	}
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	p, err := New(Config{URL: "http://127.0.0.1:1/", Rate: 10})
	if err != nil {
		t.Fatal(err)
	}
	if rep := p.Snapshot(); !rep.Start.IsZero() || rep.Running || rep.Total.Requests != 0 {
		t.Fatalf("snapshot before start = %+v", rep)
	}
	p.Stop()
	p.Stop()
	if err := p.Start(context.Background()); err == nil {
		t.Fatal("Start after Stop succeeded")
	}

	s := server(t, func(http.ResponseWriter, *http.Request) {})
	ctx, cancel := context.WithCancel(context.Background())
	q := startProbe(t, Config{URL: s.URL, Rate: 100})
	if err := q.Start(ctx); err == nil {
		t.Fatal("second Start succeeded")
	}
	r, err := New(Config{URL: s.URL, Rate: 100})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a few successes", func() bool { return r.Snapshot().Total.Succeeded >= 3 })
	cancel()
	select {
	case <-r.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("probe did not stop when its context ended")
	}
	if rep := r.Snapshot(); rep.Running || rep.End.IsZero() {
		t.Fatalf("after cancel: running %v end %v", rep.Running, rep.End)
	}
}

// Not parallel: it counts the process's goroutines.
func TestStopIsPromptAndLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // a backend that never answers
	}))
	p, err := New(Config{URL: s.URL, Rate: 200, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "requests in flight", func() bool { return p.Snapshot().InFlight >= 20 })

	stopped := make(chan struct{})
	go func() { p.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not return with requests hanging on the backend")
	}
	rep := p.Snapshot()
	if rep.Running || rep.InFlight != 0 || rep.Aborted < 20 || rep.Total.Failed != 0 {
		t.Fatalf("after Stop: running %v in flight %d aborted %d failed %d", rep.Running, rep.InFlight, rep.Aborted, rep.Total.Failed)
	}
	s.Close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Stop, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func BenchmarkRecordSuccess(b *testing.B) {
	p, err := New(Config{URL: "http://127.0.0.1:1/", Rate: 1})
	if err != nil {
		b.Fatal(err)
	}
	p.Mark("m")
	b.ReportAllocs()
	for b.Loop() {
		p.recordSuccess("r1", 3*time.Millisecond)
	}
}

func BenchmarkRequest(b *testing.B) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Release", "r1")
	}))
	defer s.Close()
	p, err := New(Config{URL: s.URL, Rate: 1})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		p.inFlight.Add(1)
		p.wg.Add(1)
		p.do(ctx, time.Now(), 0)
	}
	if rep := p.Snapshot(); rep.Total.Failed != 0 {
		b.Fatalf("failures: %+v", rep.Total.Failures)
	}
}

// TestUserHeader: every request carries one of Users synthetic user ids.
func TestUserHeader(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("X-User")]++
		mu.Unlock()
	}))
	defer srv.Close()
	p, err := New(Config{URL: srv.URL, Rate: 400, Duration: 250 * time.Millisecond, UserHeader: "X-User", Users: 7})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 7 || seen[""] != 0 {
		t.Fatalf("user ids seen: %v, want u0..u6 only", seen)
	}
}

// A target that stops answering does not make the probe open a
// connection per request: past maxConnsFor, requests wait for one.
func TestConnectionsAreBounded(t *testing.T) {
	t.Parallel()
	var conns atomic.Int64
	release := make(chan struct{})
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	defer close(release)
	const rate = 2000
	p := startProbe(t, Config{URL: s.URL, Rate: rate, Duration: 400 * time.Millisecond, Timeout: 5 * time.Second})
	// 800 requests are sent over 400 ms and none is answered: the probe
	// uses every connection it may, and no more.
	limit := int64(maxConnsFor(rate))
	waitFor(t, 10*time.Second, "the sending window to end with every allowed connection open", func() bool {
		return !p.Snapshot().Running && conns.Load() >= limit
	})
	if got := conns.Load(); got > limit {
		t.Fatalf("the probe opened %d connections to a target that answers nothing, want at most %d", got, limit)
	}
}
