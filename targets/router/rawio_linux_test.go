//go:build linux && !race

package router

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// acceptOne listens on a loopback port and accepts one connection
// through wrap(listener), delivered on the channel (closed on failure).
func acceptOne(t *testing.T, wrap func(net.Listener) net.Listener) (addr string, accepted <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := wrap(ln).Accept()
		if err != nil {
			close(ch)
			return
		}
		ch <- c
	}()
	return ln.Addr().String(), ch
}

func plainListener(ln net.Listener) net.Listener { return ln }

// rawPair returns both ends of a loopback TCP connection, the dialled end
// wrapped by wrapRawIO (and checked to be wrapped).
func rawPair(t *testing.T) (raw *rawTCPConn, peer net.Conn) {
	t.Helper()
	addr, accepted := acceptOne(t, plainListener)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	peer, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	c, ok := wrapRawIO(nc).(*rawTCPConn)
	if !ok {
		t.Fatalf("wrapRawIO(%T) did not wrap a TCP connection", nc)
	}
	t.Cleanup(func() { c.Close(); peer.Close() })
	return c, peer
}

// TestRawIOBehavesAsNetConn checks the raw-syscall connection against
// what net.Conn promises its users: data, end of stream, deadlines,
// closing and errors.
func TestRawIOBehavesAsNetConn(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, c *rawTCPConn, peer net.Conn)
	}{
		{"reads what the peer wrote, then EOF", func(t *testing.T, c *rawTCPConn, peer net.Conn) {
			go func() { peer.Write([]byte("hello, raw")); peer.Close() }()
			got, err := io.ReadAll(c)
			if err != nil || string(got) != "hello, raw" {
				t.Fatalf("ReadAll = %q, %v", got, err)
			}
		}},
		{"a zero-length read returns at once", func(t *testing.T, c *rawTCPConn, peer net.Conn) {
			if n, err := c.Read(nil); n != 0 || err != nil {
				t.Fatalf("Read(nil) = %d, %v", n, err)
			}
		}},
		{"a read past its deadline times out, then reads again", func(t *testing.T, c *rawTCPConn, peer net.Conn) {
			c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			_, err := c.Read(make([]byte, 8))
			var ne net.Error
			if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("Read past the deadline = %v, want a timeout", err)
			}
			c.SetReadDeadline(time.Time{})
			peer.Write([]byte("x"))
			buf := make([]byte, 8)
			if n, err := c.Read(buf); n != 1 || err != nil || buf[0] != 'x' {
				t.Fatalf("Read after clearing the deadline = %d, %v", n, err)
			}
		}},
		{"a deadline in the past unblocks a waiting read", func(t *testing.T, c *rawTCPConn, peer net.Conn) {
			done := make(chan error, 1)
			go func() {
				_, err := c.Read(make([]byte, 8))
				done <- err
			}()
			// The interrupt of an exchange whose client went away does this.
			c.SetDeadline(aLongTimeAgo)
			if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("waiting Read after the deadline moved to the past = %v", err)
			}
		}},
		{"closing unblocks a waiting read with net.ErrClosed", func(t *testing.T, c *rawTCPConn, peer net.Conn) {
			done := make(chan error, 1)
			go func() {
				_, err := c.Read(make([]byte, 8))
				done <- err
			}()
			c.Close()
			if err := <-done; !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Read on a closed connection = %v, want net.ErrClosed", err)
			}
		}},
		{"a reset arrives as ECONNRESET", func(t *testing.T, c *rawTCPConn, peer net.Conn) {
			peer.(*net.TCPConn).SetLinger(0)
			peer.Close()
			_, err := c.Read(make([]byte, 8))
			var se *os.SyscallError
			if !errors.Is(err, syscall.ECONNRESET) || !errors.As(err, &se) {
				t.Fatalf("Read after the peer reset = %v, want ECONNRESET", err)
			}
		}},
		{"a large write waits for the peer and arrives whole", func(t *testing.T, c *rawTCPConn, peer net.Conn) {
			want := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB, far past the socket buffers
			got := make(chan []byte, 1)
			go func() {
				b, _ := io.ReadAll(peer)
				got <- b
			}()
			n, err := c.Write(want)
			if n != len(want) || err != nil {
				t.Fatalf("Write = %d, %v; want %d", n, err, len(want))
			}
			c.CloseWrite() // promoted from *net.TCPConn: the peer sees EOF
			if b := <-got; !bytes.Equal(b, want) {
				t.Fatalf("peer read %d bytes, not what was written", len(b))
			}
		}},
		{"a write the peer does not read times out with what it wrote", func(t *testing.T, c *rawTCPConn, peer net.Conn) {
			c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
			big := make([]byte, 64<<20)
			n, err := c.Write(big)
			if !errors.Is(err, os.ErrDeadlineExceeded) || n <= 0 || n >= len(big) {
				t.Fatalf("Write to a stalled peer = %d, %v; want part written and a timeout", n, err)
			}
		}},
		{"a write after the peer closed fails", func(t *testing.T, c *rawTCPConn, peer net.Conn) {
			peer.(*net.TCPConn).SetLinger(0)
			peer.Close()
			// The first write may still be accepted locally; the reset
			// then fails a later one.
			var err error
			for i := 0; i < 100 && err == nil; i++ {
				_, err = c.Write([]byte("data"))
				if err == nil {
					c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
					c.Read(make([]byte, 1)) // collect the reset
				}
			}
			if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
				t.Fatalf("Write after the peer reset = %v, want ECONNRESET or EPIPE", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, peer := rawPair(t)
			tt.run(t, c, peer)
		})
	}
}

