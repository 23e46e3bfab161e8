// Package testbackend is an HTTP server standing for one host's
// application in load balancer tests: it answers its name (header
// X-Backend and body), /healthz with 200 (503 while not ready), can
// answer 500 to every Nth request or add a delay, and holds requests to
// /slow until released.
package testbackend

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Backend is a running test backend.
type Backend struct {
	Name, Addr string
	// Ready is what /healthz says (true: 200).
	Ready atomic.Bool
	// Hits counts requests other than health checks.
	Hits atomic.Int64
	// Delay (ns) is added to every request; FailEvery > 0 answers 500 to
	// every FailEvery-th request.
	Delay, FailEvery atomic.Int64
	// InSlow receives a value when a request to /slow arrives.
	InSlow chan struct{}

	mu      sync.Mutex
	release chan struct{}
}

// Start runs a backend on a loopback port until the end of the test.
func Start(t testing.TB, name string) *Backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &Backend{Name: name, Addr: ln.Addr().String(), release: make(chan struct{}), InSlow: make(chan struct{}, 16)}
	b.Ready.Store(true)
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return b
}

// Unblock lets the requests held on /slow finish; later ones are held again.
func (b *Backend) Unblock() {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.release)
	b.release = make(chan struct{})
}

// ServeHTTP implements http.Handler.
func (b *Backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		if !b.Ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		return
	}
	n := b.Hits.Add(1)
	if d := b.Delay.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	if r.URL.Path == "/slow" {
		b.mu.Lock()
		release := b.release
		b.mu.Unlock()
		b.InSlow <- struct{}{}
		<-release
	}
	w.Header().Set("X-Backend", b.Name)
	if f := b.FailEvery.Load(); f > 0 && n%f == 0 {
		w.WriteHeader(http.StatusInternalServerError)
	}
	io.WriteString(w, b.Name)
}

// Addrs returns the addresses of the backends named, in order.
func Addrs(bs map[string]*Backend, names ...string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = bs[n].Addr
	}
	return out
}

// Hits sends n GET requests to url (with header h) and counts who
// answered: the value of the response header by (X-Backend for these
// backends), "status N" for another status than 200, or "error".
func Hits(t testing.TB, url string, n int, h http.Header, by string) map[string]int {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 20 * time.Second}
	defer hc.CloseIdleConnections()
	out := map[string]int{}
	for range n {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := hc.Do(req)
		if err != nil {
			out["error"]++
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			out["status "+strconv.Itoa(resp.StatusCode)]++
			continue
		}
		out[resp.Header.Get(by)]++
	}
	return out
}
