// Package freeport reserves free loopback TCP ports for servers that are
// started later and bind the ports themselves (a demo's backends, a test's
// etcd members).
//
// A port found by listening on port 0 and closing at once is free for the
// next pick too: the kernel handed one CI run's demo the same port for a
// host's blue and its green slot. A Set keeps every port it picked bound
// until Release, so the ports of one set are always distinct.
package freeport

import (
	"errors"
	"fmt"
	"net"
)

// Set is a group of reserved ports. The zero value is ready to use.
type Set struct{ held []net.Listener }

// Addr reserves a free port on 127.0.0.1 and returns its "host:port".
func (s *Set) Addr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("reserve a loopback port: %w", err)
	}
	s.held = append(s.held, ln)
	return ln.Addr().String(), nil
}

// Port is Addr's port alone.
func (s *Set) Port() (string, error) {
	addr, err := s.Addr()
	if err != nil {
		return "", err
	}
	_, port, err := net.SplitHostPort(addr)
	return port, err
}

// Release frees the reserved ports for the processes that will bind them.
func (s *Set) Release() {
	for _, ln := range s.held {
		ln.Close()
	}
	s.held = nil
}

// Addrs returns n distinct loopback addresses that were free a moment ago.
func Addrs(n int) ([]string, error) {
	var s Set
	defer s.Release()
	addrs := make([]string, 0, n)
	for range n {
		a, err := s.Addr()
		if err != nil {
			return nil, errors.Join(fmt.Errorf("%d of %d ports reserved", len(addrs), n), err)
		}
		addrs = append(addrs, a)
	}
	return addrs, nil
}
