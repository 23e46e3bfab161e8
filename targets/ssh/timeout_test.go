package ssh

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCommandTimeoutClosesHungConnection: a host whose sshd stops
// answering mid-operation fails after command_timeout instead of hanging,
// and works again (redial) once it answers.
func TestCommandTimeoutClosesHungConnection(t *testing.T) {
	f := newFleet(t, 1, PoolOptions{})
	ctx := ctxT(t)
	s := f.c.Servers[0]
	tg := target(f.c, s)
	tg.CommandTimeout = 500 * time.Millisecond
	h := f.pool.Host("web1", tg)
	if err := h.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	s.PauseConnections()
	_, err := h.Inspect(ctx) // without the timeout this would hang until ctx (2 min) ends with another error
	s.ResumeConnections()
	if err == nil || !strings.Contains(err.Error(), "command_timeout") {
		t.Fatalf("Inspect of a hung host = %v, want a command_timeout error", err)
	}
	if err := h.Prepare(ctx, release(t, "r1", map[string]string{"a": "1"}), nil); err != nil {
		t.Fatalf("after the host answers again: %v", err)
	}
}

// silentServer accepts TCP connections and never speaks.
type silentServer struct {
	l        net.Listener
	accepted atomic.Int32
	wg       sync.WaitGroup
	// accepts, when set, is sent the count after each accepted connection.
	accepts chan int32
}

func newSilentServer(t *testing.T) *silentServer {
	return newSilentServerWith(t, nil)
}

// newSilentServerWith is newSilentServer telling accepts (when not nil) of
// each connection as it comes; the channel must have room for them all.
func newSilentServerWith(t *testing.T, accepts chan int32) *silentServer {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentServer{l: l, accepts: accepts}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n := s.accepted.Add(1)
			if s.accepts != nil {
				s.accepts <- n
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				for { // until the client gives up
					if _, err := c.Read(make([]byte, 1<<16)); err != nil {
						break
					}
				}
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() { l.Close(); s.wg.Wait() })
	return s
}

// TestDialsAreBoundedAndTimedOut: servers that accept but never answer
// make every host fail with a connect timeout, and dials wait for a free
// slot: with 2 slots, 6 dials that each last the 300 ms timeout need at
// least 3 rounds (a lower bound, so a slow machine cannot break it).
func TestDialsAreBoundedAndTimedOut(t *testing.T) {
	srv := newSilentServer(t)
	p := NewPool(PoolOptions{MaxParallelDials: 2})
	defer p.Close()
	ctx := ctxT(t)
	var wg sync.WaitGroup
	start := time.Now()
	errs := make([]error, 6)
	for i := range errs {
		tg := Target{User: "u", Addr: srv.l.Addr().String(), DeployTo: "/srv/app",
			IdentityFiles: []string{writeTestKey(t)}, ExplicitIdentity: true,
			KnownHosts: []string{t.TempDir() + "/kh"}, ConnectTimeout: 300 * time.Millisecond}
		tg.User = "u" + string(rune('a'+i)) // distinct connections
		h := p.Host("h", tg)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = h.Inspect(ctx)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "timed out") {
			t.Errorf("host %d: %v, want a connect timeout", i, err)
		}
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("6 dials with 2 slots and a 300ms timeout took %s, want >= 900ms: dials are not bounded", d)
	}
	if n := srv.accepted.Load(); n != 6 {
		t.Errorf("server saw %d connections, want 6", n)
	}
}

// TestDialsPerServerBounded: however many dials the pool allows at once,
// one server (one address) gets at most MaxDialsPerServer connections
// being set up at once (sshd's MaxStartups drops the ones beyond 10),
// and dials to another server do not wait for them.
func TestDialsPerServerBounded(t *testing.T) {
	const n = 2 * MaxDialsPerServer
	busyAccepts := make(chan int32, n)
	busy, other := newSilentServerWith(t, busyAccepts), newSilentServerWith(t, make(chan int32, 2))
	p := NewPool(PoolOptions{MaxParallelDials: 64})
	defer p.Close()
	ctx := ctxT(t)
	const timeout = 2 * time.Second
	var wg sync.WaitGroup
	dial := func(srv *silentServer, user string) {
		tg := Target{User: user, Addr: srv.l.Addr().String(), DeployTo: "/srv/app",
			IdentityFiles: []string{writeTestKey(t)}, ExplicitIdentity: true,
			KnownHosts: []string{t.TempDir() + "/kh"}, ConnectTimeout: timeout}
		h := p.Host("h", tg) // distinct users: distinct connections
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.Connect(ctx); err == nil || !strings.Contains(err.Error(), "timed out") {
				t.Errorf("%s@%s: %v, want a connect timeout", user, tg.Addr, err)
			}
		}()
	}
	start := time.Now()
	for i := range n {
		dial(busy, fmt.Sprintf("u%d", i))
	}
	// Once the busy server has its first round, the other server's dials
	// go through while that round waits for its timeout.
	for range MaxDialsPerServer {
		<-busyAccepts
	}
	for i := range 2 {
		dial(other, fmt.Sprintf("o%d", i))
	}
	for range 2 {
		<-other.accepts
	}
	if got := busy.accepted.Load(); got != MaxDialsPerServer {
		t.Errorf("the busy server had %d connections when the other's were accepted, want %d: its dials are not bounded per server, or the other's waited for them", got, MaxDialsPerServer)
	}
	wg.Wait()
	if got := busy.accepted.Load(); got != n {
		t.Errorf("the busy server saw %d connections, want %d", got, n)
	}
	if d := time.Since(start); d < 2*timeout {
		t.Errorf("%d dials to one server with %d slots and a %s timeout took %s, want >= %s: dials are not bounded per server", n, MaxDialsPerServer, timeout, d, 2*timeout)
	}
}

// TestUploadsBoundedAcrossHosts: every file sent takes one of the pool's
// upload slots (MaxUploads), shared by all its hosts: while another host
// holds the only slot, a prepare that must send a file waits for it.
func TestUploadsBoundedAcrossHosts(t *testing.T) {
	f := newFleet(t, 1, PoolOptions{MaxUploads: 1})
	ctx := ctxT(t)
	h := f.pool.Host("web1", target(f.c, f.c.Servers[0]))
	if err := h.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	f.pool.uploads <- struct{}{} // another host's upload in flight
	done := make(chan error, 1)
	go func() { done <- h.Prepare(ctx, release(t, "r1", map[string]string{"a": "1"}), nil) }()
	select {
	case err := <-done:
		t.Fatalf("the prepare ended (%v) while the pool's only upload slot was held", err)
	case <-time.After(time.Second): // it waits; a slow machine only makes this check weaker
	}
	<-f.pool.uploads
	if err := <-done; err != nil {
		t.Fatalf("once the slot is free: %v", err)
	}
}
