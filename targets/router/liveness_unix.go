//go:build unix

package router

import (
	"net"
	"syscall"
)

// liveness tells whether an idle keep-alive connection is still open: a
// non-blocking MSG_PEEK read finds the backend's FIN (or RST, or bytes it
// should not have sent) without consuming anything.
type liveness struct {
	raw   syscall.RawConn
	ctl   func(fd uintptr) // peek, bound once
	buf   [1]byte
	errno syscall.Errno
}

func (l *liveness) init(nc net.Conn) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	l.raw = raw
	l.ctl = l.peek
}

func (l *liveness) peek(fd uintptr) {
	_, _, err := syscall.Recvfrom(int(fd), l.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	l.errno = 0
	if err != nil {
		l.errno, _ = err.(syscall.Errno)
		if l.errno == 0 {
			l.errno = syscall.EIO
		}
	}
}

// check reports whether the connection can carry a request: nothing to
// read and no error pending. It goes through Control, not Read, so that a
// read deadline left from the last exchange does not matter.
func (l *liveness) check() bool {
	if l.raw == nil {
		return true
	}
	if err := l.raw.Control(l.ctl); err != nil {
		return false
	}
	// EAGAIN: open and quiet. 0 bytes: the backend closed it. Bytes: the
	// backend sent something unasked, and the stream cannot be trusted.
	return l.errno == syscall.EAGAIN || l.errno == syscall.EWOULDBLOCK
}
