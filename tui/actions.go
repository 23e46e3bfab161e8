package tui

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"

	"flightdeck/engine"
)

// sendTimeout bounds how long a command may wait for the run loop.
const sendTimeout = 10 * time.Second

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
	if m.weightOn {
		return m.weightKey(k)
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
	case overlayHistory:
		return m.historyKey(s)
	case overlayHelp, overlayDetails:
		// Scrolling text: the key that opened it, cancel or quit closes it.
		opener := ActHelp
		if m.overlay == overlayDetails {
			opener = ActDetails
		}
		switch {
		case m.keys.is(opener, s) || m.keys.is(ActCancel, s) || m.keys.is(ActQuit, s):
			m.overlay = overlayNone
		case m.overlay == overlayDetails && m.keys.is(ActUp, s):
			m.overlayScroll++ // the details follow the newest line: up scrolls back
		case m.overlay == overlayDetails && m.keys.is(ActDown, s):
			m.overlayScroll = max(m.overlayScroll-1, 0)
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

// askQuit quits at once between runs and asks first during one, saying
// what becomes of the run.
func (m *Model) askQuit() tea.Cmd {
	var lines []string
	if m.active() {
		note := "The run continues without the cockpit; reattach to follow it."
		if m.opts.QuitStopsRun {
			note = "Quitting interrupts the run: work in flight finishes, nothing new starts (Ctrl-C then aborts it and rolls back what it switched); `flightdeck resume` finishes it."
		}
		lines = append(lines, fmt.Sprintf("Run %s is %s.", m.snap.Run, strings.ReplaceAll(string(m.snap.Status), "_", " ")), note)
	}
	if m.opts.QuitWarning != "" {
		lines = append(lines, m.opts.QuitWarning)
	}
	if len(lines) == 0 {
		return m.quit()
	}
	m.ask(confirmDialog{title: "Quit the cockpit?", lines: lines, yes: "quit", run: m.quit})
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

// weightKey edits the canary weight being typed; enter sends it (after
// the engine's own check of that number), esc cancels.
func (m *Model) weightKey(k tea.KeyPressMsg) tea.Cmd {
	switch s := k.String(); s {
	case "esc":
		m.weightOn = false
		m.setStatus("set weight: cancelled", false)
	case "enter":
		w, err := strconv.ParseFloat(strings.TrimSuffix(m.weightText, "%"), 64)
		if err != nil {
			m.setStatus(fmt.Sprintf("set weight: %q is not a number of percent", m.weightText), true)
			return nil
		}
		c := engine.Command{Kind: engine.CmdSetWeight, Weight: w, Actor: m.opts.Actor}
		if err := engine.Check(m.snap, c); err != nil {
			m.setStatus("set weight: "+fullReason(c, err), true)
			return nil
		}
		m.weightOn = false
		return m.send(c, fmt.Sprintf("set weight %g%%", w))
	case "backspace", "ctrl+h":
		m.setStatus("", false)
		if r := []rune(m.weightText); len(r) > 0 {
			m.weightText = string(r[:len(r)-1])
		}
	default:
		m.setStatus("", false)
		if len(k.Text) == 1 && strings.ContainsAny(k.Text, "0123456789.") && len(m.weightText) < 6 {
			m.weightText += k.Text
		}
	}
	return nil
}
