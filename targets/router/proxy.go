package router

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"time"
)

// bufferPool lends 32 KiB copy buffers to httputil.ReverseProxy. Slices
// travel in reusable holders so that neither Get nor Put allocates.
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
// records the status and carries the request's routing facts to the
// ReverseProxy's error handler (which receives the writer), so no context
// value is needed. Instances are pooled.
type proxyWriter struct {
	http.ResponseWriter
	status   int
	in       *http.Request
	pool     *pool
	backend  *backend
	retried  bool
	outcome  outcome
	canceled bool
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
		pw = new(proxyWriter)
	}
	*pw = proxyWriter{ResponseWriter: w, in: req, pool: p, backend: b}

	b.inflight.Add(1)
	b.proxy.ServeHTTP(pw, req)
	b.inflight.Add(-1)

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
	*pw = proxyWriter{}
	r.writers.Put(pw)
}

// proxyError handles a failed round trip: count it, retry a dial failure
// once on another backend of the release, else answer 502.
func (r *Router) proxyError(w http.ResponseWriter, out *http.Request, err error) {
	pw, ok := w.(*proxyWriter)
	if !ok { // not reached: every proxy call goes through ServeHTTP
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	if pw.in.Context().Err() != nil {
		// The client went away; nobody reads this answer.
		pw.canceled = true
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	b := pw.backend
	b.connErrors.Inc()
	if !r.cfg.NoRetry && !pw.retried && isDialError(err) && bodyless(pw.in) {
		if alt := pw.pool.next(b); alt != nil {
			pw.retried = true
			pw.backend = alt
			alt.inflight.Add(1)
			alt.proxy.ServeHTTP(pw, pw.in)
			alt.inflight.Add(-1)
			return
		}
	}
	pw.outcome = outcomeConnErr
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusBadGateway)
	w.Write([]byte("bad gateway: backend unreachable\n"))
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
