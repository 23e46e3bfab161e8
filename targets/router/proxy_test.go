package router

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"flightdeck/engine"
)

// proxyTo starts a router whose only release is served by h and returns
// the proxy URL and the router.
func proxyTo(t *testing.T, h http.HandlerFunc) (string, *testRouter) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == DefaultHealthPath {
			return
		}
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	b := &testBackend{name: "blue", srv: srv, addr: strings.TrimPrefix(srv.URL, "http://")}
	b.health.Store(http.StatusOK)
	tr := startRouter(t, testConfig(t))
	tr.setup(t, map[string][]*testBackend{"blue": {b}}, engine.Route{Stable: "blue"})
	return tr.proxyURL, tr
}

func TestProxyRequestHeaders(t *testing.T) {
	seen := make(chan *http.Request, 1)
	url, _ := proxyTo(t, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Clone(r.Context())
	})
	tests := []struct {
		name   string
		header map[string]string
		want   map[string]string // "" means absent
	}{
		{
			name:   "hop-by-hop headers are dropped",
			header: map[string]string{"Connection": "X-Private, keep-alive", "X-Private": "1", "Keep-Alive": "timeout=5", "Proxy-Authorization": "Basic x", "X-Kept": "yes"},
			want:   map[string]string{"X-Private": "", "Keep-Alive": "", "Proxy-Authorization": "", "Connection": "", "X-Kept": "yes"},
		},
		{
			name:   "forwarding headers are set, the client's are not trusted",
			header: map[string]string{"X-Forwarded-For": "10.9.9.9", "X-Forwarded-Host": "evil", "Forwarded": "for=1.2.3.4"},
			want:   map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": "shop.test", "X-Forwarded-Proto": "http", "Forwarded": ""},
		},
		{
			name:   "TE trailers is passed on, other TE values are not",
			header: map[string]string{"Te": "trailers"},
			want:   map[string]string{"Te": "trailers"},
		},
		{
			name:   "no User-Agent stays none",
			header: map[string]string{"User-Agent": ""},
			want:   map[string]string{"User-Agent": ""},
		},
		{
			name:   "User-Agent is kept",
			header: map[string]string{"User-Agent": "probe/2"},
			want:   map[string]string{"User-Agent": "probe/2"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, url+"/p?a=1&b=%20", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = "shop.test"
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := <-seen
			if got.Host != "shop.test" || got.URL.RequestURI() != "/p?a=1&b=%20" {
				t.Errorf("backend saw host %q uri %q", got.Host, got.URL.RequestURI())
			}
			for k, v := range tc.want {
				if g := got.Header.Get(k); g != v {
					t.Errorf("backend header %s = %q, want %q", k, g, v)
				}
			}
		})
	}
}

func TestProxyTrustedForwardedFor(t *testing.T) {
	seen := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != DefaultHealthPath {
			seen <- r.Header.Get("X-Forwarded-For")
		}
	}))
	t.Cleanup(srv.Close)
	b := &testBackend{srv: srv, addr: strings.TrimPrefix(srv.URL, "http://")}
	b.health.Store(http.StatusOK)
	cfg := testConfig(t)
	cfg.TrustForwardedHeaders = true
	tr := startRouter(t, cfg)
	tr.setup(t, map[string][]*testBackend{"blue": {b}}, engine.Route{Stable: "blue"})
	get(t, http.DefaultClient, tr.proxyURL+"/", map[string]string{"X-Forwarded-For": "10.1.1.1"})
	if got := <-seen; got != "10.1.1.1, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", got)
	}
}

