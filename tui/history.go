package tui

// Release history: the environment's runs from the journal (who, when,
// outcome, duration, the live release marked), what a rollback goes from
// and to, and the overlay that rolls back to a chosen release.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"flightdeck/engine"
)

// historyMsg carries the environment's runs read from the backend.
type historyMsg struct {
	runs []engine.RunSummary
	err  error
}

// loadHistory reads the environment's runs in a tea.Cmd (nil when the
// backend keeps no history).
func (m *Model) loadHistory() tea.Cmd {
	h, ok := m.backend.(Historian)
	if !ok {
		return nil
	}
	ctx := m.opts.Context
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, sendTimeout)
		defer cancel()
		runs, err := h.History(ctx)
		return historyMsg{runs: runs, err: err}
	}
}

// liveRelease is the release the fleet serves now, as the hosts report
// it (the most common one), or "" when no host is known.
func (m *Model) liveRelease() string {
	count := map[string]int{}
	best, n := "", 0
	for _, h := range m.snap.Hosts {
		if h.Current == "" {
			continue
		}
		count[h.Current]++
		if c := count[h.Current]; c > n || (c == n && h.Current < best) {
			best, n = h.Current, c
		}
	}
	return best
}

// rollbackTarget is the release a rollback goes to, as far as the cockpit
// knows ("" = the backend decides from the journal): during a run, the
// release live before it; between runs, the engine's rule over the
// journal (the release live before the newest successful deploy).
func (m *Model) rollbackTarget() string {
	st := m.snap
	if m.active() {
		return st.Info.Previous
	}
	if m.history != nil && !m.historyStale() {
		// (A history read before the last run ended would name the
		// release before an older deploy: it is not asked then.)
		if t, err := engine.RollbackTargetOf(m.history, m.envName()); err == nil {
			return t
		}
		return ""
	}
	if st.Status == engine.StatusFinished && st.Info.Kind == engine.KindDeploy && st.Outcome == engine.OutcomeSucceeded {
		return st.Info.Previous
	}
	return ""
}

// noRollbackTarget reports that the journal, read and current, names no
// release to roll back to (the only deploy was the first, or none
// succeeded): a plain r would be refused; the history can name one.
func (m *Model) noRollbackTarget() bool {
	if m.history == nil || m.historyStale() {
		return false
	}
	_, err := engine.RollbackTargetOf(m.history, m.envName())
	return err != nil
}

func (m *Model) envName() string { return orNone(m.snap.Info.Env, m.opts.Env) }

// liveSince describes since when and by whom release has been live:
// "live since 10:46, deployed by root" (from the history; "" unknown).
func (m *Model) liveSince(release string) string {
	for i := len(m.history) - 1; i >= 0; i-- {
		r := m.history[i]
		if r.Outcome != engine.OutcomeSucceeded || r.Release != release || r.Finished.IsZero() {
			continue
		}
		verb := "deployed"
		if r.Kind == engine.KindRollback {
			verb = "rolled back to"
		}
		return fmt.Sprintf("live since %s, %s by %s", m.clockTime(r.Finished), verb, orNone(r.Actor, "?"))
	}
	return ""
}

// clockTime shows a time of day, with the date when it is not today.
func (m *Model) clockTime(t time.Time) string {
	t = t.In(m.opts.Location)
	now := m.now().In(m.opts.Location)
	if y, mo, d := t.Date(); y == now.Year() && mo == now.Month() && d == now.Day() {
		return t.Format("15:04")
	}
	return t.Format("Jan 2 15:04")
}

