package tui

import (
	"context"
	"fmt"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"

	"flightdeck/engine"
)

// sendTimeout bounds how long a command may wait for the run loop.
const sendTimeout = 10 * time.Second

// avail says whether an action is offered now, and if not, why.
type avail struct {
	hidden bool   // not offered at all (read-only)
	ok     bool   // can be used now
	label  string // short label for the key bar ("pause" / "resume")
	why    string // why it cannot be used now
}

func (m *Model) avail(a Action) avail {
	info := infoOf(a)
	if info.mutates && m.opts.ReadOnly {
		return avail{hidden: true, why: "read-only"}
	}
	v := avail{ok: true, label: shortLabel(a)}
	no := func(why string) avail { v.ok, v.why = false, why; return v }
	st := m.snap
	strategy := st.Info.Strategy
	stepped := strategy == "canary" || strategy == "bluegreen" || strategy == "ab"
	if info.mutates && m.opts.Actor.Role == engine.RoleViewer {
		return no("viewer")
	}
	switch a {
	case ActPause:
		switch {
		case st.Status == engine.StatusPaused:
			v.label = "resume"
		case st.Status == engine.StatusRunning:
		case st.Status == engine.StatusRollingBack:
			return no("rolling back")
		default:
			return no("no run")
		}
	case ActStepUp, ActStepDown, ActPromote, ActPromoteAll:
		switch {
		case !m.active():
			return no("no run")
		case st.Status == engine.StatusRollingBack:
			return no("rolling back")
		case strategy == "canary":
		case a == ActPromote || a == ActPromoteAll:
			if !stepped {
				return no("no steps in " + strategy)
			}
		default:
			return no("not a canary")
		}
	case ActRollback:
		switch {
		case m.busy != "":
			return no(m.busy)
		case st.Status == engine.StatusRollingBack:
			return no("already rolling back")
		case !m.active() && st.Status == engine.StatusIdle && len(st.Hosts) == 0:
			// No run seen yet: the backend knows the last deploy from the journal.
		}
	case ActAbort:
		switch {
		case !m.active():
			return no("no run")
		case st.Status == engine.StatusRollingBack:
			return no("rolling back")
		}
	case ActApprove:
		switch p := st.Proposal; {
		case !m.active() || p == nil:
			return no("no proposal")
		case p.By == m.opts.Actor.Name && p.Fingerprint == m.opts.Actor.Fingerprint:
			return no("yours: a second operator approves")
		}
	case ActAck:
		it := m.selectedItem()
		switch {
		case !m.active():
			return no("no run")
		case it == nil:
			return no("no checklist item")
		case it.State == "verified" || it.State == "acknowledged" || it.State == "n/a":
			return no("item " + string(it.State))
		}
	case ActDeploy, ActDeployBad:
		switch {
		case m.busy != "":
			return no(m.busy)
		case m.active():
			return no("run in progress")
		}
	case ActDetails:
		if m.hostAt(m.cursor) == nil {
			return no("no host")
		}
	}
	return v
}

func shortLabel(a Action) string {
	switch a {
	case ActStepUp, ActStepDown:
		return "step"
	case ActPromoteAll:
		return "promote all"
	case ActDeployBad:
		return "bad deploy"
	case ActNextPane:
		return "pane"
	}
	return strings.ReplaceAll(string(a), "_", " ")
}

func (m *Model) selectedItem() *engine.ChecklistItem {
	cl := m.snap.Checklist
	if len(cl) == 0 {
		return nil
	}
	return &cl[clampInt(m.checkCursor, 0, len(cl)-1)]
}

// key handles a key press.
func (m *Model) key(k tea.KeyPressMsg) tea.Cmd {
	s := k.String()
	if s == "ctrl+c" {
		return m.quit()
	}
	if m.filterOn {
		m.filterKey(k)
		return nil
	}
	switch m.overlay {
	case overlayConfirm:
		switch {
		case m.keys.is(ActConfirm, s):
			c := m.confirm
			m.overlay, m.confirm = overlayNone, nil
			return c.run()
		case m.keys.is(ActCancel, s) || m.keys.is(ActQuit, s):
			m.overlay, m.confirm = overlayNone, nil
			m.setStatus("cancelled", false)
		}
		return nil
	case overlayHelp, overlayDetails:
		// Scrolling text: the key that opened it, cancel or quit closes it.
		opener := ActHelp
		if m.overlay == overlayDetails {
			opener = ActDetails
		}
		switch {
		case m.keys.is(opener, s) || m.keys.is(ActCancel, s) || m.keys.is(ActQuit, s):
			m.overlay = overlayNone
		case m.keys.is(ActDown, s):
			m.overlayScroll++
		case m.keys.is(ActUp, s):
			m.overlayScroll = max(m.overlayScroll-1, 0)
		}
		return nil
	}
	if m.keys.is(ActCancel, s) && m.filter != "" {
		m.setFilter("")
		return nil
	}
	a, ok := m.keys.matchAction(s)
	if !ok {
		return nil
	}
	return m.do(a)
}