// TestRawIOConcurrentReadAndWrite echoes through the peer while one
// goroutine writes and another reads, as a proxied upgrade does.
func TestRawIOConcurrentReadAndWrite(t *testing.T) {
	c, peer := rawPair(t)
	go io.Copy(peer, peer) // echo
	const total = 2 << 20
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		chunk := bytes.Repeat([]byte{'r'}, 1000)
		for sent := 0; sent < total; sent += len(chunk) {
			if _, err := c.Write(chunk[:min(len(chunk), total-sent)]); err != nil {
				t.Errorf("Write: %v", err)
				return
			}
		}
	}()
	got, err := io.ReadFull(c, make([]byte, total))
	wg.Wait()
	if err != nil || got != total {
		t.Fatalf("read back %d of %d bytes: %v", got, total, err)
	}
}

// TestRawIODoesNotAllocate: the bound read and write functions are what
// keep the request path free of per-call allocations.
func TestRawIODoesNotAllocate(t *testing.T) {
	c, peer := rawPair(t)
	msg := []byte("ping")
	buf := make([]byte, 16)
	pbuf := make([]byte, 16)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(peer, pbuf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
		if _, err := peer.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("a write and a read allocate %.1f times, want 0", allocs)
	}
}

// TestProxyConnectionsUseRawIO: the client's connection (through the
// proxy listener) and the backend's (through the pool) are both wrapped.
func TestProxyConnectionsUseRawIO(t *testing.T) {
	addr, accepted := acceptOne(t, func(ln net.Listener) net.Listener { return newClientListener(ln, 0) })
	pool := newConnPool(addr, &net.Dialer{}, 1)
	up, _, err := pool.get(t.Context(), true, false)
	if err != nil {
		t.Fatal(err)
	}
	defer up.nc.Close()
	if _, ok := up.nc.(*rawTCPConn); !ok {
		t.Errorf("backend connection is %T, want *rawTCPConn", up.nc)
	}
	in, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer in.Close()
	if cc, ok := in.(*clientConn); !ok {
		t.Errorf("accepted client connection is %T, want *clientConn", in)
	} else if _, ok := cc.Conn.(*rawTCPConn); !ok {
		t.Errorf("accepted client connection wraps %T, want *rawTCPConn", cc.Conn)
	}
}
