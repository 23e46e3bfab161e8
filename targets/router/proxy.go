package router

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"sync"
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
// writer, for upgrade requests). Instances are pooled, with the scratch
// space the exchange parses a backend's response into.
type proxyWriter struct {
	proxyState

	fields []field // the response head's (or trailer's) fields
	hdrBuf []byte  // their values, back to back
	long   []byte  // a header line longer than the read buffer
	num    [20]byte
}

// proxyState is the per-request part of a proxyWriter, reset between uses.
type proxyState struct {
	http.ResponseWriter
	status   int
	in       *http.Request
	pool     *pool
	backend  *backend
	retried  bool
	kept     keptBody // the request body read so far, kept to send it again
	outcome  outcome
	canceled bool
	abort    bool // the response was cut short: abort the client connection
}

// maxPooledScratch bounds the scratch space a pooled writer keeps.
const maxPooledScratch = 64 << 10

// getWriter takes a writer (and its parsing scratch space) from the pool.
func (r *Router) getWriter() *proxyWriter {
	if pw, ok := r.writers.Get().(*proxyWriter); ok {
		return pw
	}
	return new(proxyWriter)
}

// putWriter resets pw and returns it to the pool, unless a large answer
// grew its scratch space beyond what is worth keeping.
func (r *Router) putWriter(pw *proxyWriter) {
	if pw.kept.buf != nil {
		r.bufs.Put(pw.kept.buf)
	}
	pw.proxyState = proxyState{}
	if cap(pw.hdrBuf)+cap(pw.long) > maxPooledScratch || cap(pw.fields) > 256 {
		return
	}
	clear(pw.fields[:cap(pw.fields)]) // drop the key strings
	r.writers.Put(pw)
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
	if req.Method == http.MethodConnect {
		// A tunnel request is for forward proxies; this one is not.
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		http.Error(w, "CONNECT is not supported: this is a reverse proxy", http.StatusMethodNotAllowed)
		return
	}
	if req.ContentLength < 0 && len(req.TransferEncoding) > 0 {
		if cc := connOf(req.Context()); cc != nil && cc.both.Load() {
			// RFC 9112 §6.3: answer, and close the connection, so that
			// nothing after this request on it is read as a request.
			w.Header().Set("Connection", "close")
			http.Error(w, "bad request: both Content-Length and Transfer-Encoding (a request smuggling pattern)", http.StatusBadRequest)
			return
		}
	}
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
	pw := r.getWriter()
	pw.proxyState = proxyState{ResponseWriter: w, in: req, pool: p, backend: b}

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
		pw.backend.stats.record(outcomeConnErr, 0, d)
		pw.backend.codes[5].Inc()
	default:
		code := pw.status
		if code == 0 {
			code = http.StatusOK
		}
		p.stats.record(outcomeStatus, code, d)
		pw.backend.stats.record(outcomeStatus, code, d)
		c := code / 100
		if c < 1 || c > 5 {
			c = 0
		}
		pw.backend.codes[c].Inc()
	}
	abort := pw.abort
	r.putWriter(pw)
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
	// http.Transport closes the request's body on any error, so only a
	// request without one can be sent again from here.
	if alt := r.failed(pw, err, bodyless(pw.in)); alt != nil {
		alt.inflight.Add(1)
		alt.proxy.ServeHTTP(pw, pw.in)
		alt.inflight.Add(-1)
	}
}

// failed handles a failed round trip to pw.backend: count it and return
// another backend of the release to send the request to when this one
// provably did not process it (notProcessed), or answer 502 and return
// nil. replayable says whether the request (its body included) is still
// whole, so that it can be sent again.
func (r *Router) failed(pw *proxyWriter, err error, replayable bool) *backend {
	// The client's body could not be read: its fault, not the backend's.
	// The connection is closed after the answer: the body is in an
	// unknown state, and net/http would otherwise try to read the rest
	// of it before answering.
	var bodyErr *clientBodyError
	isBodyErr := errors.As(err, &bodyErr)
	if isBodyErr && errors.Is(err, os.ErrDeadlineExceeded) {
		// A stalled body (the read's error also ended the request's
		// context, so this comes before the check for a client gone).
		pw.Header().Set("Connection", "close")
		http.Error(pw, "request timeout: the request body stalled", http.StatusRequestTimeout)
		return nil
	}
	if pw.in.Context().Err() != nil {
		// The client went away; nobody reads this answer.
		pw.canceled = true
		pw.WriteHeader(http.StatusBadGateway)
		return nil
	}
	if isBodyErr {
		pw.Header().Set("Connection", "close")
		http.Error(pw, "bad request: the request body could not be read", http.StatusBadRequest)
		return nil
	}
	b := pw.backend
	b.connErrors.Inc()
	if !r.cfg.NoRetry && !pw.retried && replayable && notProcessed(err) {
		if alt := pw.pool.next(b); alt != nil {
			pw.retried = true
			pw.backend = alt
			return alt
		}
	}
	pw.outcome = outcomeConnErr
	h := pw.Header()
	clear(h) // a relayed 1xx may have left fields behind
	h.Set("Content-Type", "text/plain; charset=utf-8")
	if errors.Is(err, errResponseTimedOut) {
		pw.WriteHeader(http.StatusGatewayTimeout)
		io.WriteString(pw, "gateway timeout: the backend did not answer in time\n")
		return nil
	}
	pw.WriteHeader(http.StatusBadGateway)
	io.WriteString(pw, "bad gateway: backend unreachable\n")
	return nil
}

// errUnexpectedSwitch is a 101 answer to a request that asked for no
// protocol upgrade.
var errUnexpectedSwitch = errors.New("backend switched protocols although the request asked for no upgrade")

// forward proxies pw.in to pw.backend over the router's own HTTP/1.1
// client (exchange), and retries once elsewhere as failed decides: the
// request path for everything but protocol upgrades.
func (r *Router) forward(pw *proxyWriter) {
	for {
		b := pw.backend
		b.inflight.Add(1)
		err := r.exchange(pw, b)
		b.inflight.Add(-1)
		// A dial error leaves the request untouched: the exchange reads
		// nothing of the body before it has a connection. A connection
		// the backend closed without reading the request leaves it whole
		// when its body was kept (pw.replayable). Either way the request
		// goes to another backend whatever its method: this one never
		// saw it.
		if err == nil || r.failed(pw, err, pw.replayable()) == nil {
			return
		}
		// retry on the new pw.backend
	}
}

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

// needsReverseProxy reports whether req takes the httputil.ReverseProxy
// path: protocol upgrades (WebSocket), and queries that ReverseProxy
// re-encodes (semicolons, bad escapes, too many parameters), so that
// behaviour stays the same for them.
func needsReverseProxy(req *http.Request) bool {
	if len(req.Header["Upgrade"]) > 0 && containsToken(req.Header["Connection"], "upgrade") {
		return true
	}
	return req.URL.Opaque != "" || !plainQuery(req.URL.RawQuery)
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

// notProcessed reports whether err means that the backend did not
// process the request, so that it may go to another backend: the
// connection was refused (nothing was sent), or it died before any byte
// of an answer and the request was idempotent without a body
// (errStaleConn) or provably unread by the backend (errUnread).
func notProcessed(err error) bool {
	return isDialError(err) || errors.Is(err, errStaleConn) || errors.Is(err, errUnread)
}

// bodyless reports whether req can be replayed as is.
func bodyless(req *http.Request) bool {
	return req.ContentLength == 0 && (req.Body == nil || req.Body == http.NoBody)
}