// do performs an action the operator asked for.
func (m *Model) do(a Action) tea.Cmd {
	v := m.avail(a)
	if v.hidden {
		return nil
	}
	if !v.ok {
		m.setStatus(fmt.Sprintf("%s: %s", v.label, v.why), true)
		return nil
	}
	switch a {
	case ActUp:
		m.move(-1)
	case ActDown:
		m.move(1)
	case ActPageUp:
		m.move(-max(m.fleetRows-1, 1))
	case ActPageDown:
		m.move(max(m.fleetRows-1, 1))
	case ActNextPane:
		m.focus = (m.focus + 1) % paneCount
	case ActHelp:
		m.overlay = overlayHelp
		m.overlayScroll = 0
	case ActFilter:
		m.focus = paneFleet
		m.filterOn = true
	case ActDetails:
		m.details = m.hostAt(m.cursor).Name
		m.overlayScroll = 0
		m.overlay = overlayDetails
	case ActQuit:
		if !m.active() {
			return m.quit()
		}
		note := "The run continues without the cockpit; reattach to follow it."
		if m.opts.QuitStopsRun {
			note = "Quitting interrupts the run: work in flight finishes, nothing new starts; `flightdeck resume` finishes it."
		}
		m.ask(confirmDialog{title: "Quit the cockpit?", lines: []string{
			fmt.Sprintf("Run %s is %s.", m.snap.Run, strings.ReplaceAll(string(m.snap.Status), "_", " ")),
			note,
		}, yes: "quit", run: m.quit})
	case ActPause:
		if m.snap.Status == engine.StatusPaused {
			return m.send(engine.Command{Kind: engine.CmdResume}, "resume")
		}
		return m.send(engine.Command{Kind: engine.CmdPause}, "pause")
	case ActStepUp:
		return m.send(engine.Command{Kind: engine.CmdStepUp}, "step up")
	case ActStepDown:
		return m.send(engine.Command{Kind: engine.CmdStepDown}, "step down")
	case ActPromote:
		return m.send(engine.Command{Kind: engine.CmdPromote}, "promote")
	case ActPromoteAll:
		m.ask(confirmDialog{title: "Promote all the way?", lines: []string{
			fmt.Sprintf("%s goes to 100%% of the traffic now, skipping the remaining steps and their gates.", m.snap.Info.Release),
		}, yes: "promote all", danger: true, run: func() tea.Cmd {
			return m.send(engine.Command{Kind: engine.CmdPromoteAll}, "promote all")
		}})
	case ActApprove:
		return m.send(engine.Command{Kind: engine.CmdApprove}, "approve")
	case ActAck:
		it := m.selectedItem()
		return m.send(engine.Command{Kind: engine.CmdAck, Item: it.ID}, "ack "+it.Title)
	case ActRollback:
		m.askRollback()
	case ActAbort:
		m.ask(confirmDialog{title: "Abort the run?", lines: []string{
			"The run stops and the hosts it switched go back to " + orNone(m.snap.Info.Previous, "their previous release") + ".",
			m.affected(),
		}, yes: "abort", danger: true, run: func() tea.Cmd {
			return m.send(engine.Command{Kind: engine.CmdAbort}, "abort")
		}})
	case ActDeploy:
		return m.between("deploy", func(ctx context.Context) error { return m.backend.Deploy(ctx, m.opts.Actor, false) })
	case ActDeployBad:
		m.ask(confirmDialog{title: "Deploy a bad release?", lines: []string{
			"A deliberately broken release goes out, to show the gates and the rollback.",
		}, yes: "deploy", danger: true, run: func() tea.Cmd {
			return m.between("bad deploy", func(ctx context.Context) error { return m.backend.Deploy(ctx, m.opts.Actor, true) })
		}})
	}
	return nil
}

func (m *Model) ask(c confirmDialog) {
	m.confirm = &c
	m.overlay = overlayConfirm
}

