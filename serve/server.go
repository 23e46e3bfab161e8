// Package serve serves the flightdeck cockpit over SSH so that several
// operators pair on one release: every session gets its own cockpit (own
// cursor, focus, filter, terminal size and colour profile) over one shared
// engine and hub, and every command carries the actor of the key that
// authenticated the session.
//
// Who is who comes from an authorized-keys file (see ParseKeys): each key
// has a display name and a role (viewer, operator, owner). Only public-key
// authentication is offered. The role is looked up again, in the session
// handler, from the key the SSH connection actually authenticated with;
// nothing is carried over from the authentication callback. The engine
// checks the role of every command itself; the cockpit of a viewer is
// read-only only as a courtesy.
//
// A session that runs a command instead of a shell gets text: `status`
// prints the run state, `pause`, `resume`, `promote` and `approve` send
// that command to the run (approve is the second operator's half of a
// four-eyes promotion), `whoami` names the key's identity.
package serve

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"charm.land/ssh"
	"charm.land/wish/v2"
	gossh "golang.org/x/crypto/ssh"

	"flightdeck/engine"
	"flightdeck/tui"
)

// Defaults of Options.
const (
	DefaultIdleTimeout  = 30 * time.Minute
	DefaultMaxSessions  = 32
	DefaultWriteTimeout = time.Minute
)

// Options configure a Server.
type Options struct {
	// Keys are the authorised keys and their identities (required).
	Keys *Keys
	// KeysFile, when set, is the file Keys were read from: it is read again
	// when it changes (checked at every login and every second while
	// cockpits are open), so keys are added and revoked without a restart.
	// A cockpit whose key is removed, or whose name or role changes, is
	// closed (its actor was fixed when it connected).
	KeysFile string
	// HostKey is the server's private host key (required; see LoadOrCreateHostKey).
	HostKey gossh.Signer
	// Backend is the one cockpit backend all sessions share (required).
	// When it has a SetPresence([]tui.Presence) method (tui.EngineBackend
	// does), it is told who is connected on every change.
	Backend tui.Backend
	// UI is the cockpit configuration (theme, key bindings, ASCII); a
	// session's own NO_COLOR / TERM=dumb switches its theme to mono.
	UI tui.Config
	// App and Env name the environment before the first run.
	App, Env string
	// SLO thresholds drawn by the sparklines.
	SLO tui.SLO
	// NoHealthCheck: the plan checks no host's health (HEALTH shows a dash).
	NoHealthCheck bool
	// Scenario is the training scenario of a demo server (shown in every
	// session's cockpit); zero otherwise.
	Scenario tui.Scenario
	// IdleTimeout closes a session without input for this long (default 30m).
	IdleTimeout time.Duration
	// MaxSessions caps concurrent sessions; more are refused with a
	// message (default 32).
	MaxSessions int
	// WriteTimeout closes a session whose output has been blocked this long
	// (a stalled client; default 1m). Only that session waits meanwhile.
	WriteTimeout time.Duration
	// Log receives connection and refusal records (default: discarded).
	// Keys and secrets are never logged, only fingerprints.
	Log *slog.Logger
}

// Server is an SSH server of cockpits over one shared backend.
type Server struct {
	o   Options
	srv *ssh.Server
	// ctx bounds backend calls started from sessions (a deploy started by
	// an owner outlives the owner's session, not the server).
	ctx context.Context

	keys *keyring

	mu       sync.Mutex
	sessions map[uint64]*member
	nextID   uint64
	refused  atomic.Int64
	conns    atomic.Int64 // connections open, authenticated or not, with a session or not
}

// member is one connected session.
type member struct {
	id       uint64
	actor    engine.Actor
	key      gossh.PublicKey // the key the session authenticated with
	since    time.Time
	cockpit  bool
	activity string // e.g. "confirming rollback"
	lastIn   atomic.Int64
}

