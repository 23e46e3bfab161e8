package service

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// running is a service started by startService.
type running struct {
	base   string
	addr   string
	cancel context.CancelFunc
	done   chan error
}

// startService writes knobs (when non-nil) into a fresh release dir named
// release, starts Run on a 127.0.0.1 listener and stops it at cleanup.
func startService(t *testing.T, release string, knobs *Knobs, edit func(*Config)) *running {
	t.Helper()
	dir := filepath.Join(t.TempDir(), release)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if knobs != nil {
		if err := WriteKnobs(dir, *knobs); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Listener:   ln,
		ReleaseDir: dir,
		Getenv:     func(string) string { return "" },
	}
	if edit != nil {
		edit(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{base: "http://" + ln.Addr().String(), addr: ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(35 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return r
}

// wait returns Run's result, failing the test if it takes longer than d.
func (r *running) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // keep it for cleanup
		return err
	case <-time.After(d):
		t.Fatalf("Run did not return within %v", d)
		return nil
	}
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", url, err)
	}
	return resp, body
}

func newClient() *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 8, Proxy: nil},
	}
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

func TestHealthz503WhileStartingThen200(t *testing.T) {
	t.Parallel()
	const delay = 600 * time.Millisecond
	start := time.Now()
	r := startService(t, "r1", &Knobs{StartupDelay: delay}, nil)
	c := newClient()

	resp, body := get(t, c, r.base+"/healthz")
	if time.Since(start) < delay {
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"starting"`) {
			t.Fatalf("healthz during start-up = %d %s, want 503 starting", resp.StatusCode, body)
		}
		resp, _ = get(t, c, r.base+"/")
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("/ during start-up = %d, want 503", resp.StatusCode)
		}
	} else {
		t.Fatalf("first health check came only after %v; cannot observe start-up", time.Since(start))
	}

	waitFor(t, 5*time.Second, "healthz 200", func() bool {
		resp, _ := get(t, c, r.base+"/healthz")
		return resp.StatusCode == http.StatusOK
	})
	if el := time.Since(start); el < delay {
		t.Fatalf("ready after %v, before the start-up delay %v", el, delay)
	}
	resp, body = get(t, c, r.base+"/")
	if resp.StatusCode != http.StatusOK || resp.Header.Get(ReleaseHeader) != "r1" {
		t.Fatalf("/ when ready = %d %q %s", resp.StatusCode, resp.Header.Get(ReleaseHeader), body)
	}
}

func TestErrorRateOver2000Requests(t *testing.T) {
	t.Parallel()
	for _, rate := range []float64{0, 0.01, 0.1, 0.5, 1} {
		rate := rate
		t.Run("", func(t *testing.T) {
			t.Parallel()
			r := startService(t, "bad", &Knobs{ErrorRate: rate}, nil)
			c := newClient()
			const total, workers = 2000, 4
			var mu sync.Mutex
			counts := map[int]int{}
			var wg sync.WaitGroup
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < total/workers; i++ {
						resp, err := c.Get(r.base + "/")
						if err != nil {
							t.Error(err)
							return
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						mu.Lock()
						counts[resp.StatusCode]++
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			if counts[200]+counts[500] != total {
				t.Fatalf("statuses %v, want only 200 and 500 over %d requests", counts, total)
			}
			got := float64(counts[500]) / total
			if d := got - rate; d > 0.005 || d < -0.005 {
				t.Fatalf("error rate %.4f over %d requests, want %.4f ± 0.005", got, total, rate)
			}
		})
	}
}

func TestFailAt(t *testing.T) {
	t.Parallel()
	flap := Knobs{ErrorRate: 1, Flap: true, FlapPeriod: time.Second}
	tests := []struct {
		name  string
		k     Knobs
		n     uint64
		since time.Duration
		want  bool
	}{
		{"no errors", Knobs{}, 1, 0, false},
		{"always", Knobs{ErrorRate: 1}, 7, 0, true},
		{"half odd", Knobs{ErrorRate: 0.5}, 1, 0, false},
		{"half even", Knobs{ErrorRate: 0.5}, 2, 0, true},
		{"tenth", Knobs{ErrorRate: 0.1}, 10, 0, true},
		{"tenth not", Knobs{ErrorRate: 0.1}, 9, 0, false},
		{"flap first period fails", flap, 1, 500 * time.Millisecond, true},
		{"flap second period healthy", flap, 2, 1500 * time.Millisecond, false},
		{"flap third period fails", flap, 3, 2500 * time.Millisecond, true},
	}
	for _, tt := range tests {
		if got := tt.k.failAt(tt.n, tt.since); got != tt.want {
			t.Errorf("%s: failAt(%d, %v) = %v, want %v", tt.name, tt.n, tt.since, got, tt.want)
		}
	}
}

func TestFlapAlternatesOnAListener(t *testing.T) {
	t.Parallel()
	r := startService(t, "flappy", &Knobs{ErrorRate: 1, Flap: true, FlapPeriod: 150 * time.Millisecond}, nil)
	c := newClient()
	var sequence []int
	waitFor(t, 5*time.Second, "500 → 200 → 500", func() bool {
		resp, _ := get(t, c, r.base+"/")
		if len(sequence) == 0 || sequence[len(sequence)-1] != resp.StatusCode {
			sequence = append(sequence, resp.StatusCode)
		}
		return len(sequence) >= 3
	})
	if sequence[0] != 500 || sequence[1] != 200 || sequence[2] != 500 {
		t.Fatalf("status changes %v, want 500, 200, 500", sequence)
	}
}

func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	t.Parallel()
	const latency = 1500 * time.Millisecond
	r := startService(t, "r2", &Knobs{Latency: latency}, nil)
	c := newClient()

	type result struct {
		status int
		err    error
	}
	slow := make(chan result, 1)
	go func() {
		resp, err := c.Get(r.base + "/")
		if err != nil {
			slow <- result{err: err}
			return
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		slow <- result{status: resp.StatusCode, err: err}
	}()
	waitFor(t, 5*time.Second, "the slow request to be in flight", func() bool {
		_, body := get(t, c, r.base+"/healthz")
		var h healthBody
		return json.Unmarshal(body, &h) == nil && h.InFlight == 1
	})
	c.CloseIdleConnections()

	r.cancel()
	waitFor(t, time.Second, "new connections to be refused", func() bool {
		conn, err := net.Dial("tcp", r.addr)
		if err == nil {
			conn.Close()
			return false
		}
		// A dial racing the listener's close may be reset; keep polling
		// until the kernel refuses outright.
		return errors.Is(err, syscall.ECONNREFUSED)
	})
	select {
	case res := <-slow:
		t.Fatalf("slow request ended (%v, %v) before new connections were refused", res.status, res.err)
	default:
	}
	res := <-slow
	if res.err != nil || res.status != http.StatusOK {
		t.Fatalf("in-flight request after cancel: status %d, err %v; want 200", res.status, res.err)
	}
	if err := r.wait(t, 5*time.Second); err != nil {
		t.Fatalf("Run after graceful shutdown: %v", err)
	}
}

func TestShutdownTimeoutCutsStragglers(t *testing.T) {
	t.Parallel()
	r := startService(t, "r3", &Knobs{Latency: 10 * time.Second}, func(c *Config) { c.ShutdownTimeout = 100 * time.Millisecond })
	c := newClient()
	go func() {
		if resp, err := c.Get(r.base + "/"); err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, 5*time.Second, "the slow request to be in flight", func() bool {
		_, body := get(t, c, r.base+"/healthz")
		var h healthBody
		return json.Unmarshal(body, &h) == nil && h.InFlight == 1
	})
	r.cancel()
	err := r.wait(t, 5*time.Second)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v, want a shutdown deadline error", err)
	}
}

func TestCrashAfterReturnsErrCrash(t *testing.T) {
	t.Parallel()
	r := startService(t, "doomed", &Knobs{CrashAfter: 300 * time.Millisecond, Latency: 10 * time.Second}, nil)
	c := newClient()
	cut := make(chan error, 1)
	go func() {
		resp, err := c.Get(r.base + "/")
		if err == nil {
			resp.Body.Close()
		}
		cut <- err
	}()
	err := r.wait(t, 5*time.Second)
	if !errors.Is(err, ErrCrash) {
		t.Fatalf("Run = %v, want ErrCrash", err)
	}
	if code := ExitCode(err); code != CrashExitCode {
		t.Fatalf("ExitCode = %d, want %d", code, CrashExitCode)
	}
	if err := <-cut; err == nil {
		t.Fatal("in-flight request survived a crash; want it cut")
	}
	if conn, err := net.Dial("tcp", r.addr); err == nil {
		conn.Close()
		t.Fatal("service still accepts connections after crashing")
	}
}

func TestVersionAndRoot(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		env         map[string]string
		nsEnv       string
		wantRelease string
		wantNS      string
	}{
		{"dir name", nil, "", "20260101120000", ""},
		{"env release", map[string]string{"RELEASE_VERSION": "v7", "CACHE_NAMESPACE": "ns-v7"}, "", "v7", "ns-v7"},
		{"custom ns env", map[string]string{"APP_CACHE": "blue", "CACHE_NAMESPACE": "ignored"}, "APP_CACHE", "20260101120000", "blue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			before := time.Now()
			r := startService(t, "20260101120000", nil, func(c *Config) {
				c.Getenv = func(k string) string { return tt.env[k] }
				c.CacheNamespaceEnv = tt.nsEnv
				c.Name = "web-1/slot-a"
			})
			c := newClient()
			resp, body := get(t, c, r.base+"/version")
			var v versionBody
			if err := json.Unmarshal(body, &v); err != nil {
				t.Fatalf("/version body %s: %v", body, err)
			}
			if v.Release != tt.wantRelease || v.CacheNamespace != tt.wantNS || v.StartedAt.Before(before.Add(-time.Second)) {
				t.Fatalf("/version = %+v, want release %q namespace %q", v, tt.wantRelease, tt.wantNS)
			}
			if got := resp.Header.Get(ReleaseHeader); got != tt.wantRelease {
				t.Fatalf("%s header = %q, want %q", ReleaseHeader, got, tt.wantRelease)
			}
			resp, body = get(t, c, r.base+"/")
			var root rootBody
			if err := json.Unmarshal(body, &root); err != nil || root.Host != "web-1/slot-a" || root.Release != tt.wantRelease {
				t.Fatalf("/ = %d %s (%v)", resp.StatusCode, body, err)
			}
			resp, _ = get(t, c, r.base+"/nope")
			if resp.StatusCode != http.StatusNotFound || resp.Header.Get(ReleaseHeader) != tt.wantRelease {
				t.Fatalf("/nope = %d with %s %q, want 404 with the release header", resp.StatusCode, ReleaseHeader, resp.Header.Get(ReleaseHeader))
			}
		})
	}
}

func TestParseKnobs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		json    string
		want    Knobs
		wantErr string
	}{
		{"empty", `{}`, Knobs{}, ""},
		{"all", `{"error_rate":0.2,"latency":"150ms","latency_jitter":"20ms","startup_delay":"5s","crash_after":"10s","flap":true,"flap_period":"3s"}`,
			Knobs{ErrorRate: 0.2, Latency: 150 * time.Millisecond, LatencyJitter: 20 * time.Millisecond, StartupDelay: 5 * time.Second, CrashAfter: 10 * time.Second, Flap: true, FlapPeriod: 3 * time.Second}, ""},
		{"flap default period", `{"error_rate":1,"flap":true}`, Knobs{ErrorRate: 1, Flap: true, FlapPeriod: DefaultFlapPeriod}, ""},
		{"unknown knob", `{"error_rat":0.1}`, Knobs{}, `unknown field "error_rat"`},
		{"bad duration", `{"latency":"fast"}`, Knobs{}, `knob "latency"`},
		{"number duration", `{"startup_delay":5}`, Knobs{}, "startup_delay"},
		{"rate too high", `{"error_rate":1.5}`, Knobs{}, `knob "error_rate"`},
		{"negative", `{"crash_after":"-1s"}`, Knobs{}, `knob "crash_after"`},
		{"period without flap", `{"error_rate":0.1,"flap_period":"1s"}`, Knobs{}, `"flap_period" is set`},
		{"flap without errors", `{"flap":true}`, Knobs{}, `"flap" needs`},
		{"trailing", `{} {}`, Knobs{}, "after top-level value"},
		{"not json", `latency: 1s`, Knobs{}, "invalid character"},
	}
	for _, tt := range tests {
		got, err := ParseKnobs([]byte(tt.json))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err = %v, want it to mention %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: = %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
}

func TestWriteAndLoadKnobs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if k, err := LoadKnobs(dir); err != nil || k != (Knobs{}) {
		t.Fatalf("LoadKnobs without a file = %+v, %v; want zero knobs", k, err)
	}
	want := Knobs{ErrorRate: 0.05, Latency: 150 * time.Millisecond, StartupDelay: 2 * time.Second}
	if err := WriteKnobs(dir, want); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, KnobsFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"latency": "150ms"`) || strings.Contains(string(data), "crash_after") {
		t.Fatalf("knobs.json = %s; want durations as strings and zero knobs left out", data)
	}
	got, err := LoadKnobs(dir)
	if err != nil || got != want {
		t.Fatalf("LoadKnobs = %+v, %v; want %+v", got, err, want)
	}
	if err := WriteKnobs(dir, Knobs{ErrorRate: 2}); err == nil {
		t.Fatal("WriteKnobs accepted error_rate 2")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("release dir holds %d entries after writes, want only %s", len(entries), KnobsFile)
	}
}

