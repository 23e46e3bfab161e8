package router

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"os"
	"time"
)

// The request path's HTTP/1.1 client. A request is written to a pooled
// keep-alive connection and the answer read back on the handler's own
// goroutine: no per-request goroutines, channels or header maps, which is
// where http.Transport spends its time and memory. The framing rules are
// RFC 9112's; anything the client cannot frame safely is refused with 502
// and the connection is dropped.

// max1xx bounds the informational responses relayed before a final one.
const max1xx = 8

// exchange sends pw.in to backend b and relays the answer to the client.
// It returns an error only while nothing but 1xx responses has been
// written to the client, so that the caller may retry elsewhere or answer
// with an error status; failures after that are recorded in pw.
func (r *Router) exchange(pw *proxyWriter, b *backend) error {
	in := pw.in
	ctx := in.Context()
	// A request that may simply be sent again when a kept-alive connection
	// turns out to be closed skips the liveness check; any other one is
	// only sent on a connection that still looks open.
	resendable := idempotent(in) && !hasBody(in)
	fresh := false
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		c, reused, err := b.conns.get(ctx, fresh, !resendable)
		if err != nil {
			return err
		}
		reusable, err := r.roundTrip(pw, c)
		if c.stop != nil && !c.stop() {
			c.interrupted.Store(true) // the interrupt ran or is running
		}
		c.stop = nil
		if c.interrupted.Load() {
			reusable = false
			if err != nil {
				err = errInterrupted
			}
		}
		if reusable {
			b.conns.put(c, time.Now())
		} else {
			c.nc.Close()
		}
		if errors.Is(err, errStaleConn) || errors.Is(err, errUnread) {
			if reused && !fresh {
				// The backend closed it while idle, or as the request
				// arrived: once more on a new connection. (A backend that
				// died refuses that one, and failed sends the request to
				// another backend.)
				fresh = true
				b.conns.resends.Add(1)
				continue
			}
		}
		return err
	}
}