// New checks the options and builds a server.
func New(o Options) (*Server, error) {
	switch {
	case o.Keys == nil || o.Keys.Len() == 0:
		return nil, errors.New("serve: no authorised keys")
	case o.HostKey == nil:
		return nil, errors.New("serve: no host key")
	case o.Backend == nil:
		return nil, errors.New("serve: no backend")
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = DefaultMaxSessions
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{o: o, sessions: map[uint64]*member{}, ctx: context.Background()}
	s.keys = newKeyring(o.Keys, o.KeysFile, o.Log)
	// Public keys only: no password, no keyboard-interactive handler, so
	// the server offers neither. The host key is ours (wish would otherwise
	// generate one in the working directory).
	srv, err := wish.NewServer(
		func(srv *ssh.Server) error { srv.AddHostKey(o.HostKey); return nil },
		wish.WithVersion("flightdeck"),
		wish.WithPublicKeyAuth(func(ctx ssh.Context, key ssh.PublicKey) bool {
			_, ok := s.keys.keys(true).Lookup(key)
			if !ok {
				s.refused.Add(1)
				o.Log.Info("refused key", "user", ctx.User(), "remote", ctx.RemoteAddr().String(), "fingerprint", gossh.FingerprintSHA256(key))
			}
			return ok
		}),
		// The connection-level timeout covers sessions that run a command
		// and connections that never open a session; cockpits also time
		// out on input (their screens write every second).
		wish.WithIdleTimeout(o.IdleTimeout),
	)
	if err != nil {
		return nil, fmt.Errorf("serve: ssh server: %w", err)
	}
	srv.Handler = s.handle
	// Forwarding of any kind is never offered: ports are refused by these
	// callbacks, the agent by refuseAgent (the library would acknowledge
	// an agent request).
	srv.LocalPortForwardingCallback = func(ssh.Context, string, uint32) bool { return false }
	srv.ReversePortForwardingCallback = func(ssh.Context, string, uint32) bool { return false }
	srv.ChannelHandlers = map[string]ssh.ChannelHandler{"session": refuseAgent(ssh.DefaultSessionHandler)}
	srv.HandshakeTimeout = 30 * time.Second
	srv.SubsystemHandlers = map[string]ssh.SubsystemHandler{}
	// Every connection counts toward MaxSessions, whether or not it opens
	// a session: one that never does still holds a socket, a goroutine and
	// the handshake's memory for up to IdleTimeout.
	srv.ConnCallback = s.admit
	srv.ConnectionCloseCallback = func(net.Conn) { s.conns.Add(-1) }
	s.srv = srv
	return s, nil
}

// Serve accepts connections on l until ctx ends, then closes every
// session and returns nil (or the listener's error).
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	s.ctx = ctx
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			_ = s.srv.Close()
		case <-done:
		}
	}()
	err := s.srv.Serve(l)
	close(done)
	if ctx.Err() != nil || errors.Is(err, ssh.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serve ssh: %w", err)
}

// Refused counts the connection attempts refused because of an unknown key.
func (s *Server) Refused() int64 { return s.refused.Load() }

// handle is the session handler. The identity comes from the key this
// connection authenticated with, looked up again here.
func (s *Server) handle(sess ssh.Session) {
	defer s.recoverSession(sess)
	// The key file was checked at authentication, a moment ago.
	id, ok := s.keys.keys(false).Lookup(sess.PublicKey())
	if !ok {
		fmt.Fprint(sess.Stderr(), "flightdeck: this key is not authorised\r\n")
		_ = sess.Exit(1)
		return
	}
	actor := engine.Actor{Name: id.Name, Role: id.Role, Fingerprint: id.Fingerprint, Via: "ssh"}
	cmd := sess.Command()
	_, _, hasPty := sess.Pty()
	m, err := s.join(sess.Context(), actor, sess.PublicKey(), len(cmd) == 0 && hasPty)
	if err != nil {
		fmt.Fprintf(sess.Stderr(), "flightdeck: %v\r\n", err)
		_ = sess.Exit(1)
		return
	}
	defer s.leave(m)
	log := s.o.Log.With("session", m.id, "name", actor.Name, "role", string(actor.Role), "fingerprint", actor.Fingerprint)
	if len(cmd) > 0 {
		code := s.command(sess, actor, cmd)
		log.Info("command", "args", cmd, "exit", code)
		_ = sess.Exit(code)
		return
	}
	if !hasPty {
		fmt.Fprint(sess.Stderr(), "flightdeck: no terminal: connect with `ssh -t` for the cockpit, or run a command such as `status`\r\n")
		_ = sess.Exit(2)
		return
	}
	log.Info("cockpit opened")
	reason := s.cockpit(sess, m, log)
	log.Info("cockpit closed", "reason", reason)
	_ = sess.Exit(0)
}

