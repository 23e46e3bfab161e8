package router

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// FuzzRequestWriter feeds the request writer what a client could send:
// the raw request is parsed as net/http's server parses it (requests it
// would refuse are skipped), written out as the router writes it to a
// backend, and parsed again as a backend would. What comes out must be
// one well-formed request with the same method, target and body, none of
// the client's hop-by-hop or forwarding headers, and only trailers that
// trailerAllowed lets through. Run for longer with
//
//	go test -run '^$' -fuzz FuzzRequestWriter -fuzztime 1m ./targets/router/
func FuzzRequestWriter(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /a%20b?q=1&r=%41 HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\nTE: trailers, deflate\r\n\r\n",
		"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
		"PUT /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 1\r\nAuthorization: Bearer x\r\nHost: evil\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://other.example/abs?x HTTP/1.1\r\nHost: ignored\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /?; HTTP/1.0\r\n\r\n",
		"DELETE /x HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nProxy-Authorization: Basic x\r\nKeep-Alive: 5\r\nForwarded: for=1\r\n\r\n",
	} {
		f.Add([]byte(seed), false)
		f.Add([]byte(seed), true)
	}
	r := &Router{cfg: Config{BodyReadTimeout: DefaultBodyReadTimeout, RetryBodyLimit: 16}}
	f.Fuzz(func(t *testing.T, raw []byte, trust bool) {
		in, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil || !serverWouldAccept(in) {
			return
		}
		body, err := io.ReadAll(in.Body)
		if err != nil {
			return // a malformed body: the writer reports it as the client's
		}
		// Read again by the writer, as the server's body would be.
		in.Body = io.NopCloser(bytes.NewReader(body))
		in.RemoteAddr = "192.0.2.7:4321"
		r.cfg.TrustForwardedHeaders = trust
		pw := &proxyWriter{proxyState: proxyState{in: in}}
		send := hasBody(in)
		if send {
			// A first attempt whose backend closed the connection unread:
			// a body that fits RetryBodyLimit is kept, and what is checked
			// below is the request sent again from what was kept.
			if err := r.writeBody(bufio.NewWriter(io.Discard), pw); err != nil {
				t.Fatalf("writing the body: %v", err)
			}
			if !pw.replayable() {
				if len(body) <= r.cfg.RetryBodyLimit {
					t.Fatalf("a body of %d bytes is not kept (limit %d)", len(body), r.cfg.RetryBodyLimit)
				}
				// Too long to keep: the body is checked as sent once.
				in.Body = io.NopCloser(bytes.NewReader(body))
				pw.kept = keptBody{}
			}
		}
		var out bytes.Buffer
		bw := bufio.NewWriter(&out)
		r.writeHead(bw, pw, "backend:80", send)
		if send {
			if err := r.writeBody(bw, pw); err != nil {
				t.Fatalf("writing the body: %v", err)
			}
		}
		bw.Flush()

		br := bufio.NewReader(bytes.NewReader(out.Bytes()))
		got, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("the backend cannot parse what the router wrote: %v\n%q", err, out.Bytes())
		}
		gotBody, err := io.ReadAll(got.Body)
		if err != nil {
			t.Fatalf("the backend cannot read the body: %v\n%q", err, out.Bytes())
		}
		if br.Buffered() != 0 {
			t.Fatalf("%d bytes after the request: a second request smuggled in\n%q", br.Buffered(), out.Bytes())
		}
		if got.Method != in.Method || got.URL.RawQuery != in.URL.RawQuery {
			t.Fatalf("method/query %s ?%s, want %s ?%s", got.Method, got.URL.RawQuery, in.Method, in.URL.RawQuery)
		}
		if want := in.URL.EscapedPath(); want != "" && got.URL.EscapedPath() != want {
			t.Fatalf("path %q, want %q", got.URL.EscapedPath(), want)
		}
		if !bytes.Equal(gotBody, body) {
			t.Fatalf("body %q, want %q", gotBody, body)
		}
		if in.Host != "" && got.Host != in.Host {
			t.Fatalf("host %q, want %q", got.Host, in.Host)
		}
		for k := range got.Header {
			if isHopHeader(k) && k != "Te" || k == "Forwarded" || k == "Expect" {
				t.Fatalf("forwarded the client's %s header\n%q", k, out.Bytes())
			}
		}
		if te := got.Header["Te"]; len(te) > 0 && (len(te) != 1 || te[0] != "trailers") {
			t.Fatalf("TE %q", te)
		}
		xff := got.Header["X-Forwarded-For"]
		if len(xff) != 1 || !strings.HasSuffix(xff[0], "192.0.2.7") || (!trust && xff[0] != "192.0.2.7") {
			t.Fatalf("X-Forwarded-For %q (trust %v)", xff, trust)
		}
		for k := range got.Trailer {
			if !trailerAllowed(k) {
				t.Fatalf("forwarded trailer %s", k)
			}
		}
	})
}

// serverWouldAccept applies the checks net/http's server makes beyond
// http.ReadRequest before a handler sees a request.
func serverWouldAccept(req *http.Request) bool {
	if req.ProtoAtLeast(1, 1) && len(req.Header["Host"]) != 1 {
		return false
	}
	if len(req.Header["Host"]) > 1 {
		return false
	}
	for k, vs := range req.Header {
		if !validFieldName(k) {
			return false
		}
		for _, v := range vs {
			if !validFieldValue(v) {
				return false
			}
		}
	}
	return req.Method != http.MethodConnect && validFieldValue(req.Host) && !strings.ContainsAny(req.Host, " /?#@")
}
