package router

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// connPool keeps idle keep-alive connections to one backend for the
// request path's own HTTP/1.1 client (see exchange). It hands out the most
// recently used connection first, so that a small hot set serves steady
// traffic and the rest age out (reap).
type connPool struct {
	addr    string
	dialer  *net.Dialer
	maxIdle int

	mu     sync.Mutex
	idle   []*upConn
	closed bool

	dials   atomic.Uint64 // connections attempted
	resends atomic.Uint64 // requests sent again after a kept-alive connection died unanswered
}

// upConn is one connection to a backend with its buffers.
type upConn struct {
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	pool   *connPool
	idleAt time.Time // when it was last put back

	// interrupted is set (before the deadline is forced into the past)
	// when the client's request context ended mid-exchange.
	interrupted atomic.Bool
	interruptFn func()      // c.interrupt, bound once so AfterFunc does not allocate it per request
	stop        func() bool // stops the current exchange's watch, if armed
	alive       liveness
}

const (
	upReadBufferSize  = 16 << 10
	upWriteBufferSize = 8 << 10
	// maxResponseHeaderBytes bounds a backend's response head.
	maxResponseHeaderBytes = 1 << 20
	// maxIdlePerBackend bounds the idle connections kept per backend.
	maxIdlePerBackend = 512
	// idleConnTimeout closes connections idle longer than this.
	idleConnTimeout = 90 * time.Second
)

func newConnPool(addr string, dialer *net.Dialer, maxIdle int) *connPool {
	return &connPool{addr: addr, dialer: dialer, maxIdle: maxIdle}
}

// get returns an idle connection (reused = true), or dials a new one.
// With check, an idle connection is only handed out after a liveness
// check found it open. fresh forces a dial. A dial failure is returned as
// the dialer's *net.OpError (Op "dial"): nothing was sent.
func (p *connPool) get(ctx context.Context, fresh, check bool) (c *upConn, reused bool, err error) {
	if !fresh {
		for {
			p.mu.Lock()
			n := len(p.idle)
			if n == 0 {
				p.mu.Unlock()
				break
			}
			c = p.idle[n-1]
			p.idle[n-1] = nil
			p.idle = p.idle[:n-1]
			p.mu.Unlock()
			if !check || c.alive.check() {
				return c, true, nil
			}
			c.nc.Close() // closed by the backend while idle
		}
	}
	p.dials.Add(1)
	nc, err := p.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, false, err
	}
	nc = wrapRawIO(nc)
	c = &upConn{
		nc:   nc,
		br:   bufio.NewReaderSize(nc, upReadBufferSize),
		bw:   bufio.NewWriterSize(nc, upWriteBufferSize),
		pool: p,
	}
	c.interruptFn = c.interrupt
	c.alive.init(nc)
	return c, false, nil
}

// put returns a connection whose last exchange ended cleanly.
func (p *connPool) put(c *upConn, now time.Time) {
	c.idleAt = now
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.maxIdle {
		p.mu.Unlock()
		c.nc.Close()
		return
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// reap closes connections idle for longer than idleConnTimeout.
func (p *connPool) reap(now time.Time) {
	p.mu.Lock()
	// The oldest are at the front.
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].idleAt) > idleConnTimeout {
		n++
	}
	old := make([]*upConn, n)
	copy(old, p.idle[:n])
	p.idle = append(p.idle[:0], p.idle[n:]...)
	clear(p.idle[len(p.idle):cap(p.idle)])
	p.mu.Unlock()
	for _, c := range old {
		c.nc.Close()
	}
}

// close closes the idle connections and makes put close the rest.
func (p *connPool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.closed = true
	p.mu.Unlock()
	for _, c := range idle {
		c.nc.Close()
	}
}

// idleCount reports how many connections are idle (for /metrics).
func (p *connPool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// aLongTimeAgo is a deadline that has passed: setting it unblocks every
// read and write on the connection at once.
var aLongTimeAgo = time.Unix(1, 0)

// watch arms, once per exchange, the interrupt for when ctx (the
// client's request) ends. It costs a few hundred bytes on a cancellable
// context, which is why exchanges that end quickly do without it.
func (c *upConn) watch(ctx context.Context) {
	if c.stop == nil {
		c.stop = context.AfterFunc(ctx, c.interruptFn)
	}
}

// interrupt is run (through context.AfterFunc) when the client's request
// ends while the exchange is in progress.
func (c *upConn) interrupt() {
	c.interrupted.Store(true)
	c.nc.SetDeadline(aLongTimeAgo)
}

// Errors of the exchange with a backend.
var (
	errStaleConn        = errors.New("backend closed a kept-alive connection before answering")
	errUnread           = errors.New("backend closed the connection without reading the request")
	errMalformedReply   = errors.New("malformed response from backend")
	errHeaderTooLarge   = errors.New("backend response header too large")
	errTooMany1xx       = errors.New("backend sent too many informational responses")
	errInterrupted      = errors.New("request ended by the client during the exchange")
	errResponseTimedOut = errors.New("backend sent no response header in time")
)

// clientBodyError is a failure to read the client's request body while
// sending it on: the client's fault, not the backend's.
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string { return fmt.Sprintf("reading the request body: %v", e.err) }
func (e *clientBodyError) Unwrap() error { return e.err }