func TestRunRejectsBadKnobsBeforeListening(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "r9")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, KnobsFile), []byte(`{"explode":true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = Run(context.Background(), Config{Listener: ln, ReleaseDir: dir})
	if err == nil || !strings.Contains(err.Error(), "explode") {
		t.Fatalf("Run with an unknown knob = %v, want an error naming it", err)
	}
}

// TestFollowLinkServesTheNewReleaseAfterASwitch: with FollowLink the service
// reads current on every request, so an atomic switch changes what it
// serves (release and knobs) with no restart and no failed request.
func TestFollowLinkServesTheNewReleaseAfterASwitch(t *testing.T) {
	deploy := t.TempDir()
	for _, rel := range []string{"r1", "r2"} {
		if err := os.MkdirAll(filepath.Join(deploy, "releases", rel), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteKnobs(filepath.Join(deploy, "releases", "r2"), Knobs{ErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	current := filepath.Join(deploy, "current")
	if err := os.Symlink("releases/r1", current); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Config{Listener: ln, ReleaseDir: current, FollowLink: true}) }()
	defer func() { cancel(); <-done }()
	url := "http://" + ln.Addr().String() + "/"
	get := func() (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get(ReleaseHeader)
	}
	if code, rel := get(); code != 200 || rel != "r1" {
		t.Fatalf("before the switch: %d %s", code, rel)
	}
	tmp := filepath.Join(deploy, "current.tmp")
	if err := os.Symlink("releases/r2", tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, current); err != nil {
		t.Fatal(err)
	}
	if code, rel := get(); code != 500 || rel != "r2" {
		t.Fatalf("after the switch to r2 (error_rate 1): %d %s", code, rel)
	}
}
