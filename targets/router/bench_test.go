package router

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
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
// choice, the upstream HTTP/1.1 client, metrics) against a real loopback
// backend. Allocation figures exclude the client, the backend and the
// net/http server in front (see BenchmarkProxyServer for the whole).
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

// BenchmarkProxyServer goes through the router's real listener (net/http's
// server) with raw keep-alive clients that allocate nothing, so that its
// allocation figures are the whole router's per request: server side,
// routing, upstream client and metrics.
func BenchmarkProxyServer(b *testing.B) {
	r := benchRouter(b, rawBackend(b))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	r.Start(ln, nil)
	addr := ln.Addr().String()
	req := []byte("GET /path?q=1 HTTP/1.1\r\nHost: example.test\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\n\r\n")
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		br := bufio.NewReaderSize(c, 4<<10)
		for pb.Next() {
			if _, err := c.Write(req); err != nil {
				b.Error(err)
				return
			}
			if err := readRawResponse(br); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// readRawResponse reads one 200 response with a Content-Length body.
func readRawResponse(br *bufio.Reader) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("status line %q", line)
	}
	n := -1
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			l, ok := parseLength(v)
			if !ok {
				return fmt.Errorf("bad length %q", v)
			}
			n = int(l)
		}
	}
	if n < 0 {
		return errors.New("no Content-Length")
	}
	_, err = br.Discard(n)
	return err
}
