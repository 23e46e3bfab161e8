package router

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// bufferPool lends 32 KiB copy buffers. Slices travel in reusable holders
// so that neither Get nor Put allocates.
type bufferPool struct {
	bufs    sync.Pool // *bufHolder with buf set
	holders sync.Pool // *bufHolder, empty
}

type bufHolder struct{ buf []byte }

const copyBufferSize = 32 << 10

func (p *bufferPool) Get() []byte {
	if h, ok := p.bufs.Get().(*bufHolder); ok {
		b := h.buf
		h.buf = nil
		p.holders.Put(h)
		return b
	}
	return make([]byte, copyBufferSize)
}

func (p *bufferPool) Put(b []byte) {
	if cap(b) < copyBufferSize {
		return
	}
	h, ok := p.holders.Get().(*bufHolder)
	if !ok {
		h = new(bufHolder)
	}
	h.buf = b[:copyBufferSize]
	p.bufs.Put(h)
}

// proxyWriter wraps the client's ResponseWriter for one request: it
// records the status and carries the request's routing facts to the error
// handling (and to the ReverseProxy's error handler, which receives the
// writer, for upgrade requests). Instances are pooled; each owns one
// ClientTrace, built once, that forwards 1xx responses.
type proxyWriter struct {
	proxyState
	trace *httptrace.ClientTrace

	// mu orders a 1xx callback (from the transport's read loop) with the
	// end of the round trip: once rtDone is set, callbacks do nothing.
	mu     sync.Mutex
	rtDone bool

	// wrote is set by the transport's writer once it has written the
	// outbound request: from then on it no longer reads the header map or
	// the URL below, so the next request may reuse them.
	wrote  atomic.Bool
	header http.Header
	url    url.URL
	vals   [2]string // X-Forwarded-For and X-Forwarded-Host values
}

// proxyState is the per-request part of a proxyWriter, reset between uses.
type proxyState struct {
	http.ResponseWriter
	status   int
	in       *http.Request
	pool     *pool
	backend  *backend
	retried  bool
	outcome  outcome
	canceled bool
	abort    bool // the response was cut short: abort the client connection
	noReuse  bool // a late 1xx callback may still reach this writer
}

func newProxyWriter() *proxyWriter {
	pw := new(proxyWriter)
	pw.trace = &httptrace.ClientTrace{Got1xxResponse: pw.got1xx, WroteRequest: pw.wroteRequest}
	pw.header = make(http.Header, 16)
	return pw
}

