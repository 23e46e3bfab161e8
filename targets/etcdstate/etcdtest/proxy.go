package etcdtest

import (
	"net"
	"sync"
	"testing"
)

// Proxy forwards TCP connections to one address until it is cut. Cut
// simulates a network partition: established connections stop carrying
// bytes in either direction (they are held open, not reset) and new
// connections are accepted and then left silent, so the client sees
// timeouts, as behind a dropped link. Heal restores forwarding for new
// connections (held ones are closed so the client reconnects).
type Proxy struct {
	// Addr is the proxy's listening address.
	Addr   string
	target string
	ln     net.Listener

	mu  sync.Mutex
	cut bool
	// epoch counts cuts: a connection forwards only in the epoch it was
	// opened in, so a stream that lost bytes never carries more.
	epoch int
	conns map[net.Conn]struct{}
	held  []net.Conn
	wg    sync.WaitGroup
}

// NewProxy listens on a loopback port and forwards to target. It is closed
// at the end of the test.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.held = append(p.held, c)
			p.mu.Unlock()
			continue
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) serve(c net.Conn) {
	defer p.wg.Done()
	p.mu.Lock()
	epoch := p.epoch
	p.mu.Unlock()
	defer p.forget(c)
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 && p.forwards(epoch) {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	c.Close()
	up.Close()
	<-done
}

func (p *Proxy) forget(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *Proxy) forwards(epoch int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.cut && p.epoch == epoch
}

// Cut stops all traffic through the proxy (bytes are read and dropped).
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.cut = true
	p.epoch++
	p.mu.Unlock()
}

// Heal forwards traffic again: connections cut mid-stream are closed (a
// stream that lost bytes cannot continue), so the client dials afresh.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.cut = false
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	held := p.held
	p.held = nil
	p.mu.Unlock()
	for c := range conns {
		c.Close()
	}
	for _, c := range held {
		c.Close()
	}
}

// Close stops the proxy and every connection through it.
func (p *Proxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	for _, c := range p.held {
		c.Close()
	}
	p.conns = map[net.Conn]struct{}{}
	p.held = nil
	p.mu.Unlock()
	p.wg.Wait()
}
