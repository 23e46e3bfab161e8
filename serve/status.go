package serve

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"charm.land/ssh"

	"flightdeck/engine"
	"flightdeck/tui"
	"flightdeck/tui/describe"
	"flightdeck/tui/lines"
)

// Exit codes of session commands.
const (
	exitOK      = 0
	exitRefused = 1
	exitUsage   = 2
)

// commandKinds are the run commands a session may send as text.
var commandKinds = map[string]engine.CommandKind{
	"pause":   engine.CmdPause,
	"resume":  engine.CmdResume,
	"promote": engine.CmdPromote,
	"approve": engine.CmdApprove,
}

const commandHelp = `commands:
  status [--no-color]   the run state as text (NO_COLOR and TERM=dumb are honoured too)
  pause | resume        pause or resume the run
  promote               go to the next traffic step
  weight N              set the canary's traffic to N percent (0 < N <= 100)
  approve               approve a promotion waiting for a second operator
  whoami                the name, role and key fingerprint this server sees
`

// command runs a session's command and returns its exit code.
func (s *Server) command(sess ssh.Session, a engine.Actor, args []string) int {
	out, errw := sess, sess.Stderr()
	switch name := args[0]; name {
	case "status":
		noColor := false
		for _, f := range args[1:] {
			switch f {
			case "--no-color", "-no-color":
				noColor = true
			default:
				fmt.Fprintf(errw, "flightdeck: status: unknown flag %q\n%s", f, commandHelp)
				return exitUsage
			}
		}
		getenv := lookupEnv(sess.Environ())
		if pty, _, ok := sess.Pty(); ok && pty.Term == "dumb" {
			noColor = true
		}
		if getenv("NO_COLOR") != "" || getenv("TERM") == "dumb" {
			noColor = true
		}
		WriteStatus(out, s.o.Backend.Hub(), s.Presence(), s.o.App, s.o.Env, !noColor)
		return exitOK
	case "whoami":
		fmt.Fprintf(out, "%s (%s) %s\n", a.Name, a.Role, a.Fingerprint)
		return exitOK
	case "help", "--help", "-h":
		fmt.Fprint(out, commandHelp)
		return exitOK
	case "weight":
		if len(args) != 2 {
			fmt.Fprintf(errw, "flightdeck: weight takes one argument, the percent of traffic (e.g. weight 10)\n")
			return exitUsage
		}
		w, err := strconv.ParseFloat(strings.TrimSuffix(args[1], "%"), 64)
		if err != nil {
			fmt.Fprintf(errw, "flightdeck: weight %q: not a number of percent\n", args[1])
			return exitUsage
		}
		return s.send(sess, a, name, engine.Command{Kind: engine.CmdSetWeight, Actor: a, Weight: w})
	default:
		kind, ok := commandKinds[name]
		if !ok {
			fmt.Fprintf(errw, "flightdeck: unknown command %q\n%s", name, commandHelp)
			return exitUsage
		}
		if len(args) > 1 {
			fmt.Fprintf(errw, "flightdeck: %s takes no arguments\n", name)
			return exitUsage
		}
		return s.send(sess, a, name, engine.Command{Kind: kind, Actor: a})
	}
}

// send hands a session's command to the engine and reports its answer.
func (s *Server) send(sess ssh.Session, a engine.Actor, name string, c engine.Command) int {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	if err := s.o.Backend.Send(ctx, c); err != nil {
		fmt.Fprintf(sess.Stderr(), "flightdeck: %s refused: %v\n", name, err)
		return exitRefused
	}
	fmt.Fprintf(sess, "%s: done (as %s)\n", name, a.Name)
	return exitOK
}

// statusEvents is how many recent events the status shows.
const statusEvents = 12

