package router

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
)

// clientConn is a client's connection to the proxy listener. It lets the
// handler reach the connection (for per-read body deadlines) and watches
// request heads go by: net/http removes Content-Length from a chunked
// request before the handler sees it, and RFC 9112 §6.3 asks that a
// request carrying both Content-Length and Transfer-Encoding be answered
// and its connection closed, since a server behind another reading of it
// may see a second request smuggled in its body.
type clientConn struct {
	net.Conn
	heads headScan // touched by the connection's reads only (one at a time)
	// both is set when the last request head scanned held both fields.
	both atomic.Bool
	// rearm is set by the handler when a request is done: the next bytes
	// read start a new head.
	rearm   atomic.Bool
	release func() // frees the connection's slot in the limit; nil without one
	once    sync.Once
}

// Read reads from the connection and scans what is part of a request head.
func (c *clientConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		if c.rearm.Swap(false) {
			c.heads = headScan{}
		}
		if !c.heads.done {
			if c.heads.scan(p[:n]) {
				c.both.Store(c.heads.length && c.heads.encoding)
			}
		}
	}
	return n, err
}

// Close closes the connection and frees its slot.
func (c *clientConn) Close() error {
	err := c.Conn.Close()
	if c.release != nil {
		c.once.Do(c.release)
	}
	return err
}

// CloseWrite shuts down the writing side, as net/http's server does
// before closing a connection it answered with an error.
func (c *clientConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// requestDone marks the end of a request: the next bytes read are the
// next request's head.
func (c *clientConn) requestDone() {
	c.both.Store(false)
	c.rearm.Store(true)
}

// headScan finds, in a request head read in pieces, whether it has a
// Content-Length and a Transfer-Encoding field: it follows lines, keeping
// only the start of the current one, and stops at the empty line.
type headScan struct {
	line     [18]byte // the current line's first bytes, lower case
	n        int      // the current line's length so far
	done     bool     // the empty line was seen
	length   bool     // a Content-Length field was seen
	encoding bool     // a Transfer-Encoding field was seen
}

// scan consumes p and reports whether it finished the head.
func (h *headScan) scan(p []byte) bool {
	for _, b := range p {
		if b == '\n' {
			if h.n == 0 || (h.n == 1 && h.line[0] == '\r') {
				h.done = true
				return true
			}
			h.n = 0
			continue
		}
		if h.n < len(h.line) {
			if 'A' <= b && b <= 'Z' {
				b += 'a' - 'A'
			}
			h.line[h.n] = b
			switch h.n + 1 {
			case len("content-length:"):
				if string(h.line[:h.n+1]) == "content-length:" {
					h.length = true
				}
			case len("transfer-encoding:"):
				if string(h.line[:h.n+1]) == "transfer-encoding:" {
					h.encoding = true
				}
			}
		}
		h.n++
	}
	return false
}

// clientConnKey is the context key under which the proxy server's
// ConnContext stores the *clientConn.
type clientConnKey struct{}

// connOf returns the client connection req arrived on (nil when it did not
// come through the proxy listener, as in handler tests).
func connOf(ctx context.Context) *clientConn {
	c, _ := ctx.Value(clientConnKey{}).(*clientConn)
	return c
}

// clientListener accepts the proxy's client connections: wrapped for raw
// I/O (see wrapRawIO) and as clientConns, and at most max at a time when
// max > 0. At the limit it stops accepting, so that new clients wait in
// the kernel's backlog until a connection closes (as HAProxy's maxconn
// does), instead of being refused.
type clientListener struct {
	net.Listener
	slots chan struct{} // nil: no limit
	done  chan struct{}
	once  sync.Once
}

func newClientListener(ln net.Listener, max int) *clientListener {
	l := &clientListener{Listener: ln, done: make(chan struct{})}
	if max > 0 {
		l.slots = make(chan struct{}, max)
	}
	return l
}

// Accept waits for a free slot, then for a connection.
func (l *clientListener) Accept() (net.Conn, error) {
	if l.slots != nil {
		select {
		case l.slots <- struct{}{}:
		case <-l.done:
			return nil, net.ErrClosed
		}
	}
	nc, err := l.Listener.Accept()
	if err != nil {
		if l.slots != nil {
			<-l.slots
		}
		return nil, err
	}
	c := &clientConn{Conn: wrapRawIO(nc)}
	if l.slots != nil {
		c.release = l.free
	}
	return c, nil
}

func (l *clientListener) free() { <-l.slots }

// Close stops Accept, including one waiting for a slot.
func (l *clientListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}