// rollbackDialog asks to roll back to target ("" = the backend's default),
// naming both sides, and warns when the fleet is already on the release
// that was live before the last run (a second rollback would take a
// healthy release away).
func (m *Model) rollbackDialog(target string) confirmDialog {
	st := m.snap
	title := "Roll back " + m.appEnv() + "?"
	if m.active() {
		return confirmDialog{doing: "rollback", title: title, lines: []string{
			m.fromTo(st.Info.Release+" (being deployed by run "+st.Run+")", orNone(target, "each host's previous release")) +
				" (the release live before this run).",
			m.affected(),
			"The rollback skips analysis and steps.",
		}, yes: "roll back", danger: true, run: func() tea.Cmd {
			return m.send(engine.Command{Kind: engine.CmdRollback}, "rollback")
		}}
	}
	live := m.liveRelease()
	from := orNone(live, "the live release")
	if s := m.liveSince(live); s != "" {
		from += " (" + s + ")"
	}
	lines := []string{m.fromTo(from, orNone(target, "the release live before the last successful deploy (from the journal)"))}
	if live != "" && live == target {
		lines = append(lines, m.style.warn.Render(m.glyphs.warn+" The fleet is already on "+target+": nothing would change."))
	} else if w := m.alreadyBack(live); w != "" {
		lines = append(lines, m.style.warn.Render(m.glyphs.warn+" "+w))
	}
	if target != "" && len(st.Hosts) > 0 {
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
	return confirmDialog{doing: "rollback", title: title, lines: lines, yes: "roll back", danger: true,
		run: func() tea.Cmd {
			return m.between("rollback", func(ctx context.Context) error { return m.backend.Rollback(ctx, m.opts.Actor, target) })
		}}
}

// fromTo is "from → to" with the target accented.
func (m *Model) fromTo(from, to string) string {
	return from + " " + m.glyphs.arrow + " " + m.style.accent.Bold(true).Render(to)
}

// alreadyBack warns when live is the release that was live before the
// last deploy run: that run was rolled back (or failed), so the fleet is
// already where a rollback of it would go.
func (m *Model) alreadyBack(live string) string {
	st := m.snap
	if live == "" || st.Status != engine.StatusFinished || st.Info.Kind != engine.KindDeploy ||
		st.Info.Previous != live || st.Outcome == engine.OutcomeSucceeded {
		return ""
	}
	return fmt.Sprintf("The fleet is already on %s, the release live before the last run (%s %s): this rolls a healthy release back further.",
		live, st.Info.Release, strings.ReplaceAll(string(st.Outcome), "_", " "))
}

// historyRows are the runs shown, newest first.
func (m *Model) historyRows() []engine.RunSummary {
	rows := slices.Clone(m.history)
	slices.Reverse(rows)
	return rows
}

// historyView draws the release history overlay.
func (m *Model) historyView(w, h int) []string {
	lines := []string{m.titleLine(paneFleet, "Release history", m.appEnv()+m.glyphs.sep+"enter/r rolls back to the selected release", w)}
	switch {
	case m.historyErr != "":
		lines = append(lines, m.style.breach.Render("  "+m.glyphs.breach+" history: "+m.historyErr))
		return m.glyphs.block(lines, w, h)
	case m.history == nil || m.historyStale():
		lines = append(lines, m.style.muted.Render("  reading the journal…"))
		return m.glyphs.block(lines, w, h)
	}
	rows := m.historyRows()
	if len(rows) == 0 {
		lines = append(lines, m.style.muted.Render("  no run in the journal yet"))
		return m.glyphs.block(lines, w, h)
	}
	live := m.liveRelease()
	lines = append(lines, m.style.muted.Render(m.glyphs.fit("    RELEASE      KIND      OUTCOME        BY           STARTED      DURATION  RUN", w)))
	room := h - len(lines)
	cur := clampInt(m.historyCursor, 0, len(rows)-1)
	off := clampInt(cur-room+1, 0, max(len(rows)-room, 0))
	for i := off; i < min(len(rows), off+room); i++ {
		r := rows[i]
		mark := "  "
		if r.Release == live && live != "" {
			mark = m.glyphs.ok + " "
		}
		cursor := "  "
		if i == cur {
			cursor = m.glyphs.cursor + " "
		}
		outcome, lv := string(r.Outcome), lvNone
		switch {
		case r.Status != engine.StatusFinished:
			outcome, lv = "unfinished", lvWarn
			if m.active() && r.Run == m.snap.Run {
				outcome, lv = "in progress", lvInfo
			}
		case r.Outcome == engine.OutcomeSucceeded:
			lv = lvOK
		default:
			lv = lvBreach
		}
		dur := "-"
		if r.Duration > 0 {
			dur = fmtAge(r.Duration)
		}
		row := cursor + mark + m.glyphs.fit(r.Release, 12) + " " + m.glyphs.fit(string(r.Kind), 9) + " " +
			m.style.of(lv).Render(m.glyphs.fit(strings.ReplaceAll(outcome, "_", " "), 14)) + " " +
			m.glyphs.fit(orNone(r.Actor, "?"), 12) + " " + m.glyphs.fit(m.clockTime(r.Started), 12) + " " +
			m.glyphs.fit(dur, 9) + " " + m.style.muted.Render(r.Run)
		if i == cur {
			row = m.style.sel.Render(m.glyphs.fit(ansi.Strip(row), w))
		}
		lines = append(lines, row)
	}
	if live != "" {
		lines = append(lines, "", m.style.muted.Render("  "+m.glyphs.ok+" marks the release live now ("+live+")"))
	}
	return m.glyphs.block(lines, w, h)
}

// historyStale reports a history read before the run the cockpit shows
// ended (its line is not in it yet): it is not shown nor acted on until
// the new read arrives.
func (m *Model) historyStale() bool {
	st := m.snap
	if st.Run == "" || st.Status != engine.StatusFinished {
		return false
	}
	return !slices.ContainsFunc(m.history, func(r engine.RunSummary) bool {
		return r.Run == st.Run && r.Status == engine.StatusFinished
	})
}

// historySelected is the release under the history cursor ("" none, or
// while the history is being read again).
func (m *Model) historySelected() string {
	if m.historyStale() {
		return ""
	}
	rows := m.historyRows()
	if len(rows) == 0 {
		return ""
	}
	return rows[clampInt(m.historyCursor, 0, len(rows)-1)].Release
}

// historyKey handles a key in the history overlay.
func (m *Model) historyKey(s string) tea.Cmd {
	switch {
	case m.keys.is(ActHistory, s) || m.keys.is(ActCancel, s) || m.keys.is(ActQuit, s):
		m.overlay = overlayNone
	case m.keys.is(ActDown, s):
		m.historyCursor = min(m.historyCursor+1, max(len(m.history)-1, 0))
	case m.keys.is(ActUp, s):
		m.historyCursor = max(m.historyCursor-1, 0)
	case m.keys.is(ActRollback, s) || m.keys.is(ActConfirm, s):
		target := m.historySelected()
		if target == "" {
			return nil
		}
		c := engine.Command{Kind: engine.CmdRollback, Actor: m.opts.Actor, To: target}
		if m.opts.ReadOnly {
			m.setStatus("roll back: read-only", true)
			return nil
		}
		if m.active() {
			m.setStatus("roll back to "+target+": a run is in progress; roll it back with r first, or wait for its end", true)
			return nil
		}
		if err := engine.Check(m.snap, c); err != nil {
			m.setStatus("roll back to "+target+": "+fullReason(c, err), true)
			return nil
		}
		m.overlay = overlayNone
		m.ask(m.rollbackDialog(target))
	}
	return nil
}
