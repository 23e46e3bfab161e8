package ssh

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// TestSilentServerIsClosedAsLost: a real sshd that stops answering (its
// connection's processes frozen) is closed by the keepalives once it has
// been silent for KeepaliveCountMax intervals, and says why; the host
// works again (redial) once the server answers.
func TestSilentServerIsClosedAsLost(t *testing.T) {
	lost := make(chan string, 4)
	f := newFleet(t, 1, PoolOptions{
		KeepaliveInterval: 100 * time.Millisecond,
		KeepaliveCountMax: 3,
		onLost:            func(_ Target, why string) { lost <- why },
	})
	ctx := ctxT(t)
	h, s := f.hosts[0], f.c.Servers[0]
	if err := h.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	s.PauseConnections()
	var why string
	select {
	case why = <-lost:
	case <-ctx.Done():
		t.Fatal("a silent connection was never closed")
	}
	s.ResumeConnections()
	if !strings.Contains(why, "nothing heard from the server for 300ms") {
		t.Errorf("closed because %q, want silence named", why)
	}
	if _, err := h.Inspect(ctx); err != nil {
		t.Fatalf("after the server answers again: %v", err)
	}
}

// TestBusyServerIsNotTakenAsLost: a server that holds its keepalive
// answers while it is still sending (a loaded host, or a keeper relaying
// to one) is alive; one that holds them and sends nothing is lost. No
// OpenSSH server can be made to hold its answers while it sends, so this
// server is x/crypto/ssh's, with that one fault.
func TestBusyServerIsNotTakenAsLost(t *testing.T) {
	srv := newHoldingServer(t)
	var whyMu sync.Mutex
	var whys []string
	p := NewPool(PoolOptions{noSFTP: true, KeepaliveInterval: 50 * time.Millisecond, KeepaliveCountMax: 2,
		onLost: func(_ Target, why string) { whyMu.Lock(); whys = append(whys, why); whyMu.Unlock() }})
	t.Cleanup(func() { p.Close() })

	// Busy: the session streams for 1s (a line every 10ms) and every
	// keepalive answer waits for the stream's end, ten times the 100ms
	// of silence allowed.
	l := srv.link(t, p)
	sess, err := l.client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sess.Stdout = &out
	if err := sess.Start("stream"); err != nil {
		t.Fatal(err)
	}
	<-srv.streaming
	if l.lost() {
		t.Fatal("a server still sending was taken as lost while it held a keepalive answer")
	}
	if err := sess.Wait(); err != nil {
		t.Fatalf("the stream: %v", err)
	}
	if got := strings.Count(out.String(), "\n"); got != srv.lines {
		t.Errorf("%d lines streamed, want %d", got, srv.lines)
	}
	if l.closed.Load() || l.dead() {
		t.Fatal("the busy connection was closed")
	}

	// Silent: no session, and the keepalive answers never come.
	l2 := srv.link(t, p)
	if !l2.lost() {
		t.Fatal("a silent server that does not answer was not taken as lost")
	}
	<-l2.done
	whyMu.Lock()
	defer whyMu.Unlock()
	if len(whys) != 1 || !strings.Contains(whys[0], "nothing heard from the server for 100ms") {
		t.Errorf("links closed because %q, want one, for silence", whys)
	}
}

// holdingServer is an SSH server whose "stream" command sends lines for a
// while and which answers a connection's keepalives only once a stream on
// it has ended.
type holdingServer struct {
	ln        net.Listener
	pub       gossh.PublicKey
	cfg       *gossh.ServerConfig
	lines     int
	streaming chan struct{} // closed when the first stream starts
	started   sync.Once
	wg        sync.WaitGroup
}

func newHoldingServer(t *testing.T) *holdingServer {
	pubKey, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := gossh.NewPublicKey(pubKey)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &holdingServer{ln: ln, pub: pub, cfg: &gossh.ServerConfig{NoClientAuth: true}, lines: 100,
		streaming: make(chan struct{})}
	s.cfg.AddHostKey(signer)
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		ln.Close()
		s.wg.Wait()
	})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(c, done)
			}()
		}
	}()
	return s
}

func (s *holdingServer) serve(c net.Conn, done chan struct{}) {
	defer c.Close()
	sc, chans, reqs, err := gossh.NewServerConn(c, s.cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	gone := make(chan struct{})
	defer close(gone)
	// ended is closed when a stream on this connection has ended.
	ended := make(chan struct{})
	var endOnce sync.Once
	go func() {
		for r := range reqs {
			select {
			case <-ended:
				r.Reply(true, nil)
			case <-done:
				return
			case <-gone:
				return
			}
		}
	}()
	for nc := range chans {
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer ch.Close()
			for r := range creqs {
				if r.Type != "exec" {
					r.Reply(false, nil)
					continue
				}
				r.Reply(true, nil)
				s.started.Do(func() { close(s.streaming) })
				for range s.lines {
					if _, err := ch.Write([]byte("busy\n")); err != nil {
						return
					}
					time.Sleep(10 * time.Millisecond) // the pace of a busy server's output, not a wait for anything
				}
				endOnce.Do(func() { close(ended) })
				_, _ = ch.SendRequest("exit-status", false, gossh.Marshal(struct{ Status uint32 }{0}))
				return
			}
		}()
	}
}

// link connects to the server as the pool's dial does (over a heardConn).
func (s *holdingServer) link(t *testing.T, p *Pool) *link {
	t.Helper()
	nc, err := net.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	heard := newHeardConn(nc)
	sc, chans, reqs, err := gossh.NewClientConn(heard, "holding", &gossh.ClientConfig{User: "u", HostKeyCallback: gossh.FixedHostKey(s.pub)})
	if err != nil {
		t.Fatal(err)
	}
	tg := Target{Addr: s.ln.Addr().String()}
	l, err := p.newLink(tg, gossh.NewClient(sc, chans, reqs), &heard.heardClock, false, func() bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.close)
	return l
}