// sgr wraps s in an SGR sequence when colour is on.
func sgr(on bool, code, s string) string {
	if !on {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

// WriteStatus prints the state of the hub's run as text: app, env,
// strategy, status, release from→to, weight or wave, hosts by phase, who
// is connected, and the last events. Without colour it writes no escape
// sequence at all.
func WriteStatus(w io.Writer, hub *engine.Hub, who []tui.Presence, app, env string, color bool) {
	st := hub.Snapshot()
	info := st.Info
	if info.App != "" {
		app = info.App
	}
	if info.Env != "" {
		env = info.Env
	}
	g := describe.NewGlyphs(!color)
	state, lv := g.RunState(st, time.Now())
	code := "1"
	switch lv {
	case describe.OK:
		code = "1;32"
	case describe.Info:
		code = "1;36"
	case describe.Warn:
		code = "1;33"
	case describe.Breach:
		code = "1;31"
	}
	line := fmt.Sprintf("%s/%s", orDash(app), orDash(env))
	if info.Strategy != "" {
		line += "  " + string(info.Strategy)
	}
	line += "  " + sgr(color, code, state)
	fmt.Fprintln(w, line)
	if st.Run != "" {
		fmt.Fprintf(w, "run %s (%s)  release %s → %s\n", st.Run, info.Kind, orDash(info.Previous), orDash(info.Release))
	}
	switch {
	case len(info.Steps) > 0:
		s := fmt.Sprintf("weight %g%%", st.Weight)
		if st.StepTarget > 0 && st.StepTarget != st.Weight {
			s += fmt.Sprintf(" → %g%%", st.StepTarget)
		}
		fmt.Fprintf(w, "%s (step %d/%d)\n", s, st.Step, len(info.Steps))
	case len(info.Waves) > 0:
		fmt.Fprintf(w, "wave %d/%d\n", st.Wave, len(info.Waves))
	}
	if st.Status == engine.StatusRollingBack || st.RollbackBy != "" {
		fmt.Fprintln(w, sgr(color, "31", describe.Clean(fmt.Sprintf("rollback by %s to %s", orDash(st.RollbackBy), orDash(st.RevertTo)))))
	}
	if p := st.Proposal; p != nil {
		fmt.Fprintf(w, "promotion to step %d proposed by %s waits for a second operator's approval (ssh ... -- approve)\n", p.Step, p.By)
	}
	if len(st.Hosts) > 0 {
		byPhase := map[engine.Phase][]string{}
		var order []engine.Phase
		for _, h := range st.Hosts {
			if _, seen := byPhase[h.Phase]; !seen {
				order = append(order, h.Phase)
			}
			byPhase[h.Phase] = append(byPhase[h.Phase], describe.Clean(h.Name+"@"+orDash(h.Current)))
		}
		fmt.Fprintf(w, "hosts (%d):\n", len(st.Hosts))
		for _, ph := range order {
			names := byPhase[ph]
			glyph, plv := g.Phase(ph)
			label := fmt.Sprintf("%s %-10s", glyph, ph)
			if plv == describe.Breach {
				label = sgr(color, "31", label)
			}
			fmt.Fprintf(w, "  %s %d: %s\n", label, len(names), strings.Join(names, " "))
		}
	}
	if len(who) > 0 {
		names := make([]string, len(who))
		for i, p := range who {
			names[i] = p.Name + "(" + string(p.Role) + ")"
		}
		fmt.Fprintf(w, "connected: %s\n", strings.Join(names, " "))
	}
	evs := recentEvents(hub, statusEvents)
	if len(evs) > 0 {
		fmt.Fprintln(w, "last events:")
		for _, e := range evs {
			fmt.Fprintln(w, "  "+lines.Format(e))
		}
	}
}

// recentEvents returns up to n of the hub's recent events worth reading
// (no metric samples, no progress within a phase).
func recentEvents(hub *engine.Hub, n int) []engine.Event {
	sub := hub.Subscribe(engine.TailSize)
	evs, _ := sub.Drain()
	sub.Close()
	var keep []engine.Event
	phase := map[string]engine.Phase{}
	for _, e := range evs {
		switch e.Type {
		case engine.EvMetricSample:
			continue
		case engine.EvHostPhase:
			if phase[e.Host] == e.Phase && e.Error == "" {
				continue
			}
			phase[e.Host] = e.Phase
		}
		if lines.Format(e) == "" {
			continue
		}
		keep = append(keep, e)
	}
	if len(keep) > n {
		keep = keep[len(keep)-n:]
	}
	return slices.Clip(keep)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