// roundTrip does one request/response exchange on c. See exchange for
// the error contract; errStaleConn and errUnread mean that the connection
// died before any answer and that the request can be sent again (see
// unanswered).
func (r *Router) roundTrip(pw *proxyWriter, c *upConn) (reusable bool, err error) {
	in := pw.in
	hasBody := hasBody(in)
	r.writeHead(c.bw, pw, c.pool.addr, hasBody)
	// A backend may answer before it read the whole body (413 for an
	// upload that is too large) and stop reading: writing then fails, and
	// its answer, if it sent one, is what the client gets.
	var sendErr error
	if hasBody {
		if err := r.writeBody(c.bw, pw); err != nil {
			var bodyErr *clientBodyError
			if errors.As(err, &bodyErr) {
				return false, err
			}
			sendErr = err
		}
	}
	if sendErr == nil {
		if err := c.bw.Flush(); err != nil {
			if !hasBody {
				// Nothing of a bodyless request can have been processed
				// when the connection was already gone.
				return false, errStaleConn
			}
			sendErr = err
		}
	}
	if sendErr != nil {
		defer func() {
			reusable = false
			if err != nil && !errors.Is(err, errUnread) {
				err = sendErr // no answer either: the write failure is the news
			}
		}()
	}

	// Most backends answer within cfg.quickAnswer, with the whole response
	// head in one read: for those, nothing else is set up. A slower answer
	// gets the full header timeout, and the client's context is watched
	// meanwhile so that the backend sees the request end with the client.
	start := time.Now()
	full := start.Add(r.cfg.ResponseHeaderTimeout)
	extended := r.cfg.ResponseHeaderTimeout <= r.cfg.quickAnswer
	if extended {
		c.nc.SetReadDeadline(full)
	} else {
		c.nc.SetReadDeadline(start.Add(r.cfg.quickAnswer))
	}
	var code, minor int
	n1xx := 0
	for {
		if !extended && !headBuffered(c.br) {
			if c.br.Buffered() == 0 {
				if _, err := c.br.Peek(1); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
					return false, pw.unanswered(c, err)
				}
			}
			if !headBuffered(c.br) {
				// The deadline first: watch runs the interrupt at once
				// (on another goroutine) when the client is already
				// gone, and the interrupt's deadline must be the last.
				c.nc.SetReadDeadline(full)
				c.watch(in.Context())
				extended = true
			}
		}
		var gotBytes bool
		code, minor, gotBytes, err = pw.readHead(c.br)
		if err != nil {
			switch {
			case c.interrupted.Load():
				err = errInterrupted
			case errors.Is(err, os.ErrDeadlineExceeded):
				err = errResponseTimedOut
			case !gotBytes:
				err = pw.unanswered(c, err)
			}
			return false, err
		}
		if code >= 200 {
			break
		}
		switch {
		case code == http.StatusSwitchingProtocols:
			return false, errUnexpectedSwitch
		case n1xx >= max1xx:
			return false, errTooMany1xx
		case code != http.StatusContinue: // 100 answers an Expect the router does not send
			n1xx++
			dst := pw.ResponseWriter.Header()
			pw.emitHeader(dst, nil)
			pw.ResponseWriter.WriteHeader(code)
			clear(dst) // WriteHeader does not reset the map for 1xx
		}
	}
	f := pw.frame(in.Method, code, minor)
	if f.invalid {
		return false, errMalformedReply
	}
	if f.kind != bodyNone && (f.kind != bodyFixed || int64(c.br.Buffered()) < f.length) {
		// The body needs more reads: they are not bounded by the header
		// timeout, and the client is watched while they last. (A body
		// already in the buffer leaves the deadline set; the next exchange
		// sets its own before it reads.)
		c.nc.SetReadDeadline(time.Time{})
		c.watch(in.Context()) // after the deadline: see above
		if c.interrupted.Load() {
			return false, errInterrupted
		}
	}
	dst := pw.ResponseWriter.Header()
	pw.emitHeader(dst, &f)
	pw.WriteHeader(code)
	stream := f.kind == bodyChunked || f.kind == bodyUntilClose || f.eventStream
	if stream {
		pw.Flush() // the first body bytes may take a while
	}

	var readErr, writeErr error
	switch f.kind {
	case bodyFixed:
		readErr, writeErr = copyN(pw, c.br, f.length, stream)
	case bodyUntilClose:
		readErr, writeErr = copyN(pw, c.br, -1, stream)
	case bodyChunked:
		readErr, writeErr = pw.copyChunked(c.br, pw)
	}
	switch {
	case writeErr != nil || (readErr != nil && in.Context().Err() != nil):
		pw.canceled = true // the client went away
		pw.abort = true
		return false, nil
	case readErr != nil:
		// The backend failed mid-body: the client must not take what it
		// got for a whole response.
		pw.backend.connErrors.Inc()
		pw.outcome = outcomeConnErr
		pw.abort = true
		return false, nil
	}
	if f.kind == bodyChunked && len(pw.fields) > 0 {
		pw.Flush() // chunked to the client, so that the trailers follow
		pw.emitTrailers(dst)
	}
	return f.reusable, nil
}

// unanswered classifies err, the failure of a connection that brought no
// byte of an answer: errStaleConn for a request that may simply be sent
// again (idempotent, without a body), errUnread for one the backend
// provably did not read (see liveness.unread) and that can still be sent
// whole (pw.replayable), err itself otherwise: the backend may have read
// and processed a request it did not answer, and a non-idempotent one is
// then not sent twice.
func (pw *proxyWriter) unanswered(c *upConn, err error) error {
	switch {
	case !hasBody(pw.in) && idempotent(pw.in):
		return errStaleConn
	case pw.replayable() && c.alive.unread():
		return errUnread
	}
	return err
}

// defaultQuickAnswer is how long a backend's answer is awaited before the
// client's context is watched (see roundTrip).
const defaultQuickAnswer = 100 * time.Millisecond

// headBuffered reports whether a whole response head (up to its empty
// line) is in br's buffer, so that parsing it needs no read.
func headBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.Contains(b, crlfcrlf[1:]) || bytes.Contains(b, lflf)
}

var (
	crlfcrlf = []byte("\r\n\r\n")
	lflf     = []byte("\n\n")
)

// hasBody reports whether req has a body to send on.
func hasBody(req *http.Request) bool {
	return req.Body != nil && req.Body != http.NoBody && req.ContentLength != 0
}

// idempotent reports whether req may be sent again after a connection
// died without answering (RFC 9110 §9.2.2), as http.Transport decides.
func idempotent(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, a := req.Header["Idempotency-Key"]
	_, b := req.Header["X-Idempotency-Key"]
	return a || b
}
