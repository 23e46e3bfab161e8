//go:build unix && !linux

package router

// unread cannot read the kernel's view of a connection on this platform:
// a connection that failed unanswered is taken as possibly read, and only
// idempotent requests without a body are sent again.
func (l *liveness) unread() bool { return false }
