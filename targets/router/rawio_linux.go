package router

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// rawTCPConn reads and writes a TCP connection with raw non-blocking
// system calls, and waits in the runtime's network poller (through
// syscall.RawConn) when the socket is not ready.
//
// Why: every Read and Write through the net package enters the runtime's
// blocking-syscall path, which hands the processor over if the call
// lasts, and wakes the runtime's monitor thread (sysmon) when it sleeps.
// At a moderate request rate the router goes idle between requests, the
// monitor goes to sleep each time, and the next request's first system
// call wakes it again: a futex wake and two context switches per request
// on cores the backends and clients share. A read or write on a
// non-blocking socket never blocks, so it has no need of that path. The
// bytes, errors, deadlines and closing behave as on the wrapped
// connection.
type rawTCPConn struct {
	*net.TCPConn
	rc syscall.RawConn

	rmu    sync.Mutex // one Read at a time owns the fields below
	rbuf   []byte
	rn     int
	rerr   syscall.Errno
	readFn func(fd uintptr) bool // doRead, bound once

	wmu     sync.Mutex // one Write at a time owns the fields below
	wbuf    []byte
	wn      int
	werr    syscall.Errno
	writeFn func(fd uintptr) bool // doWrite, bound once
}

// wrapRawIO returns nc reading and writing with raw system calls when it
// is a TCP connection (and this is not a race build), and nc itself
// otherwise.
func wrapRawIO(nc net.Conn) net.Conn {
	if !rawIO {
		return nc
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nc
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nc
	}
	c := &rawTCPConn{TCPConn: tc, rc: rc}
	c.readFn = c.doRead
	c.writeFn = c.doWrite
	return c
}

// doRead is one read attempt; false means "not ready, wait".
func (c *rawTCPConn) doRead(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd,
			uintptr(unsafe.Pointer(unsafe.SliceData(c.rbuf))), uintptr(len(c.rbuf)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.rn, c.rerr = int(n), e
		return true
	}
}

// doWrite writes what is left of wbuf; false means "full, wait".
func (c *rawTCPConn) doWrite(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		p := c.wbuf[c.wn:]
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd,
			uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
		switch e {
		case 0:
			c.wn += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werr = e
			return true
		}
	}
	return true
}

// Read reads as net.Conn's Read does.
func (c *rawTCPConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rbuf, c.rn, c.rerr = p, 0, 0
	err := c.rc.Read(c.readFn)
	c.rbuf = nil
	switch {
	case err != nil: // closed, or past the deadline
		return 0, err
	case c.rerr != 0:
		return 0, c.opError("read", c.rerr)
	case c.rn == 0:
		return 0, io.EOF
	}
	return c.rn, nil
}

// Write writes all of p, or fails, as net.Conn's Write does.
func (c *rawTCPConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf, c.wn, c.werr = p, 0, 0
	err := c.rc.Write(c.writeFn)
	n := c.wn
	c.wbuf = nil
	switch {
	case err != nil:
		return n, err
	case c.werr != 0:
		return n, c.opError("write", c.werr)
	}
	return n, nil
}

func (c *rawTCPConn) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(),
		Err: os.NewSyscallError(op, errno)}
}