func (w *proxyWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *proxyWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Flush lets streamed responses (server-sent events) through.
func (w *proxyWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController (used by ReverseProxy for upgrades
// and flushes) the underlying writer.
func (w *proxyWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// got1xx forwards an informational response (103 Early Hints...) to the
// client while the round trip is in progress.
func (w *proxyWriter) got1xx(code int, header textproto.MIMEHeader) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.rtDone {
		return nil
	}
	h := w.ResponseWriter.Header()
	for k, vs := range header {
		h[k] = append(h[k], vs...)
	}
	w.ResponseWriter.WriteHeader(code)
	clear(h) // WriteHeader does not reset the map for 1xx
	return nil
}

// wroteRequest is called by the transport when it has written the request.
func (w *proxyWriter) wroteRequest(httptrace.WroteRequestInfo) { w.wrote.Store(true) }

// newProxy builds the ReverseProxy that serves protocol upgrades
// (WebSocket) and requests whose query needs re-encoding; every other
// request takes Router.forward.
func (r *Router) newProxy(b *backend) *httputil.ReverseProxy {
	addr := b.addr
	trust := r.cfg.TrustForwardedHeaders
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = addr
			// pr.Out.Host keeps the client's Host header.
			if trust {
				if xff := pr.In.Header["X-Forwarded-For"]; len(xff) > 0 {
					pr.Out.Header["X-Forwarded-For"] = xff
				}
			}
			pr.SetXForwarded()
		},
		Transport:    r.transport,
		BufferPool:   &r.bufs,
		ErrorHandler: r.proxyError,
		ErrorLog:     r.discardLog,
	}
}

// ServeHTTP routes and proxies one request.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	t := r.table.Load()
	p := t.pick(req, rand.Uint64())
	if p == nil {
		http.Error(w, "no route configured", http.StatusServiceUnavailable)
		return
	}
	b := p.next(nil)
	if b == nil {
		// The chosen side has nothing in rotation (its last backend is being
		// drained or restarted): the other side serves rather than fail.
		if alt := t.fallback(p); alt != nil {
			if ab := alt.next(nil); ab != nil {
				p, b = alt, ab
			}
		}
	}
	if b == nil {
		b = p.nextPanic(start)
	}
	if b == nil {
		http.Error(w, "no backend in rotation for this release", http.StatusServiceUnavailable)
		p.stats.record(outcomeStatus, http.StatusServiceUnavailable, time.Since(start))
		r.prom.requests.WithLabelValues(p.release, "none", "5xx").Inc()
		return
	}
	pw, _ := r.writers.Get().(*proxyWriter)
	if pw == nil {
		pw = newProxyWriter()
	}
	pw.proxyState = proxyState{ResponseWriter: w, in: req, pool: p, backend: b}
	pw.rtDone = false // no callback can run: the writer is not in a round trip

	if needsReverseProxy(req) {
		b.inflight.Add(1)
		b.proxy.ServeHTTP(pw, req)
		b.inflight.Add(-1)
	} else {
		r.forward(pw)
	}

	d := time.Since(start)
	switch {
	case pw.canceled:
		p.stats.record(outcomeCanceled, 0, d)
	case pw.outcome == outcomeConnErr:
		p.stats.record(outcomeConnErr, 0, d)
		pw.backend.codes[5].Inc()
	default:
		code := pw.status
		if code == 0 {
			code = http.StatusOK
		}
		p.stats.record(outcomeStatus, code, d)
		c := code / 100
		if c < 1 || c > 5 {
			c = 0
		}
		pw.backend.codes[c].Inc()
	}
	abort := pw.abort
	if !pw.noReuse {
		pw.proxyState = proxyState{}
		r.writers.Put(pw)
	}
	if abort {
		// The response is cut short: make the server drop the connection
		// so that the client does not take a truncated body for a whole one.
		panic(http.ErrAbortHandler)
	}
}

