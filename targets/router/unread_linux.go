package router

import "golang.org/x/sys/unix"

// tcpStateClose is TCP_CLOSE in Linux's tcp_states.h: after a reset.
const tcpStateClose = 7

// unread reports, for a connection that failed before any byte of an
// answer, whether the backend's TCP stack shows that the backend did not
// read the request, from the kernel's view of the connection (TCP_INFO):
//
//   - the connection was reset: the backend's socket was closed while
//     bytes of the request were still unread in it, or before they
//     arrived (a socket closed with everything read ends with a FIN,
//     not a reset), so its application did not read the whole request;
//   - or bytes of the request are still unacknowledged, or not even
//     sent: they reached a socket that was already closed (its reset is
//     on the way) and no application can read them.
//
// A backend that read the whole request and then closed without answering
// (it crashed while processing it, say) acknowledged every byte and sent
// a FIN: unread reports false, and a non-idempotent request is not sent
// again.
func (l *liveness) unread() bool {
	if l.raw == nil {
		return false
	}
	var info *unix.TCPInfo
	var err error
	cerr := l.raw.Control(func(fd uintptr) {
		info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	})
	if cerr != nil || err != nil {
		return false
	}
	return info.State == tcpStateClose || info.Unacked > 0 || info.Notsent_bytes > 0
}