func (m *Model) move(d int) {
	switch m.focus {
	case paneFleet:
		n := m.fleetLen()
		m.cursor = clampInt(m.cursor+d, 0, max(n-1, 0))
		if h := m.hostAt(m.cursor); h != nil {
			m.selectedHost = h.Name
		}
	case paneChecklist:
		m.checkCursor = clampInt(m.checkCursor+d, 0, max(len(m.snap.Checklist)-1, 0))
	case paneEvents:
		m.eventScroll = clampInt(m.eventScroll-d, 0, max(len(m.eventLog)-1, 0))
	}
}

// send runs an engine command in a tea.Cmd.
func (m *Model) send(c engine.Command, what string) tea.Cmd {
	c.Actor = m.opts.Actor
	b, parent := m.backend, m.opts.Context
	m.setStatus(what+" sent", false)
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(parent, sendTimeout)
		defer cancel()
		return resultMsg{what: what, err: b.Send(ctx, c)}
	}
}

// between runs a deploy or rollback that starts a new run.
func (m *Model) between(what string, fn func(ctx context.Context) error) tea.Cmd {
	m.busy = what + " starting"
	m.setStatus(what+" started", false)
	ctx := m.opts.Context
	return func() tea.Msg {
		return resultMsg{what: what, err: fn(ctx), between: true}
	}
}

// rollbackTarget is the release a rollback goes to, as far as the cockpit
// knows ("" = the backend decides from the journal).
func (m *Model) rollbackTarget() string {
	st := m.snap
	if m.active() {
		return st.Info.Previous
	}
	if st.Status == engine.StatusFinished && st.Info.Kind == engine.KindDeploy && st.Outcome == engine.OutcomeSucceeded {
		return st.Info.Previous
	}
	return ""
}

func (m *Model) askRollback() {
	st := m.snap
	target := m.rollbackTarget()
	app := orNone(st.Info.App, m.opts.App) + "/" + orNone(st.Info.Env, m.opts.Env)
	if m.active() {
		m.ask(confirmDialog{title: "Roll back " + app + "?", lines: []string{
			"Target: " + orNone(target, "each host's previous release") + " (the release live before this run).",
			m.affected(),
			"The rollback skips analysis and steps.",
		}, yes: "roll back", danger: true, run: func() tea.Cmd {
			return m.send(engine.Command{Kind: engine.CmdRollback}, "rollback")
		}})
		return
	}
	lines := []string{"Target: " + orNone(target, "the release live before the last successful deploy (from the journal)") + "."}
	if target != "" {
		var names []string
		for _, h := range st.Hosts {
			if h.Current != target {
				names = append(names, h.Name)
			}
		}
		lines = append(lines, fmt.Sprintf("Hosts affected: %d of %d%s", len(names), len(st.Hosts), nameList(names)))
	} else {
		lines = append(lines, "Hosts affected: every host of the environment.")
	}
	m.ask(confirmDialog{title: "Roll back " + app + "?", lines: lines, yes: "roll back", danger: true,
		run: func() tea.Cmd {
			return m.between("rollback", func(ctx context.Context) error { return m.backend.Rollback(ctx, m.opts.Actor, target) })
		}})
}

// affected describes the hosts a rollback of the active run would touch.
func (m *Model) affected() string {
	var names []string
	for _, h := range m.snap.Hosts {
		if h.Touched && !h.Reverted {
			names = append(names, h.Name)
		}
	}
	if len(names) == 0 {
		return fmt.Sprintf("Hosts affected: none switched yet (%d hosts stay on their release).", len(m.snap.Hosts))
	}
	return fmt.Sprintf("Hosts affected: %d of %d%s", len(names), len(m.snap.Hosts), nameList(names))
}

func nameList(names []string) string {
	if len(names) == 0 {
		return ""
	}
	const show = 6
	if len(names) > show {
		return fmt.Sprintf(": %s, ... (+%d)", strings.Join(names[:show], ", "), len(names)-show)
	}
	return ": " + strings.Join(names, ", ")
}

func orNone(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// filterKey edits the fleet filter while it is being typed.
func (m *Model) filterKey(k tea.KeyPressMsg) {
	switch s := k.String(); s {
	case "esc":
		m.filterOn = false
		m.setFilter("")
	case "enter":
		m.filterOn = false
	case "backspace", "ctrl+h":
		if r := []rune(m.filter); len(r) > 0 {
			m.setFilter(string(r[:len(r)-1]))
		}
	case "ctrl+u":
		m.setFilter("")
	default:
		if k.Text != "" && len(m.filter) < 64 {
			m.setFilter(m.filter + k.Text)
		}
	}
}

func (m *Model) setFilter(f string) {
	m.filter = f
	m.cursor, m.offset = 0, 0
	m.selectedHost = ""
	m.refilter()
}
