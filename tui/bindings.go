package tui

import (
	"context"
	"errors"
	"fmt"
	"strings"

	tea "charm.land/bubbletea/v2"

	"flightdeck/engine"
)

// binding is one row of the cockpit's table of actions (the k9s / lazygit
// shape): what the action is called, what it sends, whether it asks first,
// and why it is unavailable now. An action that sends an engine command
// is available exactly when engine.Check accepts that command in the
// state the cockpit shows: the cockpit and the run ask one rule. The keys
// live in the KeyMap (the config file rebinds them by action name).
type binding struct {
	act       Action
	desc      string // the help's line
	bar       bool   // shown in the key bar
	mutates   bool   // changes something: hidden in read-only mode
	dangerous bool   // destructive: marked in the help and the key bar
	traffic   bool   // moves traffic steps: left out of the key bar of a run without steps
	// label is the key bar's word for the action now ("" = the action's name).
	label func(m *Model) string
	// offered says whether this cockpit offers the action at all (a
	// capability of the backend); nil = always.
	offered func(m *Model) bool
	// command is the engine command the action sends or starts, asked of
	// engine.Check; nil for what the engine has no say in (moving around).
	command func(m *Model) engine.Command
	// local is the cockpit's own reason the action cannot be used now ("" = none).
	local func(m *Model) string
	// confirm is the dialog asked before run; nil runs at once. A dialog
	// without its own run does run.
	confirm func(m *Model) confirmDialog
	run     func(m *Model) tea.Cmd
}

