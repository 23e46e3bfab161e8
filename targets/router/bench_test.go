package router

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"

	"flightdeck/engine"
)

// rawBackend is a minimal HTTP/1.1 server on loopback that answers every
// body-less request with a fixed response without allocating, so that a
// benchmark's allocation figures are the router's own.
func rawBackend(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReaderSize(c, 8<<10)
				for {
					line, err := br.ReadSlice('\n')
					if err != nil {
						return
					}
					if len(bytes.TrimRight(line, "\r\n")) == 0 {
						if _, err := c.Write(resp); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// discardWriter is a reusable ResponseWriter.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

func benchRouter(b *testing.B, addrs ...string) *Router {
	cfg := Config{StateFile: b.TempDir() + "/router.json", Logger: discardLogger()}
	r, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	if err := r.SetPool("blue", addrs); err != nil {
		b.Fatal(err)
	}
	if err := r.SetRoute(engine.Route{Stable: "blue"}); err != nil {
		b.Fatal(err)
	}
	for _, a := range addrs {
		for !backendInRotation(r, a) {
			// The first health check runs at once; yield until it passed.
			runtime.Gosched()
		}
	}
	return r
}

func backendInRotation(r *Router, addr string) bool {
	b := r.table.Load().backends[addr]
	return b != nil && b.inRotation()
}

// BenchmarkProxy measures the router's request path (routing, backend
// choice, ReverseProxy, transport, metrics) against a real loopback
// backend. Allocation figures exclude the client and the backend.
func BenchmarkProxy(b *testing.B) {
	r := benchRouter(b, rawBackend(b))
	req, err := http.NewRequest(http.MethodGet, "http://example.test/path?q=1", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.RemoteAddr = "127.0.0.1:40000"
	req.Header.Set("User-Agent", "bench/1.0")
	req.Header.Set("Accept", "*/*")
	w := &discardWriter{h: make(http.Header, 8)}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		clear(w.h)
		w.code = 0
		r.ServeHTTP(w, req)
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
}

// BenchmarkProxyParallel is BenchmarkProxy from GOMAXPROCS goroutines.
func BenchmarkProxyParallel(b *testing.B) {
	r := benchRouter(b, rawBackend(b), rawBackend(b))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, _ := http.NewRequest(http.MethodGet, "http://example.test/path", nil)
		req.RemoteAddr = "127.0.0.1:40000"
		w := &discardWriter{h: make(http.Header, 8)}
		for pb.Next() {
			clear(w.h)
			r.ServeHTTP(w, req)
		}
	})
}

// BenchmarkProxyEndToEnd goes through the router's real listener with a
// keep-alive client (client allocations included).
func BenchmarkProxyEndToEnd(b *testing.B) {
	r := benchRouter(b, rawBackend(b))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	r.Start(ln, nil)
	url := "http://" + ln.Addr().String() + "/"
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := hc.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
