//go:build !linux

package router

import "net"

// wrapRawIO returns nc: raw-syscall reads and writes are Linux only.
func wrapRawIO(nc net.Conn) net.Conn { return nc }
