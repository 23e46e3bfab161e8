package router

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A client that stops sending its body gets 408 once a read of it waited
// BodyReadTimeout, and neither its connection nor the backend's stays
// open.
func TestStalledBodyTimesOut(t *testing.T) {
	released := make(chan string, 1)
	sb := startScripted(t, func(conn, n int, req *http.Request) rawReply {
		// The backend's read of the body only ends when the router
		// closes the connection: half of the body ever arrives.
		released <- req.URL.Path
		return rawReply{raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}
	})
	cfg := testConfig(t)
	cfg.BodyReadTimeout = 200 * time.Millisecond
	tr := routeTo(t, cfg, sb)
	c, err := net.Dial("tcp", strings.TrimPrefix(tr.proxyURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// More than the router's write buffer, so that it sends on the head
	// and what it got of the body before the rest stalls.
	io.WriteString(c, "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 40000\r\n\r\n"+strings.Repeat("a", 20000))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("status %d, want 408", resp.StatusCode)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("client connection still open after the 408: %v", err)
	}
	select {
	case p := <-released:
		if p != "/slow" {
			t.Errorf("backend saw %s", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the backend connection stays open after the client's body stalled")
	}
	if s := tr.r.Stats()["blue"]; s.ConnErrors != 0 {
		t.Errorf("a stalled client counted as a backend failure: %+v", s)
	}

}

// A body that keeps coming, if slowly, is not cut: each read has its own
// deadline, not the whole upload.
func TestSlowBodyWithinBodyTimeout(t *testing.T) {
	sb := startScripted(t, func(conn, n int, req *http.Request) rawReply {
		return rawReply{raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}
	})
	cfg := testConfig(t)
	cfg.BodyReadTimeout = time.Second
	tr := routeTo(t, cfg, sb)
	pr, pw := io.Pipe()
	go func() {
		for range 30 { // 1.5 s in all: longer than one read's deadline
			pw.Write([]byte("x"))
			time.Sleep(50 * time.Millisecond) // a slow client, well within the per-read deadline
		}
		pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPost, tr.proxyURL+"/trickle", pr)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Errorf("trickled body: %d %q", resp.StatusCode, body)
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if len(sb.bodies) != 1 || sb.bodies[0] != strings.Repeat("x", 30) {
		t.Errorf("backend got %q", sb.bodies)
	}
}

// With MaxConns, a connection beyond the cap waits to be accepted until
// one closes.
func TestMaxConns(t *testing.T) {
	sb := startScripted(t, func(conn, n int, req *http.Request) rawReply {
		return rawReply{raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}
	})
	cfg := testConfig(t)
	cfg.MaxConns = 1
	tr := routeTo(t, cfg, sb)
	addr := strings.TrimPrefix(tr.proxyURL, "http://")
	request := func(c net.Conn, br *bufio.Reader, wait time.Duration) (*http.Response, error) {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(wait))
		resp, err := http.ReadResponse(br, nil)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := request(first, bufio.NewReader(first), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	second, err := net.Dial("tcp", addr) // completes in the kernel's backlog
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	br := bufio.NewReader(second)
	// Checking that no answer comes needs some wait; 300 ms is plenty on
	// loopback for a router that would accept it.
	if resp, err := request(second, br, 300*time.Millisecond); err == nil {
		t.Fatalf("a connection beyond MaxConns was served: %d", resp.StatusCode)
	} else if !errorIsTimeout(err) {
		t.Fatalf("second connection: %v", err)
	}
	first.Close()
	second.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the waiting connection was not served once a slot freed: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status %d", resp.StatusCode)
	}
}

func errorIsTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestHeadScan(t *testing.T) {
	tests := []struct {
		name           string
		parts          []string
		length, encode bool
		done           bool
	}{
		{"plain", []string{"GET / HTTP/1.1\r\nHost: x\r\n\r\n"}, false, false, true},
		{"both", []string{"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"}, true, true, true},
		{"split everywhere", []string{"POST / HTTP/1.1\r\nCONTENT-len", "gth: 4\r\ntransfer-", "Encoding: chunked\r", "\n\r", "\n"}, true, true, true},
		{"bare LF", []string{"POST / HTTP/1.1\nContent-Length: 4\n\n"}, true, false, true},
		{"in a value", []string{"GET / HTTP/1.1\r\nX-A: content-length: 4\r\n"}, false, false, false},
		{"longer name", []string{"GET / HTTP/1.1\r\nContent-Lengths: 4\r\n\r\n"}, false, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h headScan
			for _, p := range tc.parts {
				h.scan([]byte(p))
			}
			if h.length != tc.length || h.encoding != tc.encode || h.done != tc.done {
				t.Errorf("length %v encoding %v done %v", h.length, h.encoding, h.done)
			}
		})
	}
}