// bindings lists every action, in the order the key bar and the help
// show them.
var bindings = []binding{
	{act: ActPause, desc: "pause / resume the run", bar: true, mutates: true,
		label: func(m *Model) string {
			if m.snap.Status == engine.StatusPaused {
				return "resume"
			}
			return "pause"
		},
		command: func(m *Model) engine.Command {
			if m.snap.Status == engine.StatusPaused {
				return engine.Command{Kind: engine.CmdResume}
			}
			return engine.Command{Kind: engine.CmdPause}
		}},
	{act: ActRollback, desc: "roll back (asks to confirm)", bar: true, mutates: true, dangerous: true,
		label:   func(m *Model) string { return "roll back" + orNone(prefixed(" to ", m.rollbackTarget()), "") },
		command: func(m *Model) engine.Command { return engine.Command{Kind: engine.CmdRollback} },
		local: func(m *Model) string {
			if m.busy != "" {
				return m.busy
			}
			if !m.active() && m.noRollbackTarget() {
				return "no earlier release in the journal (h: pick one)"
			}
			return ""
		},
		confirm: func(m *Model) confirmDialog { return m.rollbackDialog(m.rollbackTarget()) }},
	{act: ActAbort, desc: "abort the run (asks to confirm)", bar: true, mutates: true, dangerous: true,
		command: func(m *Model) engine.Command { return engine.Command{Kind: engine.CmdAbort} },
		confirm: func(m *Model) confirmDialog {
			return confirmDialog{doing: "abort", title: "Abort the run?", lines: []string{
				"The run stops and the hosts it switched go back to " + orNone(m.snap.Info.Previous, "their previous release") + ".",
				m.affected(),
			}, yes: "abort", danger: true}
		}},
	{act: ActStepUp, desc: "step the traffic up (canary)", bar: true, mutates: true, traffic: true,
		label:   func(*Model) string { return "step" },
		command: func(*Model) engine.Command { return engine.Command{Kind: engine.CmdStepUp} }},
	{act: ActStepDown, desc: "step the traffic down (canary)", bar: true, mutates: true, traffic: true,
		label:   func(*Model) string { return "step" },
		command: func(*Model) engine.Command { return engine.Command{Kind: engine.CmdStepDown} }},
	{act: ActPromote, desc: "promote to the next step", bar: true, mutates: true, traffic: true,
		command: func(*Model) engine.Command { return engine.Command{Kind: engine.CmdPromote} }},
	{act: ActPromoteAll, desc: "promote all the way (asks to confirm)", mutates: true, dangerous: true, traffic: true,
		label:   func(*Model) string { return "promote all" },
		command: func(*Model) engine.Command { return engine.Command{Kind: engine.CmdPromoteAll} },
		confirm: func(m *Model) confirmDialog {
			return confirmDialog{doing: "promote all", title: "Promote all the way?", lines: []string{
				fmt.Sprintf("%s goes to 100%% of the traffic now, skipping the remaining steps and their gates.", m.snap.Info.Release),
			}, yes: "promote all", danger: true}
		}},
	{act: ActSetWeight, desc: "set the canary's weight by number (w 30 enter)", mutates: true, traffic: true,
		label: func(*Model) string { return "weight" },
		// Available when the engine would take some weight now: asked
		// with one it would accept when setting is possible at all.
		command: func(m *Model) engine.Command {
			w := 50.0
			if m.snap.StepTarget == w {
				w = 51
			}
			return engine.Command{Kind: engine.CmdSetWeight, Weight: w}
		},
		run: func(m *Model) tea.Cmd {
			m.weightOn, m.weightText = true, ""
			return nil
		}},
	{act: ActApprove, desc: "approve a promotion another operator proposed", mutates: true,
		command: func(*Model) engine.Command { return engine.Command{Kind: engine.CmdApprove} }},
	{act: ActAck, desc: "acknowledge the selected checklist item", bar: true, mutates: true,
		command: func(m *Model) engine.Command {
			c := engine.Command{Kind: engine.CmdAck}
			if it := m.selectedItem(); it != nil {
				c.Item = it.ID
			}
			return c
		},
		local: func(m *Model) string {
			if m.active() && m.selectedItem() == nil {
				return "no checklist item"
			}
			return ""
		},
		run: func(m *Model) tea.Cmd {
			it := m.selectedItem()
			return m.send(engine.Command{Kind: engine.CmdAck, Item: it.ID}, "ack "+it.Title)
		}},
	{act: ActDeploy, desc: "start a new deploy (between runs; asks to confirm)", bar: true, mutates: true, dangerous: true,
		command: func(*Model) engine.Command { return engine.Command{Kind: engine.CmdDeploy} },
		local:   func(m *Model) string { return m.busy },
		confirm: func(m *Model) confirmDialog {
			return confirmDialog{doing: "deploy", title: "Deploy a new release of " + m.appEnv() + "?", lines: []string{
				"A new release is built and deployed to every host with the plan's strategy" + prefixed(" (", m.snap.Info.Strategy, ")") + ".",
				"Live now: " + orNone(m.liveRelease(), "unknown (no run seen)") + ".",
			}, yes: "deploy", danger: true}
		},
		run: func(m *Model) tea.Cmd {
			return m.between("deploy", func(ctx context.Context) error { return m.backend.Deploy(ctx, m.opts.Actor) })
		}},
	{act: ActDeployBad, desc: "deploy a release with the scenario's fault (demo; asks to confirm)", bar: true, mutates: true, dangerous: true,
		label: func(*Model) string { return "bad deploy" },
		offered: func(m *Model) bool {
			_, ok := m.backend.(FaultDeployer)
			return ok
		},
		command: func(*Model) engine.Command { return engine.Command{Kind: engine.CmdDeploy} },
		local: func(m *Model) string {
			if m.busy != "" {
				return m.busy
			}
			if m.backend.(FaultDeployer).Fault() == "" {
				return "no fault configured"
			}
			return ""
		},
		confirm: func(m *Model) confirmDialog {
			return confirmDialog{doing: "bad deploy", title: "Deploy a bad release?", lines: []string{
				"A release with this fault goes out, to show the gates and the rollback:",
				m.backend.(FaultDeployer).Fault(),
			}, yes: "deploy", danger: true}
		},
		run: func(m *Model) tea.Cmd {
			fd := m.backend.(FaultDeployer)
			return m.between("bad deploy", func(ctx context.Context) error { return fd.DeployFault(ctx, m.opts.Actor) })
		}},
	{act: ActHistory, desc: "release history: who, when, outcome; roll back to a chosen release", bar: true,
		offered: func(m *Model) bool {
			_, ok := m.backend.(Historian)
			return ok
		},
		run: func(m *Model) tea.Cmd {
			m.overlay = overlayHistory
			m.historyCursor = 0
			return m.loadHistory()
		}},
	{act: ActFilter, desc: "filter hosts by name or phase (/failed)", bar: true,
		run: func(m *Model) tea.Cmd {
			m.focus = paneFleet
			m.filterOn = true
			return nil
		}},
	{act: ActDetails, desc: "host details (follows its output)", bar: true,
		local: func(m *Model) string {
			if m.hostAt(m.cursor) == nil {
				return "no host"
			}
			return ""
		},
		run: func(m *Model) tea.Cmd {
			m.details = m.hostAt(m.cursor).Name
			m.overlayScroll = 0
			m.overlay = overlayDetails
			return nil
		}},
	{act: ActNextPane, desc: "next pane", bar: true,
		label: func(*Model) string { return "pane" },
		run: func(m *Model) tea.Cmd {
			m.focus = (m.focus + 1) % paneCount
			return nil
		}},
	{act: ActUp, desc: "move up", run: func(m *Model) tea.Cmd { m.move(-1); return nil }},
	{act: ActDown, desc: "move down", run: func(m *Model) tea.Cmd { m.move(1); return nil }},
	{act: ActPageUp, desc: "page up", run: func(m *Model) tea.Cmd { m.move(-max(m.fleetRows-1, 1)); return nil }},
	{act: ActPageDown, desc: "page down", run: func(m *Model) tea.Cmd { m.move(max(m.fleetRows-1, 1)); return nil }},
	{act: ActHelp, desc: "help: keys, legend, scenario", bar: true,
		run: func(m *Model) tea.Cmd {
			m.overlay = overlayHelp
			m.overlayScroll = 0
			return nil
		}},
	{act: ActQuit, desc: "quit", bar: true, run: (*Model).askQuit},
	{act: ActConfirm, desc: "confirm (in a dialog)"},
	{act: ActCancel, desc: "close / cancel / clear filter"},
}

