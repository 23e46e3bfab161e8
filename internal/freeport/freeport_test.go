package freeport

import (
	"net"
	"testing"
)

func TestAddrsAreDistinctAndFreeAfterwards(t *testing.T) {
	for _, n := range []int{1, 2, 64} {
		addrs, err := Addrs(n)
		if err != nil {
			t.Fatal(err)
		}
		if len(addrs) != n {
			t.Fatalf("Addrs(%d) gave %d addresses", n, len(addrs))
		}
		seen := map[string]bool{}
		for _, a := range addrs {
			if seen[a] {
				t.Fatalf("Addrs(%d) gave %s twice: %v", n, a, addrs)
			}
			seen[a] = true
		}
		// Released: the server that was promised the port can bind it.
		ln, err := net.Listen("tcp", addrs[0])
		if err != nil {
			t.Fatalf("bind %s after Addrs: %v", addrs[0], err)
		}
		ln.Close()
	}
}

func TestSetHoldsUntilRelease(t *testing.T) {
	var s Set
	addr, err := s.Addr()
	if err != nil {
		t.Fatal(err)
	}
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		t.Fatalf("%s could be bound while the set held it", addr)
	}
	s.Release()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("bind %s after Release: %v", addr, err)
	}
	ln.Close()
}