// proxyError is the ReverseProxy's error handler (upgrade requests).
func (r *Router) proxyError(w http.ResponseWriter, out *http.Request, err error) {
	pw, ok := w.(*proxyWriter)
	if !ok { // not reached: every proxy call goes through ServeHTTP
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	if alt := r.failed(pw, err); alt != nil {
		alt.inflight.Add(1)
		alt.proxy.ServeHTTP(pw, pw.in)
		alt.inflight.Add(-1)
	}
}

// failed handles a failed round trip to pw.backend: count it and return
// another backend of the release to retry a dial failure on, or answer 502
// and return nil.
func (r *Router) failed(pw *proxyWriter, err error) *backend {
	if pw.in.Context().Err() != nil {
		// The client went away; nobody reads this answer.
		pw.canceled = true
		pw.WriteHeader(http.StatusBadGateway)
		return nil
	}
	b := pw.backend
	b.connErrors.Inc()
	if !r.cfg.NoRetry && !pw.retried && isDialError(err) && bodyless(pw.in) {
		if alt := pw.pool.next(b); alt != nil {
			pw.retried = true
			pw.backend = alt
			return alt
		}
	}
	pw.outcome = outcomeConnErr
	pw.Header().Set("Content-Type", "text/plain; charset=utf-8")
	pw.WriteHeader(http.StatusBadGateway)
	io.WriteString(pw, "bad gateway: backend unreachable\n")
	return nil
}

// errUnexpectedSwitch is a 101 answer to a request that asked for no
// protocol upgrade.
var errUnexpectedSwitch = errors.New("backend switched protocols although the request asked for no upgrade")

// forward proxies pw.in to pw.backend (and retries once as failed
// decides): the request path for everything but protocol upgrades.
func (r *Router) forward(pw *proxyWriter) {
	out := r.outbound(pw)
	var guard *bodyGuard
	if out.Body != nil {
		guard = out.Body.(*bodyGuard)
		defer guard.Close()
	}
	for {
		b := pw.backend
		out.URL.Host = b.addr
		b.inflight.Add(1)
		res, err := r.transport.RoundTrip(out)
		pw.mu.Lock()
		pw.rtDone = true
		pw.mu.Unlock()
		if err == nil && res.StatusCode == http.StatusSwitchingProtocols {
			res.Body.Close()
			res, err = nil, errUnexpectedSwitch
		}
		if err != nil {
			// The transport's read loop may still deliver a 1xx to this
			// writer's trace: it must not serve another request.
			pw.noReuse = true
			b.inflight.Add(-1)
			if r.failed(pw, err) == nil {
				return
			}
			continue // retry on the new pw.backend (a bodyless request)
		}
		r.relay(pw, res)
		b.inflight.Add(-1)
		if !pw.wrote.Load() {
			// The backend answered before the transport finished writing
			// the request (it may still be reading pw's header map).
			pw.noReuse = true
		}
		return
	}
}

// outbound builds the request sent to a backend: the client's request
// without hop-by-hop headers, with X-Forwarded-For/-Host/-Proto set as
// httputil.ProxyRequest.SetXForwarded does. The header map, URL and
// forwarding values are pw's, reused from request to request; header
// values are otherwise shared with the incoming request, read only.
func (r *Router) outbound(pw *proxyWriter) *http.Request {
	in := pw.in
	conn := in.Header["Connection"]
	h := pw.header
	clear(h)
	for k, vs := range in.Header {
		if isHopHeader(k) || isForwardedHeader(k) || (len(conn) > 0 && connectionNames(conn, k)) {
			continue
		}
		h[k] = vs
	}
	if containsToken(in.Header["Te"], "trailers") {
		h["Te"] = teTrailers
	}
	if _, ok := h["User-Agent"]; !ok {
		// Keep the transport from adding its own User-Agent.
		h["User-Agent"] = emptyValue
	}
	if clientIP, _, err := net.SplitHostPort(in.RemoteAddr); err == nil {
		if prior := in.Header["X-Forwarded-For"]; r.cfg.TrustForwardedHeaders && len(prior) > 0 {
			clientIP = strings.Join(prior, ", ") + ", " + clientIP
		}
		pw.vals[0] = clientIP
		h["X-Forwarded-For"] = pw.vals[0:1:1]
	}
	pw.vals[1] = in.Host
	h["X-Forwarded-Host"] = pw.vals[1:2:2]
	if in.TLS == nil {
		h["X-Forwarded-Proto"] = protoHTTP
	} else {
		h["X-Forwarded-Proto"] = protoHTTPS
	}

	pw.url = *in.URL
	pw.url.Scheme = "http"
	tmpl := http.Request{
		Method:           in.Method,
		URL:              &pw.url,
		Proto:            "HTTP/1.1",
		ProtoMajor:       1,
		ProtoMinor:       1,
		Header:           h,
		ContentLength:    in.ContentLength,
		TransferEncoding: in.TransferEncoding,
		Host:             in.Host,
		Trailer:          in.Trailer,
	}
	if in.ContentLength != 0 && in.Body != nil && in.Body != http.NoBody {
		// The transport closes the body it is given, possibly after the
		// round trip; the client's body stays the server's to close.
		tmpl.Body = &bodyGuard{rc: in.Body}
	}
	pw.wrote.Store(false)
	ctx := in.Context()
	if httptrace.ContextClientTrace(ctx) == nil {
		ctx = httptrace.WithClientTrace(ctx, pw.trace)
	} else {
		// A trace already in ctx would be composed into (would alter) pw's
		// own, and wroteRequest would not be called: do not reuse pw.
		pw.noReuse = true
	}
	return tmpl.WithContext(ctx)
}

// relay copies the backend's response to the client and closes it.
func (r *Router) relay(pw *proxyWriter, res *http.Response) {
	dst := pw.ResponseWriter.Header()
	conn := res.Header["Connection"]
	for k, vs := range res.Header {
		if isHopHeader(k) || (len(conn) > 0 && connectionNames(conn, k)) {
			continue
		}
		if old, ok := dst[k]; ok {
			dst[k] = append(old, vs...)
		} else {
			dst[k] = vs
		}
	}
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		dst.Add("Trailer", strings.Join(keys, ", "))
	}
	stream := res.ContentLength == -1 || isEventStream(res.Header["Content-Type"])
	pw.WriteHeader(res.StatusCode)
	if stream {
		// Send the headers now: the first body bytes may take a while.
		pw.Flush()
	}

	buf := r.bufs.Get()
	readErr, writeErr := copyBody(pw, res.Body, buf, stream)
	r.bufs.Put(buf)
	res.Body.Close() // populates res.Trailer
	switch {
	case writeErr != nil || (readErr != nil && pw.in.Context().Err() != nil):
		pw.canceled = true // the client went away
		pw.abort = true
		return
	case readErr != nil:
		// The backend failed mid-body: the client must not see a complete
		// response.
		pw.backend.connErrors.Inc()
		pw.outcome = outcomeConnErr
		pw.abort = true
		return
	}

	if len(res.Trailer) > 0 {
		// Force chunking so the trailers can follow the body.
		pw.Flush()
	}
	if len(res.Trailer) == announced {
		for k, vs := range res.Trailer {
			dst[k] = append(dst[k], vs...)
		}
		return
	}
	for k, vs := range res.Trailer {
		k = http.TrailerPrefix + k
		for _, v := range vs {
			dst.Add(k, v)
		}
	}
}