func TestProxyResponse(t *testing.T) {
	url, tr := proxyTo(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("Connection", "X-Hop")
			w.Header().Set("X-Hop", "1")
			w.Header().Add("Set-Cookie", "a=1")
			w.Header().Add("Set-Cookie", "b=2")
			w.WriteHeader(http.StatusCreated)
			w.Write(body)
		case "/trailer":
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "data")
			w.Header().Set("X-Sum", "42")
		case "/head":
			w.Header().Set("Content-Length", "1234")
		}
	})
	body := strings.Repeat("x", 100<<10)
	resp, err := http.Post(url+"/echo", "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(got) != body || resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST echo: status %d, %d bytes, err %v", resp.StatusCode, len(got), err)
	}
	if resp.Header.Get("X-Hop") != "" || len(resp.Header["Set-Cookie"]) != 2 {
		t.Errorf("response headers: %v", resp.Header)
	}

	resp, err = http.Get(url + "/trailer")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Trailer.Get("X-Sum") != "42" {
		t.Errorf("trailer X-Sum = %q", resp.Trailer.Get("X-Sum"))
	}

	resp, err = http.Head(url + "/head")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ContentLength != 1234 {
		t.Errorf("HEAD Content-Length = %d", resp.ContentLength)
	}
	if s := tr.r.Stats()["blue"]; s.Status2xx != 3 || s.Requests != 3 {
		t.Errorf("stats: %+v", s)
	}
}

func TestProxyStreamsEvents(t *testing.T) {
	next := make(chan struct{})
	url, _ := proxyTo(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Content-Length", "24") // flushed anyway: it is an event stream
		for range 2 {
			io.WriteString(w, "data: hello-world-ev\n\n"[:12])
			w.(http.Flusher).Flush()
			<-next
		}
	})
	resp, err := http.Get(url + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := range 2 {
		// The backend waits for next before it writes more: this chunk
		// can only arrive if the router flushed it.
		buf := make([]byte, 12)
		if _, err := io.ReadFull(br, buf); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		next <- struct{}{}
	}
}

func TestProxyForwards1xx(t *testing.T) {
	url, _ := proxyTo(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</app.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "ok")
	})
	var hints []string
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(conn)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			break
		}
		hints = append(hints, strings.TrimSpace(line))
	}
	all := strings.Join(hints, "\n")
	if !strings.HasPrefix(all, "HTTP/1.1 103 Early Hints\nLink: </app.css>; rel=preload") || !strings.Contains(all, "HTTP/1.1 200 OK") {
		t.Errorf("raw response:\n%s", all)
	}
}

func TestProxyBackendDiesMidBody(t *testing.T) {
	url, tr := proxyTo(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // drop the connection
	})
	// The client must see a failure: either no response at all (the
	// headers were still buffered) or a body that ends early.
	resp, err := http.Get(url + "/")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("a truncated response read as complete")
	}
	waitFor(t, "the failure counted", func() bool { return tr.r.Stats()["blue"].ConnErrors == 1 })
}

func TestProxyWebSocketUpgrade(t *testing.T) {
	url, _ := proxyTo(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want upgrade", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		line, _ := brw.ReadString('\n')
		io.WriteString(conn, strings.ToUpper(line))
	})
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	io.WriteString(conn, "ping\n")
	if line, err := br.ReadString('\n'); err != nil || line != "PING\n" {
		t.Fatalf("echo over upgraded connection: %q %v", line, err)
	}
}

func TestDrainCountsUpgradedConnections(t *testing.T) {
	url, tr := proxyTo(t, func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			io.WriteString(conn, line)
		}
	})
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	io.WriteString(conn, "ping\n")
	if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("echo: %q %v", line, err)
	}
	addr := tr.r.State().Backends[0].Addr
	res, err := tr.r.Drain(ctxT(t), addr, 20*time.Millisecond)
	if err != nil || res.Drained || res.InFlight != 1 {
		t.Fatalf("drain with an open upgraded connection: %+v %v, want 1 in flight", res, err)
	}
	conn.Close() // the session ends: the backend's side closes too
	res, err = tr.r.Drain(ctxT(t), addr, 10*time.Second)
	if err != nil || !res.Drained {
		t.Fatalf("drain after the session closed: %+v %v", res, err)
	}
}

func TestPlainQuery(t *testing.T) {
	tests := []struct {
		q    string
		want bool
	}{
		{"", true},
		{"a=1&b=%20x", true},
		{"a=1;b=2", false},
		{"a=%zz", false},
		{"a=%2", false},
		{strings.Repeat("a&", maxQueryParams), false},
	}
	for _, tc := range tests {
		if got := plainQuery(tc.q); got != tc.want {
			t.Errorf("plainQuery(%.20q) = %v, want %v", tc.q, got, tc.want)
		}
	}
}
