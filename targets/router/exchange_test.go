package router

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"flightdeck/engine"
)

// rawReply is what a scripted backend does with one request.
type rawReply struct {
	first string        // written at once, before waiting for wait
	pause time.Duration // a slow backend: pause between first and raw
	wait  chan struct{} // when set, closed by the test to let raw follow
	raw   string        // written as is
	close bool          // close the connection after writing raw
	// closeUnread: after writing raw, wait until the next request's
	// first bytes arrive and close the connection without reading them
	// (the kernel then resets it).
	closeUnread bool
}

// scriptedBackend is a TCP server on loopback that parses each request
// with net/http's own reader and answers with raw bytes chosen by answer
// (conn is the connection's number, from 1; n the request's on it, from
// 1). Health checks get 200 and do not count.
type scriptedBackend struct {
	addr   string
	conns  atomic.Int64 // connections that carried a non-health request
	mu     sync.Mutex
	seen   []*http.Request // non-health requests, bodies read into bodies
	bodies []string
	closed chan int // receives a connection's number when the backend closed it
}

func startScripted(t *testing.T, answer func(conn, n int, req *http.Request) rawReply) *scriptedBackend {
	t.Helper()
	ln := listen(t)
	sb := &scriptedBackend{addr: ln.Addr().String(), closed: make(chan int, 64)}
	serveConns(t, ln, func(c net.Conn) {
		br := bufio.NewReader(c)
		id, n := 0, 0
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body, _ := io.ReadAll(req.Body)
			if req.URL.Path == DefaultHealthPath {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
				continue
			}
			if id == 0 {
				id = int(sb.conns.Add(1))
			}
			n++
			sb.mu.Lock()
			sb.seen = append(sb.seen, req)
			sb.bodies = append(sb.bodies, string(body))
			sb.mu.Unlock()
			rep := answer(id, n, req)
			if rep.first != "" {
				io.WriteString(c, rep.first)
			}
			if rep.pause > 0 {
				time.Sleep(rep.pause)
			}
			if rep.wait != nil {
				<-rep.wait
			}
			io.WriteString(c, rep.raw)
			if rep.closeUnread {
				if err := awaitBytes(c); err != nil {
					t.Errorf("scripted backend: waiting for a request: %v", err)
				}
				rep.close = true
			}
			if rep.close {
				c.Close()
				sb.closed <- id
				return
			}
		}
	})
	return sb
}

// awaitBytes waits until bytes can be read from c, without reading them.
func awaitBytes(c net.Conn) error {
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return err
	}
	var buf [1]byte
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		_, _, perr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return perr != syscall.EAGAIN
	})
	return errors.Join(err, perr)
}

