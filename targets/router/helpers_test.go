package router

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"flightdeck/engine"
)

// testBackend is a real HTTP server on 127.0.0.1 that answers its name.
type testBackend struct {
	name   string
	srv    *httptest.Server
	addr   string
	hits   atomic.Int64 // non-health requests
	health atomic.Int32 // status of /healthz
	// block, when set, makes requests to /slow wait until it is closed.
	block   chan struct{}
	entered chan struct{} // receives when a /slow request arrived
}

func startBackend(t *testing.T, name string) *testBackend {
	t.Helper()
	b := &testBackend{name: name, block: make(chan struct{}), entered: make(chan struct{}, 16)}
	b.health.Store(http.StatusOK)
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == DefaultHealthPath {
			w.WriteHeader(int(b.health.Load()))
			return
		}
		b.hits.Add(1)
		if r.URL.Path == "/slow" {
			b.entered <- struct{}{}
			<-b.block
		}
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusInternalServerError)
		}
		if r.URL.Path == "/echo" {
			body, _ := io.ReadAll(r.Body)
			io.WriteString(w, name+":"+string(body))
			return
		}
		io.WriteString(w, name)
	}))
	b.addr = strings.TrimPrefix(b.srv.URL, "http://")
	t.Cleanup(b.srv.Close)
	return b
}

type testRouter struct {
	r        *Router
	cfg      Config
	proxyURL string
	adminURL string
	client   *Client
}

func testConfig(t *testing.T) Config {
	return Config{
		StateFile:      t.TempDir() + "/router.json",
		HealthInterval: 20 * time.Millisecond,
		HealthTimeout:  time.Second,
		HealthFailures: 2,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// startRouter starts a router on loopback listeners; it is closed at cleanup.
func startRouter(t *testing.T, cfg Config) *testRouter {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	pl, al := listen(t), listen(t)
	r.Start(pl, al)
	t.Cleanup(func() { r.Close() })
	tr := &testRouter{r: r, cfg: cfg, proxyURL: "http://" + pl.Addr().String(), adminURL: "http://" + al.Addr().String()}
	tr.client, err = NewClient(tr.adminURL, r.Token())
	if err != nil {
		t.Fatal(err)
	}
	tr.client.PollInterval = 5 * time.Millisecond
	return tr
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// setup creates pools and waits until every backend is healthy.
func (tr *testRouter) setup(t *testing.T, pools map[string][]*testBackend, route engine.Route) {
	t.Helper()
	ctx := ctxT(t)
	for rel, bs := range pools {
		var addrs []string
		for _, b := range bs {
			addrs = append(addrs, b.addr)
		}
		if err := tr.client.SetPool(ctx, rel, addrs); err != nil {
			t.Fatalf("SetPool %s: %v", rel, err)
		}
	}
	for _, bs := range pools {
		for _, b := range bs {
			if b.health.Load() != http.StatusOK {
				continue
			}
			if err := tr.client.WaitHealthy(ctx, b.addr); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tr.client.SetRoute(ctx, route); err != nil {
		t.Fatalf("SetRoute: %v", err)
	}
}

// get sends one request through the proxy and returns status and body.
func get(t *testing.T, hc *http.Client, url string, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func backendStatus(t *testing.T, r *Router, addr string) engine.BackendStatus {
	t.Helper()
	for _, b := range r.State().Backends {
		if b.Addr == addr {
			return b
		}
	}
	t.Fatalf("backend %s not in state", addr)
	return engine.BackendStatus{}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