// copyBody streams src to w with buf, flushing after every write when
// stream is set. It returns the first read error other than io.EOF, or the
// write error that stopped it.
func copyBody(w *proxyWriter, src io.Reader, buf []byte, stream bool) (readErr, writeErr error) {
	for {
		n, err := src.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			if werr == nil && m < n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return nil, werr
			}
			if stream {
				w.Flush()
			}
		}
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return err, nil
		}
	}
}

// bodyGuard hands the client's request body to the transport without
// letting the transport close it: closing a server request body that was
// not read yet (Expect: 100-continue) could block. After Close, reads
// fail.
type bodyGuard struct {
	rc     io.ReadCloser
	closed atomic.Bool
}

var errBodyClosed = errors.New("read on a closed proxied request body")

func (g *bodyGuard) Read(p []byte) (int, error) {
	if g.closed.Load() {
		return 0, errBodyClosed
	}
	return g.rc.Read(p)
}

func (g *bodyGuard) Close() error {
	g.closed.Store(true)
	return nil
}

// Header values shared by every outbound request; the transport only
// reads them.
var (
	teTrailers = []string{"trailers"}
	emptyValue = []string{""}
	protoHTTP  = []string{"http"}
	protoHTTPS = []string{"https"}
)

// isHopHeader reports whether the canonical header key k names a
// hop-by-hop header, which a proxy does not forward.
func isHopHeader(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// isForwardedHeader reports whether k is a forwarding header the router
// sets itself (or drops) rather than passing the client's through.
func isForwardedHeader(k string) bool {
	switch k {
	case "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
		return true
	}
	return false
}

// connectionNames reports whether the Connection header lines list the
// header k (case-insensitively), which makes it hop-by-hop.
func connectionNames(conn []string, k string) bool {
	return containsToken(conn, k)
}

// containsToken reports whether a comma-separated header value list holds
// token, case-insensitively.
func containsToken(lines []string, token string) bool {
	for _, line := range lines {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ",")
			if strings.EqualFold(textproto.TrimString(part), token) {
				return true
			}
		}
	}
	return false
}

// isEventStream reports whether the Content-Type is text/event-stream
// (server-sent events), which is flushed as it comes.
func isEventStream(ct []string) bool {
	if len(ct) == 0 {
		return false
	}
	v, _, _ := strings.Cut(ct[0], ";")
	return strings.EqualFold(strings.TrimSpace(v), "text/event-stream")
}

// needsReverseProxy reports whether req takes the httputil.ReverseProxy
// path: protocol upgrades (WebSocket), and queries that ReverseProxy
// re-encodes (semicolons, bad escapes, too many parameters), so that
// behaviour stays the same for them.
func needsReverseProxy(req *http.Request) bool {
	if len(req.Header["Upgrade"]) > 0 && containsToken(req.Header["Connection"], "upgrade") {
		return true
	}
	return !plainQuery(req.URL.RawQuery)
}

// maxQueryParams mirrors net/url's default limit on query parameters.
const maxQueryParams = 10000

// plainQuery reports whether q needs no re-encoding: no ';', only
// well-formed %XX escapes, at most maxQueryParams parameters.
func plainQuery(q string) bool {
	params := 1
	for i := 0; i < len(q); {
		switch q[i] {
		case ';':
			return false
		case '&':
			params++
			i++
		case '%':
			if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
				return false
			}
			i += 3
		default:
			i++
		}
	}
	return params <= maxQueryParams
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// isDialError reports whether err happened while connecting, before any
// byte of the request was sent.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// bodyless reports whether req can be replayed as is.
func bodyless(req *http.Request) bool {
	return req.ContentLength == 0 && (req.Body == nil || req.Body == http.NoBody)
}
