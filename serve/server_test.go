package serve

import (
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"flightdeck/engine"
	"flightdeck/internal/syncbuf"
	"flightdeck/tui"
)

func TestUnknownKeyRejected(t *testing.T) {
	alice := newUser(t, "alice", engine.RoleOperator)
	ts := startServer(t, Options{Keys: keysFor(t, alice), Backend: idleBackend()})
	mallory := newUser(t, "mallory", engine.RoleOwner)
	if c, err := ts.dial(mallory); err == nil {
		c.Close()
		t.Fatal("an unknown key was let in")
	} else if !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("unexpected error: %v", err)
	}
	if ts.Refused() == 0 {
		t.Fatal("the refusal was not counted")
	}
	// Neither passwords nor keyboard-interactive are offered.
	_, err := gossh.Dial("tcp", ts.addr, &gossh.ClientConfig{
		User: "alice",
		Auth: []gossh.AuthMethod{gossh.Password("alice"), gossh.KeyboardInteractive(
			func(string, string, []string, []bool) ([]string, error) { return nil, nil })},
		HostKeyCallback: gossh.FixedHostKey(ts.hostKey),
	})
	if err == nil || !strings.Contains(err.Error(), "[none]") && !strings.Contains(err.Error(), "no supported methods remain") {
		t.Fatalf("password auth: %v", err)
	}
	// The known key gets in and is told who it is.
	out, _, err := ts.run(t, alice, nil, "whoami")
	if err != nil || !strings.Contains(out, "alice (operator) SHA256:") {
		t.Fatalf("whoami: %q %v", out, err)
	}
}

func TestStatusColour(t *testing.T) {
	owner := newUser(t, "olivia", engine.RoleOwner)
	ts := startServer(t, Options{Keys: keysFor(t, owner), Backend: idleBackend(), App: "shop", Env: "production"})
	tests := []struct {
		name   string
		env    map[string]string
		cmd    string
		escape bool
	}{
		{"colour by default", nil, "status", true},
		{"--no-color", nil, "status --no-color", false},
		{"NO_COLOR sent by the client", map[string]string{"NO_COLOR": "1"}, "status", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := ts.run(t, owner, tc.env, tc.cmd)
			if err != nil {
				t.Fatalf("%v: %s", err, errOut)
			}
			if !strings.Contains(out, "shop/production") || !strings.Contains(out, "IDLE") {
				t.Fatalf("status:\n%s", out)
			}
			if got := strings.Contains(out, "\x1b"); got != tc.escape {
				t.Fatalf("escape sequences present = %v, want %v:\n%q", got, tc.escape, out)
			}
		})
	}
	if _, errOut, err := ts.run(t, owner, nil, "status --bogus"); err == nil || !strings.Contains(errOut, "unknown flag") {
		t.Fatalf("bad flag: %v %q", err, errOut)
	}
	if _, errOut, err := ts.run(t, owner, nil, "rm -rf /"); err == nil || !strings.Contains(errOut, `unknown command "rm"`) {
		t.Fatalf("unknown command: %v %q", err, errOut)
	}
}

func TestSessionCap(t *testing.T) {
	a := newUser(t, "alice", engine.RoleOperator)
	ts := startServer(t, Options{Keys: keysFor(t, a), Backend: idleBackend(), MaxSessions: 1})
	first := ts.open(t, a, 100, 30)
	first.waitFor(10*time.Second, "alice(operator)")
	_, errOut, err := ts.run(t, a, nil, "status")
	if err == nil || !strings.Contains(errOut, "limit of 1 sessions") {
		t.Fatalf("second session: %v %q", err, errOut)
	}
	first.close()
	deadline := time.Now().Add(5 * time.Second)
	for ts.Sessions() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if out, _, err := ts.run(t, a, nil, "status"); err != nil || !strings.Contains(out, "IDLE") {
		t.Fatalf("after the first left: %v %q", err, out)
	}
}