// recoverSession ends a session whose handler panicked: the panic is
// logged with its stack, the client is told, and the process, which
// hosts the engine and every other session, goes on.
func (s *Server) recoverSession(sess ssh.Session) {
	r := recover()
	if r == nil {
		return
	}
	s.o.Log.Error("session handler panicked", "user", sess.User(), "remote", sess.RemoteAddr().String(),
		"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	_, _ = io.WriteString(sess.Stderr(), "\r\nflightdeck: internal error: this session ended; the server goes on\r\n")
	_ = sess.Exit(1)
}

// overCapGrace is how many connections beyond MaxSessions are still let
// through the handshake, so that a session they open is told why it is
// refused; overCapLife is how long such a connection may stay.
const (
	overCapGrace = 4
	overCapLife  = 10 * time.Second
)

// overCapKey marks, in a connection's context, one beyond MaxSessions.
type overCapKey struct{}

// admit counts a new connection. Up to MaxSessions are served; the next
// few get through the handshake only to be told the server is full (and
// are closed after overCapLife); any beyond those are closed at once.
func (s *Server) admit(ctx ssh.Context, c net.Conn) net.Conn {
	n := s.conns.Add(1)
	max := int64(s.o.MaxSessions)
	switch {
	case n <= max:
		return c
	case n <= max+overCapGrace:
		ctx.SetValue(overCapKey{}, true)
		t := time.AfterFunc(overCapLife, func() { c.Close() })
		return &timedConn{Conn: c, timer: t}
	default:
		s.conns.Add(-1)
		s.o.Log.Info("refused connection: the server is full", "remote", c.RemoteAddr().String(), "connections", n-1)
		return nil
	}
}

// timedConn is a connection closed by its timer unless it closes first.
type timedConn struct {
	net.Conn
	timer *time.Timer
}

func (c *timedConn) Close() error {
	c.timer.Stop()
	return c.Conn.Close()
}

// refuseAgent wraps a session channel handler so that agent-forwarding
// requests are answered no (and never reach the handler, which would
// acknowledge them): flightdeck serve never uses an operator's agent.
func refuseAgent(next ssh.ChannelHandler) ssh.ChannelHandler {
	return func(srv *ssh.Server, conn *gossh.ServerConn, newChan gossh.NewChannel, ctx ssh.Context) {
		next(srv, conn, agentFilter{newChan}, ctx)
	}
}

// agentFilter is a NewChannel whose accepted channel's requests go
// through a filter that refuses agent forwarding.
type agentFilter struct{ gossh.NewChannel }

func (a agentFilter) Accept() (gossh.Channel, <-chan *gossh.Request, error) {
	ch, reqs, err := a.NewChannel.Accept()
	if err != nil {
		return ch, reqs, err
	}
	out := make(chan *gossh.Request)
	go func() {
		defer close(out)
		for req := range reqs {
			if req.Type == "auth-agent-req@openssh.com" {
				if req.WantReply {
					_ = req.Reply(false, nil)
				}
				continue
			}
			out <- req
		}
	}()
	return ch, out, nil
}

// join registers a session, refusing it beyond the cap.
func (s *Server) join(ctx context.Context, a engine.Actor, key gossh.PublicKey, cockpit bool) (*member, error) {
	over, _ := ctx.Value(overCapKey{}).(bool)
	s.mu.Lock()
	if over || len(s.sessions) >= s.o.MaxSessions {
		s.mu.Unlock()
		return nil, fmt.Errorf("the server has reached its limit of %d sessions; try again later", s.o.MaxSessions)
	}
	s.nextID++
	m := &member{id: s.nextID, actor: a, key: key, since: time.Now(), cockpit: cockpit}
	m.lastIn.Store(time.Now().UnixNano())
	s.sessions[m.id] = m
	s.mu.Unlock()
	if cockpit {
		s.publish()
	}
	return m, nil
}

func (s *Server) leave(m *member) {
	s.mu.Lock()
	delete(s.sessions, m.id)
	s.mu.Unlock()
	if m.cockpit {
		s.publish()
	}
}

// stillAuthorised reports whether m's key is still in force with the
// identity the session started with.
func (s *Server) stillAuthorised(m *member) bool {
	id, ok := s.keys.keys(false).Lookup(m.key)
	return ok && id.Name == m.actor.Name && id.Role == m.actor.Role
}

// setActivity records what a session is doing that others should see
// (an open confirmation dialog); "" clears it.
func (s *Server) setActivity(m *member, what string) {
	s.mu.Lock()
	changed := m.activity != what
	m.activity = what
	s.mu.Unlock()
	if changed {
		s.publish()
	}
}

// Presence lists the connected cockpits, oldest first, with what each
// is doing ("alice: confirming rollback").
func (s *Server) Presence() []tui.Presence {
	s.mu.Lock()
	defer s.mu.Unlock()
	ms := make([]*member, 0, len(s.sessions))
	for _, m := range s.sessions {
		if m.cockpit {
			ms = append(ms, m)
		}
	}
	slices.SortFunc(ms, func(a, b *member) int { return cmp.Compare(a.id, b.id) })
	out := make([]tui.Presence, len(ms))
	for i, m := range ms {
		name := m.actor.Name
		if m.activity != "" {
			name += ": " + m.activity
		}
		out[i] = tui.Presence{Name: name, Role: m.actor.Role, Via: "ssh"}
	}
	return out
}

// Sessions is the number of sessions open now (cockpits and commands).
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// presenceSetter is a backend that shows who is connected.
type presenceSetter interface{ SetPresence([]tui.Presence) }

func (s *Server) publish() {
	if ps, ok := s.o.Backend.(presenceSetter); ok {
		ps.SetPresence(s.Presence())
	}
}
