package router

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// Trailer fields the router's header rules would keep out (forwarding,
// authentication, routing, framing) must not reach the backend as
// trailers either: some servers merge trailers into the header section.
func TestRequestTrailersAreFiltered(t *testing.T) {
	sb := startScripted(t, func(conn, n int, req *http.Request) rawReply {
		return rawReply{raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}
	})
	tr := routeTo(t, testConfig(t), sb)
	resp := rawRequest(t, tr.proxyURL, "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"4\r\ndata\r\n0\r\n"+
		"X-Forwarded-For: 6.6.6.6\r\nAuthorization: Bearer stolen\r\nHost: evil.example\r\n"+
		"Content-Length: 99\r\nCookie: sid=admin\r\nX-Real-Ip: 6.6.6.6\r\nIf-Match: *\r\n"+
		"X-Checksum: abc\r\n\r\n")
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if len(sb.seen) != 1 || sb.bodies[0] != "data" {
		t.Fatalf("backend saw %d requests, body %q", len(sb.seen), sb.bodies)
	}
	got := slices.Sorted(func(yield func(string) bool) {
		for k := range sb.seen[0].Trailer {
			if !yield(k) {
				return
			}
		}
	})
	if !slices.Equal(got, []string{"X-Checksum"}) || sb.seen[0].Trailer.Get("X-Checksum") != "abc" {
		t.Errorf("backend got trailers %v, want only X-Checksum", sb.seen[0].Trailer)
	}
}

// The same rule holds for a backend's response trailers.
func TestResponseTrailersAreFiltered(t *testing.T) {
	sb := startScripted(t, func(conn, n int, req *http.Request) rawReply {
		return rawReply{raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ndata\r\n0\r\n" +
			"Set-Cookie: sid=admin\r\nLocation: http://evil.example/\r\nContent-Type: text/html\r\n" +
			"X-Forwarded-For: 6.6.6.6\r\nWww-Authenticate: Basic\r\nX-Checksum: abc\r\n\r\n"}
	})
	tr := routeTo(t, testConfig(t), sb)
	resp := rawRequest(t, tr.proxyURL, "GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(data) != "data" {
		t.Fatalf("body %q %v", data, err)
	}
	if len(resp.Trailer) != 1 || resp.Trailer.Get("X-Checksum") != "abc" {
		t.Errorf("client got trailers %v, want only X-Checksum", resp.Trailer)
	}
}

// RFC 9112 §6.3: a request with both Content-Length and Transfer-Encoding
// may be a smuggling attempt: it is answered, and the connection closed
// so that nothing after it on the connection is read as a request.
func TestContentLengthWithTransferEncodingClosesTheConnection(t *testing.T) {
	sb := startScripted(t, func(conn, n int, req *http.Request) rawReply {
		return rawReply{raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}
	})
	tr := routeTo(t, testConfig(t), sb)
	for _, head := range []string{
		"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
		"transfer-encoding: chunked\r\ncontent-length: 4\r\n",
	} {
		c, err := net.Dial("tcp", strings.TrimPrefix(tr.proxyURL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// The smuggled second request must never be answered.
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\n"+head+"\r\n4\r\ndata\r\n0\r\n\r\n"+
			"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !resp.Close {
			t.Errorf("%q: status %d, close %v; want 400 and Connection: close", head, resp.StatusCode, resp.Close)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := br.ReadByte(); err != io.EOF {
			t.Errorf("%q: the connection stays open after the answer (read %q, %v)", head, n, err)
		}
	}
	// A plain chunked request on the same kind of connection still works.
	resp := rawRequest(t, tr.proxyURL, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ndata\r\n0\r\n\r\n")
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Errorf("plain chunked request: %d, close %v", resp.StatusCode, resp.Close)
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if len(sb.seen) != 1 || sb.seen[0].URL.Path != "/" {
		for _, r := range sb.seen {
			t.Errorf("backend saw %s %s", r.Method, r.URL.Path)
		}
		t.Fatal("want only the plain chunked request to reach the backend")
	}
}