func TestIdleTimeout(t *testing.T) {
	a := newUser(t, "alice", engine.RoleOperator)
	ts := startServer(t, Options{Keys: keysFor(t, a), Backend: idleBackend(), IdleTimeout: 400 * time.Millisecond})
	tm := ts.open(t, a, 100, 30)
	select {
	case <-tm.done:
	case <-time.After(10 * time.Second):
		t.Fatal("an idle session stayed open")
	}
	if ts.Sessions() != 0 {
		// leave runs after the handler; give it its deadline.
		deadline := time.Now().Add(2 * time.Second)
		for ts.Sessions() != 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if n := ts.Sessions(); n != 0 {
		t.Fatalf("%d sessions left", n)
	}
}

func TestPresenceShowsOpenDialog(t *testing.T) {
	alice := newUser(t, "alice", engine.RoleOwner)
	bob := newUser(t, "bob", engine.RoleViewer)
	b := idleBackend()
	ts := startServer(t, Options{Keys: keysFor(t, alice, bob), Backend: b, App: "shop", Env: "prod"})
	ta := ts.open(t, alice, 120, 30)
	// Presence is in the order sessions joined: bob joins once alice has.
	ta.waitFor(10*time.Second, "alice(owner)")
	tb := ts.open(t, bob, 120, 30)
	tb.waitFor(10*time.Second, "alice(owner)", "bob(viewer)")
	// Between runs, with an empty journal, a deploy's dialog opens (a
	// rollback has nothing to go to).
	ta.keys("d")
	tb.waitFor(5*time.Second, "alice: confirming deploy")
	out, _, _ := ts.run(t, bob, nil, "status")
	if !strings.Contains(out, "connected: alice: confirming deploy(owner) bob(viewer)") {
		t.Fatalf("status does not show the open dialog:\n%s", out)
	}
	ta.keys("n")
	deadline := time.Now().Add(5 * time.Second)
	for {
		p := b.Presence()
		if len(p) == 2 && p[0].Name == "alice" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("presence after cancel: %+v", p)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ta.close()
	deadline = time.Now().Add(5 * time.Second)
	for len(b.Presence()) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("presence after alice left: %+v", b.Presence())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// panicBackend is a backend whose hub lookup panics: a bug in a session
// handler.
type panicBackend struct{ *tui.EngineBackend }

func (panicBackend) Hub() *engine.Hub { panic("hub lookup blew up") }

// TestSessionPanicIsContained: a panic in one session's handler ends that
// session with an error and leaves the server serving the next one.
func TestSessionPanicIsContained(t *testing.T) {
	owner := newUser(t, "olivia", engine.RoleOwner)
	logs := &syncbuf.Buffer{}
	ts := startServer(t, Options{Keys: keysFor(t, owner), Backend: panicBackend{idleBackend()},
		Log: slog.New(slog.NewTextHandler(logs, nil))})
	_, errOut, err := ts.run(t, owner, nil, "status")
	var exit *gossh.ExitError
	if !errors.As(err, &exit) || exit.ExitStatus() != 1 || !strings.Contains(errOut, "internal error") {
		t.Fatalf("panicking session: err %v, stderr %q; want exit 1 and a message", err, errOut)
	}
	if !strings.Contains(logs.String(), "hub lookup blew up") {
		t.Errorf("the panic is not logged:\n%s", logs.String())
	}
	out, errOut, err := ts.run(t, owner, nil, "whoami")
	if err != nil || !strings.Contains(out, "olivia (owner)") {
		t.Fatalf("the server did not survive the panic: %v %q %q", err, out, errOut)
	}
}

// A connection counts toward MaxSessions whether or not it opens a
// session; a few beyond the cap are told why, more are closed at once.
func TestConnectionsCountTowardTheSessionCap(t *testing.T) {
	a := newUser(t, "alice", engine.RoleOperator)
	ts := startServer(t, Options{Keys: keysFor(t, a), Backend: idleBackend(), MaxSessions: 1})
	idle, err := ts.dial(a) // authenticated, opens no session
	if err != nil {
		t.Fatal(err)
	}
	_, errOut, err := ts.run(t, a, nil, "status")
	if err == nil || !strings.Contains(errOut, "limit of 1 sessions") {
		t.Fatalf("a session beside a connection that holds none: %v %q", err, errOut)
	}
	// Connections that never even finish the handshake count too.
	var raws []net.Conn
	for range overCapGrace {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		raws = append(raws, c)
	}
	waitCond(t, "the raw connections admitted", func() bool { return ts.conns.Load() == 1+overCapGrace })
	if c, err := ts.dial(a); err == nil {
		c.Close()
		t.Fatal("a connection beyond the cap and its grace got through the handshake")
	}
	for _, c := range raws {
		c.Close()
	}
	idle.Close()
	waitCond(t, "the connections closed", func() bool { return ts.conns.Load() == 0 })
	if out, _, err := ts.run(t, a, nil, "status"); err != nil || !strings.Contains(out, "IDLE") {
		t.Fatalf("after the connections closed: %v %q", err, out)
	}
}

// Agent forwarding is refused, not acknowledged.
func TestAgentForwardingRefused(t *testing.T) {
	a := newUser(t, "alice", engine.RoleOperator)
	ts := startServer(t, Options{Keys: keysFor(t, a), Backend: idleBackend()})
	c, err := ts.dial(a)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := agent.RequestAgentForwarding(s); err == nil {
		t.Fatal("the server acknowledged an agent-forwarding request")
	}
	// The session still works after the refusal.
	out, err := s.Output("whoami")
	if err != nil || !strings.Contains(string(out), "alice (operator)") {
		t.Fatalf("whoami after the refusal: %q %v", out, err)
	}
}

func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