// bindingOf returns an action's row (a zero row for an unknown action).
func bindingOf(a Action) *binding {
	for i := range bindings {
		if bindings[i].act == a {
			return &bindings[i]
		}
	}
	return &binding{act: a}
}

// RunCommand is the command a key sends to the run, in the state this
// cockpit shows, from the bindings table (whether or not this session
// may send it: serve hands a viewer's attempts to the engine, which
// refuses and journals them). ok is false for a key that sends no command
// to a run by itself (deploys start runs, a weight is typed after w,
// moving around sends nothing).
func (m *Model) RunCommand(key string) (c engine.Command, ok bool) {
	for i := range bindings {
		b := &bindings[i]
		if b.command == nil || !m.keys.is(b.act, key) {
			continue
		}
		c = b.command(m)
		if c.Kind == engine.CmdDeploy || c.Kind == engine.CmdSetWeight {
			// Deploys start runs; a weight is typed after the key.
			return engine.Command{}, false
		}
		c.Actor = m.opts.Actor
		return c, true
	}
	return engine.Command{}, false
}

// avail says whether an action is offered now, and if not, why.
type avail struct {
	hidden bool   // not offered at all (read-only, or not a capability of this backend)
	ok     bool   // can be used now
	label  string // short label for the key bar ("pause" / "resume")
	why    string // why it cannot be used now, short (the key bar)
	detail string // why, in full (the status line and the help): the engine's own words
	err    error  // the engine's refusal, when it refused
}

// avail answers for action a in the state the cockpit shows.
func (m *Model) avail(a Action) avail {
	b := bindingOf(a)
	if b.mutates && m.opts.ReadOnly {
		return avail{hidden: true, why: "read-only", detail: "read-only"}
	}
	if b.offered != nil && !b.offered(m) {
		return avail{hidden: true, why: "not offered", detail: "not offered by this cockpit"}
	}
	v := avail{ok: true, label: strings.ReplaceAll(string(a), "_", " ")}
	if b.label != nil {
		v.label = b.label(m)
	}
	if b.command != nil {
		c := b.command(m)
		c.Actor = m.opts.Actor
		if err := engine.Check(m.snap, c); err != nil {
			v.ok, v.err = false, err
			v.why, v.detail = shortReason(c, err), fullReason(c, err)
			return v
		}
	}
	if b.local != nil {
		if why := b.local(m); why != "" {
			v.ok, v.why, v.detail = false, why, why
		}
	}
	return v
}

// fullReason is the engine's refusal without its "cannot <command>: "
// lead (the label says which command).
func fullReason(c engine.Command, err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "cannot "+string(c.Kind)+": ")
	return strings.ReplaceAll(s, "rolling_back", "rolling back")
}

// shortReason fits the engine's refusal in the key bar.
func shortReason(c engine.Command, err error) string {
	switch {
	case errors.Is(err, engine.ErrNotAllowed):
		if c.Kind == engine.CmdDeploy {
			return "needs role owner"
		}
		return string(c.Actor.Role)
	case errors.Is(err, engine.ErrNoRun):
		return "no run"
	case errors.Is(err, engine.ErrRunActive):
		return "run in progress"
	case errors.Is(err, engine.ErrRunFinishing):
		return "run finishing"
	}
	s := fullReason(c, err)
	s = strings.TrimPrefix(s, string(c.Kind)+" ")
	for _, stop := range []string{"; ", " ("} {
		if i := strings.Index(s, stop); i > 0 {
			s = s[:i]
		}
	}
	return s
}

// do performs an action the operator asked for: the binding's handler,
// after its confirmation when it has one.
func (m *Model) do(a Action) tea.Cmd {
	b := bindingOf(a)
	v := m.avail(a)
	if v.hidden {
		return nil
	}
	if !v.ok {
		m.setStatus(v.label+": "+v.detail, true)
		return nil
	}
	run := func() tea.Cmd { return m.runBinding(b) }
	if b.confirm != nil {
		d := b.confirm(m)
		if d.run == nil {
			d.run = run
		}
		m.ask(d)
		return nil
	}
	return run()
}

// runBinding runs an action's handler; an action without one sends its
// engine command.
func (m *Model) runBinding(b *binding) tea.Cmd {
	if b.run != nil {
		return b.run(m)
	}
	if b.command == nil {
		return nil
	}
	c := b.command(m)
	return m.send(c, strings.ReplaceAll(string(c.Kind), "-", " "))
}

func prefixed(pre, s string, post ...string) string {
	if s == "" {
		return ""
	}
	return pre + s + strings.Join(post, "")
}
