package tui

import (
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"flightdeck/engine"
)

// viewCache keeps rendered pieces that did not change.
type viewCache struct {
	frameKey cacheKey
	frame    string
	slo, ck  cachedLines
	hdr      cachedLines
	evs      cachedLines
	fleet    cachedLines
}

type cacheKey struct {
	state, ui uint64
	live      uint64 // the live SLO snapshot's version
	w, h      int
	sec       int64
	extra     int
}

type cachedLines struct {
	key   cacheKey
	ok    bool
	lines []string
}

func (c *cachedLines) get(k cacheKey, render func() []string) []string {
	if !c.ok || c.key != k {
		c.lines, c.key, c.ok = render(), k, true
	}
	return c.lines
}

// View renders the cockpit. Unchanged frames and panes come from a cache,
// so View is cheap when nothing changed.
func (m *Model) View() tea.View {
	v := tea.NewView(m.Render())
	v.AltScreen = !m.opts.NoAltScreen
	v.WindowTitle = "flightdeck " + m.appEnv()
	return v
}

// Render returns the cockpit's screen as text with ANSI styles: exactly
// the window's height in lines, none wider than the window.
func (m *Model) Render() string {
	k := cacheKey{state: m.stateVer, ui: m.uiVer, w: m.width, h: m.height, sec: m.clock().Unix()}
	if k == m.cache.frameKey && m.cache.frame != "" {
		return m.cache.frame
	}
	m.cache.frameKey = k
	m.cache.frame = m.frame()
	return m.cache.frame
}

// clock is the time shown: now, or the end of a finished run (so that a
// finished run's times stand still).
func (m *Model) clock() time.Time {
	if m.snap.Status == engine.StatusFinished && !m.snap.Finished.IsZero() {
		return m.snap.Finished
	}
	return m.now()
}

func (m *Model) frame() string {
	w, h := max(m.width, 20), max(m.height, 4)
	lines := make([]string, 0, h)
	hdr := m.header(w)
	lines = append(lines, hdr...)
	bodyH := h - len(hdr) - 2
	lines = append(lines, m.body(w, bodyH)...)
	lines = append(lines, m.glyphs.fit(m.statusLine(w), w), m.glyphs.fit(m.keyBar(w), w))
	return strings.Join(lines, "\n")
}

func (m *Model) appEnv() string {
	return orNone(m.snap.Info.App, m.opts.App) + "/" + orNone(m.snap.Info.Env, m.opts.Env)
}

func (m *Model) body(w, h int) []string {
	if h <= 0 {
		return nil
	}
	switch m.overlay {
	case overlayHelp:
		return m.helpView(w, h)
	case overlayDetails:
		return m.detailsView(w, h)
	case overlayHistory:
		return m.historyView(w, h)
	}
	lines := m.panes(w, h)
	if m.overlay == overlayConfirm && m.confirm != nil {
		lines = m.overlayDialog(lines, w, h)
	}
	return lines
}

func (m *Model) panes(w, h int) []string {
	out := make([]string, 0, h)
	sep := m.style.border.Render(m.glyphs.vsep)
	switch {
	case w >= 120 && h >= 18:
		evH := max(h*3/10, 4)
		topH := h - evH
		fleetW := w * 55 / 100
		rightW := w - fleetW - 1
		sloH := topH * 55 / 100
		fleet := m.fleetPane(fleetW, topH)
		right := append(m.sloPane(rightW, sloH), m.checklistPane(rightW, topH-sloH)...)
		for i := range topH {
			out = append(out, fleet[i]+sep+right[i])
		}
		out = append(out, m.eventsPane(w, evH)...)
	case w >= 60 && h >= 12:
		fleetH := max(h*4/10, 3)
		evH := max(h*3/10, 3)
		midH := h - fleetH - evH
		out = append(out, m.fleetPane(w, fleetH)...)
		lw := w / 2
		rw := w - lw - 1
		slo, ck := m.sloPane(lw, midH), m.checklistPane(rw, midH)
		for i := range midH {
			out = append(out, slo[i]+sep+ck[i])
		}
		out = append(out, m.eventsPane(w, evH)...)
	default:
		// Too small for panes side by side: the focused pane takes the body.
		switch m.focus {
		case paneSLO:
			out = m.sloPane(w, h)
		case paneChecklist:
			out = m.checklistPane(w, h)
		case paneEvents:
			out = m.eventsPane(w, h)
		default:
			out = m.fleetPane(w, h)
		}
	}
	return out
}

// titleLine draws a pane's title rule.
func (m *Model) titleLine(p pane, name, extra string, w int) string {
	st := m.style.border
	nameSt := m.style.bold
	if m.focus == p && m.overlay == overlayNone {
		st, nameSt = m.style.focus, m.style.focus
	}
	s := st.Render(m.glyphs.rule+" ") + nameSt.Render(name)
	if extra != "" {
		s += " " + m.style.muted.Render(extra)
	}
	s += " "
	if rest := w - ansi.StringWidth(s); rest > 0 {
		s += st.Render(strings.Repeat(m.glyphs.rule, rest))
	}
	return m.glyphs.fit(s, w)
}

// block pads lines to exactly h lines of width w.
func (g *glyphs) block(lines []string, w, h int) []string {
	out := make([]string, h)
	for i := range h {
		if i < len(lines) {
			out[i] = g.fit(lines[i], w)
		} else {
			out[i] = strings.Repeat(" ", w)
		}
	}
	return out
}
