//go:build !unix

package router

import "net"

// liveness cannot peek at a socket on this platform: an idle connection
// is assumed open, and a stale one is caught by the retry of idempotent
// requests.
type liveness struct{}

func (l *liveness) init(net.Conn) {}

func (l *liveness) check() bool { return true }

// unread: see unread_other.go.
func (l *liveness) unread() bool { return false }