// serveConns accepts connections on ln until the test ends, each handled
// by handle on its own goroutine and closed when handle returns. At
// cleanup it closes the listener and every open connection, and waits for
// the handlers.
func serveConns(t *testing.T, ln net.Listener, handle func(c net.Conn)) {
	var wg sync.WaitGroup
	var open sync.Map
	t.Cleanup(func() {
		ln.Close()
		open.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			open.Store(c, true)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
}

func (sb *scriptedBackend) requests() int {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return len(sb.seen)
}

// routeTo starts a router whose stable release is the scripted backend.
func routeTo(t *testing.T, cfg Config, sb *scriptedBackend) *testRouter {
	t.Helper()
	tr := startRouter(t, cfg)
	b := &testBackend{addr: sb.addr}
	b.health.Store(http.StatusOK)
	tr.setup(t, map[string][]*testBackend{"blue": {b}}, engine.Route{Stable: "blue"})
	return tr
}

// idleConns returns the router's idle connections to addr.
func idleConns(r *Router, addr string) []*upConn {
	b := r.table.Load().backends[addr]
	b.conns.mu.Lock()
	defer b.conns.mu.Unlock()
	return append([]*upConn(nil), b.conns.idle...)
}

func do(t *testing.T, method, url string) (int, string, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A new client connection each time: the router's side is under test.
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func TestExchangeFraming(t *testing.T) {
	tests := []struct {
		name     string
		reply    rawReply
		status   int    // 0: the client sees a transport error or a cut body
		body     string // when status is not 0
		reused   bool   // a second request goes over the same connection
		connErrs uint64 // counted backend failures per request
	}{
		{name: "content-length", reply: rawReply{raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"}, status: 200, body: "hello", reused: true},
		{name: "no reason phrase", reply: rawReply{raw: "HTTP/1.1 201\r\nContent-Length: 2\r\n\r\nok"}, status: 201, body: "ok", reused: true},
		{name: "chunked with extensions", reply: rawReply{raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"}, status: 200, body: "hello world", reused: true},
		{name: "until close", reply: rawReply{raw: "HTTP/1.1 200 OK\r\n\r\nto the end", close: true}, status: 200, body: "to the end"},
		{name: "HTTP/1.0 is not kept alive", reply: rawReply{raw: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"}, status: 200, body: "ok"},
		{name: "Connection close", reply: rawReply{raw: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"}, status: 200, body: "ok"},
		{name: "chunked wins over length, connection dropped", reply: rawReply{raw: "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"}, status: 200, body: "ok"},
		{name: "204 has no body", reply: rawReply{raw: "HTTP/1.1 204 No Content\r\n\r\n"}, status: 204, body: "", reused: true},
		{name: "equal repeated lengths", reply: rawReply{raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"}, status: 200, body: "ok", reused: true},
		{name: "conflicting lengths", reply: rawReply{raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"}, status: 502, body: "bad gateway: backend unreachable\n", connErrs: 1},
		{name: "bad length", reply: rawReply{raw: "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\nok"}, status: 502, body: "bad gateway: backend unreachable\n", connErrs: 1},
		{name: "obsolete line folding", reply: rawReply{raw: "HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 2\r\n\r\nok"}, status: 502, body: "bad gateway: backend unreachable\n", connErrs: 1},
		{name: "space before colon", reply: rawReply{raw: "HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 2\r\n\r\nok"}, status: 502, body: "bad gateway: backend unreachable\n", connErrs: 1},
		{name: "control byte in a value", reply: rawReply{raw: "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok"}, status: 502, body: "bad gateway: backend unreachable\n", connErrs: 1},
		{name: "not HTTP/1.x", reply: rawReply{raw: "HTTP/2 200 OK\r\nContent-Length: 2\r\n\r\nok"}, status: 502, body: "bad gateway: backend unreachable\n", connErrs: 1},
		{name: "header too large", reply: rawReply{raw: "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", maxResponseHeaderBytes) + "\r\n\r\n"}, status: 502, body: "bad gateway: backend unreachable\n", connErrs: 1},
		{name: "long header line within the limit", reply: rawReply{raw: "HTTP/1.1 200 OK\r\nX-Long: " + strings.Repeat("l", 40<<10) + "\r\nContent-Length: 2\r\n\r\nok"}, status: 200, body: "ok", reused: true},
		{name: "bad chunk size cuts the body", reply: rawReply{raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\n"}, connErrs: 1},
		{name: "short body cuts the body", reply: rawReply{raw: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", close: true}, connErrs: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sb := startScripted(t, func(conn, n int, req *http.Request) rawReply { return tc.reply })
			tr := routeTo(t, testConfig(t), sb)
			for i := range 2 {
				status, body, err := do(t, http.MethodGet, tr.proxyURL+"/x")
				if tc.status == 0 {
					if err == nil {
						t.Fatalf("request %d: status %d body %q read as complete", i, status, body)
					}
				} else if err != nil || status != tc.status || body != tc.body {
					t.Fatalf("request %d: status %d body %q err %v, want %d %q", i, status, body, err, tc.status, tc.body)
				}
			}
			want := int64(2)
			if tc.reused {
				want = 1
			}
			if got := sb.conns.Load(); got != want {
				t.Errorf("backend connections for 2 requests = %d, want %d", got, want)
			}
			waitFor(t, "the failures counted", func() bool { return tr.r.Stats()["blue"].ConnErrors == 2*tc.connErrs })
			if tc.status != 0 {
				if h := tr.r.table.Load().backends[sb.addr]; h.inflight.Load() != 0 {
					t.Errorf("in flight after the requests: %d", h.inflight.Load())
				}
			}
		})
	}
}

func TestExchangeResponseHeaders(t *testing.T) {
	sb := startScripted(t, func(conn, n int, req *http.Request) rawReply {
		return rawReply{raw: "HTTP/1.1 200 OK\r\n" +
			"content-TYPE: text/plain\r\n" +
			"Connection: keep-alive, X-Secret\r\n" +
			"X-Secret: hop\r\n" +
			"Keep-Alive: timeout=5\r\n" +
			"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n" +
			"X-Custom-Thing:   padded value \t\r\n" +
			"Content-Length: 2\r\n\r\nok"}
	})
	tr := routeTo(t, testConfig(t), sb)
	resp, err := http.Get(tr.proxyURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	h := resp.Header
	if h.Get("Content-Type") != "text/plain" || h.Get("X-Custom-Thing") != "padded value" || len(h["Set-Cookie"]) != 2 {
		t.Errorf("headers not relayed: %v", h)
	}
	for _, k := range []string{"X-Secret", "Keep-Alive"} {
		if _, ok := h[k]; ok {
			t.Errorf("hop-by-hop %s relayed: %v", k, h)
		}
	}
}

func TestExchangeStaleConnection(t *testing.T) {
	t.Run("closed while idle is noticed before use", func(t *testing.T) {
		// The backend answers one request per connection, then closes it
		// without saying so (as a server that shuts down gracefully does
		// with idle connections).
		sb := startScripted(t, func(conn, n int, req *http.Request) rawReply {
			return rawReply{raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", close: true}
		})
		tr := routeTo(t, testConfig(t), sb)
		if status, _, err := do(t, http.MethodPost, tr.proxyURL+"/"); err != nil || status != 200 {
			t.Fatalf("first POST: %d %v", status, err)
		}
		<-sb.closed
		waitFor(t, "the idle connection's FIN to arrive", func() bool {
			idle := idleConns(tr.r, sb.addr)
			return len(idle) == 1 && !idle[0].alive.check()
		})
		// A POST is not idempotent: it must not be sent on the dead
		// connection (which would fail it), nor twice.
		if status, body, err := do(t, http.MethodPost, tr.proxyURL+"/"); err != nil || status != 200 || body != "ok" {
			t.Fatalf("POST after the backend closed its idle connection: %d %q %v", status, body, err)
		}
		if sb.requests() != 2 || sb.conns.Load() != 2 {
			t.Errorf("backend saw %d requests on %d connections, want 2 on 2", sb.requests(), sb.conns.Load())
		}
	})

	// The backend reads the second request on a kept-alive connection and
	// closes it without an answer: the race a peek cannot see.
	dropSecond := func(conn, n int, req *http.Request) rawReply {
		if conn == 1 && n == 2 {
			return rawReply{close: true}
		}
		return rawReply{raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}
	}
	t.Run("idempotent request is sent again", func(t *testing.T) {
		sb := startScripted(t, dropSecond)
		tr := routeTo(t, testConfig(t), sb)
		for i := range 2 {
			if status, body, err := do(t, http.MethodGet, tr.proxyURL+"/"); err != nil || status != 200 || body != "ok" {
				t.Fatalf("GET %d: %d %q %v", i, status, body, err)
			}
		}
		if sb.requests() != 3 || sb.conns.Load() != 2 {
			t.Errorf("backend saw %d requests on %d connections, want 3 on 2", sb.requests(), sb.conns.Load())
		}
		if s := tr.r.Stats()["blue"]; s.ConnErrors != 0 {
			t.Errorf("a stale connection counted as a backend failure: %+v", s)
		}
		// An operator sees it in /metrics: one resend.
		fams := scrape(t, tr)
		var resends float64 = -1
		for _, m := range fams["flightdeck_router_backend_resends_total"].GetMetric() {
			if label(m, "backend") == sb.addr {
				resends = m.GetCounter().GetValue()
			}
		}
		if resends != 1 {
			t.Errorf("resends_total = %v, want 1", resends)
		}
	})
	t.Run("non-idempotent request is not", func(t *testing.T) {
		sb := startScripted(t, dropSecond)
		tr := routeTo(t, testConfig(t), sb)
		if status, _, err := do(t, http.MethodPost, tr.proxyURL+"/"); err != nil || status != 200 {
			t.Fatalf("first POST: %d %v", status, err)
		}
		if status, _, err := do(t, http.MethodPost, tr.proxyURL+"/"); err != nil || status != http.StatusBadGateway {
			t.Fatalf("second POST: %d %v, want 502", status, err)
		}
		if sb.requests() != 2 {
			t.Errorf("backend saw %d requests, want 2: the POST was sent again", sb.requests())
		}
	})
}

func TestExchangeResponseTimeout(t *testing.T) {
	b := startBackend(t, "blue")
	cfg := testConfig(t)
	cfg.ResponseHeaderTimeout = 50 * time.Millisecond
	tr := startRouter(t, cfg)
	tr.setup(t, map[string][]*testBackend{"blue": {b}}, engine.Route{Stable: "blue"})
	status, body, err := do(t, http.MethodGet, tr.proxyURL+"/slow")
	close(b.block)
	if err != nil || status != http.StatusGatewayTimeout || !strings.Contains(body, "did not answer in time") {
		t.Fatalf("slow backend: %d %q %v, want 504", status, body, err)
	}
	if s := tr.r.Stats()["blue"]; s.ConnErrors != 1 {
		t.Errorf("stats: %+v", s)
	}
}

func TestExchangeClientGoneEndsBackendRequest(t *testing.T) {
	entered, gone := make(chan struct{}), make(chan struct{})
	url, tr := proxyTo(t, func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done() // the router closed its connection
		close(gone)
	})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/wait", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-entered
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("client: %v", err)
	}
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the backend request still runs 10 s after the client left")
	}
	// Counted as a request, and neither as a backend failure nor as an
	// answer (the client got none).
	waitFor(t, "the request counted", func() bool { return tr.r.Stats()["blue"].Requests == 1 })
	if s := tr.r.Stats()["blue"]; s.ConnErrors != 0 || s.Status2xx+s.Status5xx != 0 {
		t.Errorf("stats: %+v", s)
	}
}

func TestExchangeChunkedUpload(t *testing.T) {
	type seen struct {
		body, digest string
		te           []string
	}
	got := make(chan seen, 1)
	url, _ := proxyTo(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- seen{string(body), r.Trailer.Get("X-Digest"), r.TransferEncoding}
	})
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPut, url+"/upload", pr)
	req.Trailer = http.Header{"X-Digest": nil}
	go func() {
		for i := range 100 {
			fmt.Fprintf(pw, "part %03d;", i)
		}
		req.Trailer.Set("X-Digest", "sum-42")
		pw.Close()
	}()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	s := <-got
	if len(s.body) != 900 || !strings.HasPrefix(s.body, "part 000;") || !strings.HasSuffix(s.body, "part 099;") {
		t.Errorf("backend body: %d bytes %.20q", len(s.body), s.body)
	}
	if s.digest != "sum-42" || len(s.te) != 1 || s.te[0] != "chunked" {
		t.Errorf("backend saw trailer %q, transfer-encoding %v", s.digest, s.te)
	}
}

func TestExchangeBadClientBodyIs400(t *testing.T) {
	sb := startScripted(t, func(conn, n int, req *http.Request) rawReply {
		return rawReply{raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}
	})
	tr := routeTo(t, testConfig(t), sb)
	resp := rawRequest(t, tr.proxyURL, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\nzz\r\n")
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d, want 400", resp.StatusCode)
	}
	if s := tr.r.Stats()["blue"]; s.ConnErrors != 0 {
		t.Errorf("the client's bad body was blamed on the backend: %+v", s)
	}
}

func TestExchangeKeepsConnectionsAlive(t *testing.T) {
	sb := startScripted(t, func(conn, n int, req *http.Request) rawReply {
		return rawReply{raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}
	})
	tr := routeTo(t, testConfig(t), sb)
	hc := &http.Client{}
	for range 50 {
		if status, body := get(t, hc, tr.proxyURL+"/", nil); status != 200 || body != "ok" {
			t.Fatalf("%d %q", status, body)
		}
	}
	if n := sb.conns.Load(); n != 1 {
		t.Errorf("50 sequential requests used %d backend connections, want 1", n)
	}
	// What the backend received is plain HTTP/1.1 with the router's own
	// framing and forwarding headers.
	sb.mu.Lock()
	req := sb.seen[0]
	sb.mu.Unlock()
	if req.ProtoMinor != 1 || req.Header.Get("X-Forwarded-For") != "127.0.0.1" || req.Header.Get("X-Forwarded-Proto") != "http" {
		t.Errorf("backend request: %s %v", req.Proto, req.Header)
	}
	if len(req.TransferEncoding) != 0 || req.ContentLength != 0 {
		t.Errorf("a GET was sent with a body framing: %v %d", req.TransferEncoding, req.ContentLength)
	}
}

// TestExchangeSlowAnswer covers answers that do not come at once: the
// router then watches the client and waits up to the header timeout.
func TestExchangeSlowAnswer(t *testing.T) {
	tests := []struct {
		name    string
		first   string // written before the backend waits
		raw     string // written after the test let it go
		timeout time.Duration
		quick   time.Duration // the quick-answer window; default 1 µs
		pause   time.Duration // the backend pauses this long after first
		status  int
	}{
		// The status line comes within the quick window, the rest after it.
		{name: "head split across the quick window", first: "HTTP/1.1 200 OK\r\n", raw: "Content-Length: 2\r\n\r\nok", quick: 30 * time.Millisecond, pause: 90 * time.Millisecond, timeout: 10 * time.Second, status: 200},
		{name: "answer after a wait", raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", timeout: 10 * time.Second, status: 200},
		{name: "head split by a wait", first: "HTTP/1.1 200 OK\r\nX-A: 1\r\n", raw: "Content-Length: 2\r\n\r\nok", timeout: 10 * time.Second, status: 200},
		{name: "1xx, then the final answer after a wait", first: "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", timeout: 10 * time.Second, status: 200},
		{name: "no answer within the header timeout", timeout: 50 * time.Millisecond, status: http.StatusGatewayTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			entered := make(chan struct{}, 2)
			sb := startScripted(t, func(conn, n int, req *http.Request) rawReply {
				entered <- struct{}{}
				return rawReply{first: tc.first, pause: tc.pause, wait: release, raw: tc.raw}
			})
			cfg := testConfig(t)
			cfg.quickAnswer = time.Microsecond // every answer is a slow one
			if tc.quick > 0 {
				cfg.quickAnswer = tc.quick
			}
			cfg.ResponseHeaderTimeout = tc.timeout
			tr := routeTo(t, cfg, sb)
			type result struct {
				status int
				body   string
				err    error
			}
			done := make(chan result, 1)
			go func() {
				status, body, err := do(t, http.MethodGet, tr.proxyURL+"/")
				done <- result{status, body, err}
			}()
			<-entered
			if tc.status == http.StatusGatewayTimeout {
				res := <-done // the timeout fires while the backend still holds the answer
				close(release)
				if res.err != nil || res.status != tc.status {
					t.Fatalf("got %d %q %v, want %d", res.status, res.body, res.err, tc.status)
				}
				return
			}
			close(release)
			res := <-done
			if res.err != nil || res.status != tc.status || res.body != "ok" {
				t.Fatalf("got %d %q %v, want %d ok", res.status, res.body, res.err, tc.status)
			}
			// The watch was stopped cleanly: the connection is reused.
			if status, _, err := do(t, http.MethodGet, tr.proxyURL+"/"); err != nil || status != 200 {
				t.Fatalf("second request: %d %v", status, err)
			}
			if n := sb.conns.Load(); n != 1 {
				t.Errorf("backend connections = %d, want 1", n)
			}
		})
	}
}

func TestExchangeEarlyAnswerToAnUpload(t *testing.T) {
	url, tr := proxyTo(t, func(w http.ResponseWriter, r *http.Request) {
		// Refuse without reading the body, as an upload limit does.
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	})
	body := strings.NewReader(strings.Repeat("u", 16<<20))
	resp, err := http.Post(url+"/upload", "application/octet-stream", body)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || string(got) != "too large\n" {
		t.Fatalf("client got %d %q, want the backend's 413", resp.StatusCode, got)
	}
	if s := tr.r.Stats()["blue"]; s.Status4xx != 1 || s.ConnErrors != 0 {
		t.Errorf("stats: %+v", s)
	}
}

func TestExchangeAnnouncedTrailers(t *testing.T) {
	sb := startScripted(t, func(conn, n int, req *http.Request) rawReply {
		return rawReply{raw: "HTTP/1.1 200 OK\r\nTrailer: X-Checksum\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"4\r\ndata\r\n0\r\nX-Checksum: abc123\r\nX-Unannounced: 7\r\n\r\n"}
	})
	tr := routeTo(t, testConfig(t), sb)
	// Read the raw answer: the client must see the trailer announced and
	// both trailer fields after the last chunk.
	resp := rawRequest(t, tr.proxyURL, "GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
	// net/http's reader moves the announcement into resp.Trailer's keys.
	if _, ok := resp.Trailer["X-Checksum"]; !ok || len(resp.Trailer) != 1 {
		t.Errorf("announced trailers %v, want X-Checksum", resp.Trailer)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(data) != "data" {
		t.Fatalf("body %q %v", data, err)
	}
	if resp.Trailer.Get("X-Checksum") != "abc123" || resp.Trailer.Get("X-Unannounced") != "7" {
		t.Errorf("trailers %v", resp.Trailer)
	}
}

// healthServer answers every request with raw and counts requests and
// connections.
type healthServer struct {
	addr            string
	reqs, conns     atomic.Int64
	closeAfterReply bool
}

func startHealthServer(t *testing.T, raw string, closeAfter bool) *healthServer {
	t.Helper()
	ln := listen(t)
	hs := &healthServer{addr: ln.Addr().String(), closeAfterReply: closeAfter}
	serveConns(t, ln, func(c net.Conn) {
		hs.conns.Add(1)
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path != DefaultHealthPath || req.Header.Get("User-Agent") != "flightdeck-router-health" {
				return // not a health check: the test fails on the count
			}
			hs.reqs.Add(1)
			io.WriteString(c, raw)
			if hs.closeAfterReply {
				return
			}
		}
	})
	return hs
}

func TestHealthCheckAnswers(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		close   bool
		healthy bool
		reused  bool // the checks share one connection
	}{
		{name: "200 with a body", raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", healthy: true, reused: true},
		{name: "200 chunked", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", healthy: true, reused: true},
		{name: "204", raw: "HTTP/1.1 204 No Content\r\n\r\n", healthy: true, reused: true},
		{name: "early hints, then 200", raw: "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", healthy: true, reused: true},
		{name: "200 until close", raw: "HTTP/1.1 200 OK\r\n\r\nok", close: true, healthy: true},
		{name: "503 not ready", raw: "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", reused: true},
		{name: "redirect is not healthy", raw: "HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n", reused: true},
		{name: "not HTTP", raw: "SSH-2.0-OpenSSH\r\n\r\n", close: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hs := startHealthServer(t, tc.raw, tc.close)
			tr := startRouter(t, testConfig(t)) // a check every 20 ms
			if err := tr.client.SetPool(ctxT(t), "blue", []string{hs.addr}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "five health checks", func() bool { return hs.reqs.Load() >= 5 })
			if got := backendStatus(t, tr.r, hs.addr).Healthy; got != tc.healthy {
				t.Errorf("healthy = %v after %d checks, want %v", got, hs.reqs.Load(), tc.healthy)
			}
			if conns := hs.conns.Load(); tc.reused && conns != 1 {
				t.Errorf("%d checks used %d connections, want 1", hs.reqs.Load(), conns)
			} else if !tc.reused && conns < 5 {
				t.Errorf("%d checks used %d connections, want one each", hs.reqs.Load(), conns)
			}
		})
	}
}

func TestConnectIsRefused(t *testing.T) {
	sb := startScripted(t, func(conn, n int, req *http.Request) rawReply {
		return rawReply{raw: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"}
	})
	tr := routeTo(t, testConfig(t), sb)
	resp := rawRequest(t, tr.proxyURL, "CONNECT internal.example:22 HTTP/1.1\r\nHost: internal.example:22\r\n\r\n")
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || sb.requests() != 0 {
		t.Errorf("CONNECT: status %d, backend saw %d requests; want 405 and none", resp.StatusCode, sb.requests())
	}
}

// rawRequest sends raw bytes to the router's listener and reads the
// answer; the connection closes at cleanup.
func rawRequest(t *testing.T, proxyURL, raw string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(proxyURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}
