package serve

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	tea "charm.land/bubbletea/v2"
	"charm.land/ssh"
	"github.com/charmbracelet/colorprofile"

	"flightdeck/engine"
	"flightdeck/themes"
	"flightdeck/tui"
)

// cockpit runs one session's cockpit until the operator quits, the
// connection ends, the session idles out or its output stalls. It returns
// why it ended.
func (s *Server) cockpit(sess ssh.Session, me *member, log *slog.Logger) string {
	pty, winCh, _ := sess.Pty()
	env := append(sess.Environ(), "TERM="+pty.Term)
	getenv := lookupEnv(env)
	theme, err := tui.PickTheme(s.o.UI, false, getenv)
	if err != nil {
		log.Warn("theme", "err", err)
		theme = themes.Default()
	}
	km := s.o.UI.Keys
	if len(km.Quit.Keys()) == 0 && len(km.Pause.Keys()) == 0 {
		km = tui.DefaultKeyMap()
	}
	opts := tui.Options{
		Actor: me.actor, Theme: theme, ReadOnly: me.actor.Role == engine.RoleViewer,
		KeyMap: &km, App: s.o.App, Env: s.o.Env, SLO: s.o.SLO, Scenario: s.o.Scenario, NoHealthCheck: s.o.NoHealthCheck,
		// Backend calls outlive the session: a rollback or a deploy
		// started here goes on when this client disconnects.
		Context: s.ctx,
	}
	if s.o.UI.ASCII != nil {
		opts.ASCII = *s.o.UI.ASCII
	}
	m := tui.New(s.o.Backend, opts)
	defer m.Close()

	ctx, cancel := context.WithCancel(sess.Context())
	defer cancel()
	var why atomic.Value
	why.Store("quit")
	var closeOnce sync.Once
	kick := func(reason string) {
		closeOnce.Do(func() {
			why.Store(reason)
			cancel()
		})
	}
	out := &stallWriter{w: sess}
	sm := &sessionModel{m: m, srv: s, me: me}
	profile := colorprofile.Env(env)
	p := tui.NewProgram(sm, sess, out, tui.ProgramOptions{
		Width: pty.Window.Width, Height: pty.Window.Height, Profile: profile, Env: env, Context: ctx,
	},
		// A client cannot suspend the server's program.
		tea.WithFilter(func(_ tea.Model, msg tea.Msg) tea.Msg {
			if _, ok := msg.(tea.SuspendMsg); ok {
				return tea.ResumeMsg{}
			}
			return msg
		}),
	)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case w, ok := <-winCh:
				if !ok {
					return
				}
				me.touch()
				p.Send(tea.WindowSizeMsg{Width: w.Width, Height: w.Height})
			}
		}
	}()
	go func() {
		defer wg.Done()
		s.watch(ctx, sess, me, out, kick)
	}()
	_, err = p.Run()
	cancel()
	wg.Wait()
	reason, _ := why.Load().(string)
	switch reason {
	case "idle":
		fmtIdle := "\r\nflightdeck: closed after " + s.o.IdleTimeout.String() + " without input\r\n"
		_, _ = sess.Stderr().Write([]byte(fmtIdle))
	case reasonRevoked:
		_, _ = io.WriteString(sess.Stderr(), "\r\nflightdeck: closed: this key is no longer authorised, or its name or role changed; reconnect\r\n")
	}
	if err != nil && reason == "quit" {
		reason = "ended: " + err.Error()
	}
	return reason
}

// reasonRevoked ends a cockpit whose key was revoked or whose identity
// changed in the authorised keys.
const reasonRevoked = "key revoked"

// watch closes the session when it has had no input for IdleTimeout, when
// its key is no longer authorised as it was, or when its output has been
// blocked for WriteTimeout (a stalled client:
// closing the channel unblocks the write, so the session's goroutines end).
func (s *Server) watch(ctx context.Context, sess ssh.Session, me *member, out *stallWriter, kick func(string)) {
	every := min(time.Second, s.o.IdleTimeout/4, s.o.WriteTimeout/4)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if idle := now.Sub(time.Unix(0, me.lastIn.Load())); idle >= s.o.IdleTimeout {
				kick("idle")
				return
			}
			if !s.stillAuthorised(me) {
				kick(reasonRevoked)
				return
			}
			if out.stalled(now) >= s.o.WriteTimeout {
				kick("output stalled")
				_ = sess.Close()
				return
			}
		}
	}
}

func (m *member) touch() { m.lastIn.Store(time.Now().UnixNano()) }

// stallWriter records since when a write has been blocked.
type stallWriter struct {
	w     interface{ Write([]byte) (int, error) }
	since atomic.Int64 // start of the write in progress (0: none)
}

func (w *stallWriter) Write(p []byte) (int, error) {
	w.since.Store(time.Now().UnixNano())
	n, err := w.w.Write(p)
	w.since.Store(0)
	return n, err
}

func (w *stallWriter) stalled(now time.Time) time.Duration {
	if t := w.since.Load(); t != 0 {
		return now.Sub(time.Unix(0, t))
	}
	return 0
}

// sessionModel wraps a session's cockpit: it notes input (idle timeout),
// tells the other sessions when this one has a confirmation dialog open,
// and hands a viewer's attempted commands to the engine, which refuses
// them and journals the attempt.
type sessionModel struct {
	m   *tui.Model
	srv *Server
	me  *member
}

func (w *sessionModel) Init() tea.Cmd { return w.m.Init() }

func (w *sessionModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	k, isKey := msg.(tea.KeyPressMsg)
	var audit tea.Cmd
	if isKey {
		w.me.touch()
		if w.me.actor.Role == engine.RoleViewer {
			audit = w.viewerAttempt(k.String())
		}
	}
	_, cmd := w.m.Update(msg)
	if isKey {
		w.srv.setActivity(w.me, w.m.Confirming())
	}
	if audit != nil {
		return w, tea.Batch(cmd, audit)
	}
	return w, cmd
}

func (w *sessionModel) View() tea.View { return w.m.View() }

// viewerAttempt turns a viewer's key for a run command (the cockpit's
// bindings table says which) into that command, sent to the engine as
// the viewer: the engine refuses it (viewers act on nothing) and
// journals the attempt, which every cockpit's event pane shows. Between
// runs there is no journal: the refusal is only logged.
func (w *sessionModel) viewerAttempt(key string) tea.Cmd {
	c, ok := w.m.RunCommand(key)
	if !ok {
		return nil
	}
	c.Actor = w.me.actor
	hub, b, actor, ctx, log := w.srv.o.Backend.Hub(), w.srv.o.Backend, w.me.actor, w.srv.ctx, w.srv.o.Log
	return func() tea.Msg {
		var err error
		if hub.Snapshot().Active() {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = b.Send(cctx, c)
			cancel()
		} else {
			err = engine.Authorize(actor, c.Kind)
		}
		if err != nil {
			log.Info("refused", "name", actor.Name, "fingerprint", actor.Fingerprint, "command", string(c.Kind), "err", err)
		}
		return nil
	}
}

// lookupEnv is getenv over a session's environment (the last value wins).
func lookupEnv(env []string) func(string) string {
	return func(k string) string {
		v := ""
		for _, kv := range env {
			if name, val, ok := strings.Cut(kv, "="); ok && name == k {
				v = val
			}
		}
		return v
	}
}
