package tui

import (
	"strings"

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"flightdeck/engine"
	"flightdeck/themes"
	"flightdeck/tui/describe"
)

// styles are the theme's colours as lipgloss styles.
type styles struct {
	mono                              bool
	text, muted, accent, border       lipgloss.Style
	focus, sel, ok, warn, breach      lipgloss.Style
	danger, info, header, title, bold lipgloss.Style
	key                               lipgloss.Style
}

func fg(c any) lipgloss.Style {
	s := lipgloss.NewStyle()
	if c == nil {
		return s
	}
	if col, ok := c.(interface{ RGBA() (r, g, b, a uint32) }); ok {
		return s.Foreground(col)
	}
	return s
}

func newStyles(t themes.Theme) styles {
	s := styles{mono: t.Mono()}
	s.text = fg(t.Text)
	s.muted = fg(t.Muted)
	s.accent = fg(t.Accent)
	s.border = fg(t.Border)
	s.focus = fg(t.FocusBorder).Bold(true)
	s.ok = fg(t.OK)
	s.warn = fg(t.Warn).Bold(s.mono)
	s.breach = fg(t.Breach).Bold(true)
	s.danger = fg(t.Danger).Bold(true)
	s.info = fg(t.Info)
	s.bold = lipgloss.NewStyle().Bold(true)
	s.title = fg(t.Accent).Bold(true)
	s.key = fg(t.Accent).Bold(true)
	s.header = lipgloss.NewStyle().Bold(true)
	if t.HeaderBG != nil {
		s.header = s.header.Background(t.HeaderBG)
	}
	if t.Text != nil {
		s.header = s.header.Foreground(t.Text)
	}
	if s.mono || t.Selected == nil {
		s.sel = lipgloss.NewStyle().Reverse(true)
	} else {
		s.sel = lipgloss.NewStyle().Background(t.Selected)
		if t.SelectedText != nil {
			s.sel = s.sel.Foreground(t.SelectedText)
		}
	}
	return s
}

// level is how good a value or a state is (describe.Level): always
// shown with a glyph and a word, never by colour alone.
type level = describe.Level

const (
	lvNone   = describe.None
	lvOK     = describe.OK
	lvWarn   = describe.Warn
	lvBreach = describe.Breach
	lvInfo   = describe.Info
	lvMuted  = describe.Muted
)

func (s *styles) of(l level) lipgloss.Style {
	switch l {
	case lvOK:
		return s.ok
	case lvWarn:
		return s.warn
	case lvBreach:
		return s.breach
	case lvInfo:
		return s.info
	case lvMuted:
		return s.muted
	}
	return s.text
}

// glyphs are the symbols of the interface, Unicode or ASCII.
type glyphs struct {
	ascii                          bool
	ok, warn, breach, none, cursor string
	arrow, sep, ellipsis, rule     string
	barFull, barEmpty              string
	spark                          []string
	running, paused, rolling       string
	vsep, dash, caret              string
	// words are the states' and events' glyphs and words, shared with the
	// line output and serve's status.
	words describe.Glyphs
}

func newGlyphs(ascii bool) glyphs {
	if ascii {
		return glyphs{words: describe.NewGlyphs(true), ascii: true, ok: "ok", warn: "!", breach: "x", none: "-", cursor: ">",
			arrow: "->", sep: " | ", ellipsis: "~", rule: "-", barFull: "#", barEmpty: ".",
			spark: []string{"_", "_", ".", ".", "-", "-", "=", "#"}, running: ">", paused: "||", rolling: "<<", vsep: "|", dash: "-", caret: "_"}
	}
	return glyphs{words: describe.NewGlyphs(false), ok: "✓", warn: "▲", breach: "✗", none: "·", cursor: "▸",
		arrow: "→", sep: " · ", ellipsis: "…", rule: "─", barFull: "█", barEmpty: "░",
		spark: []string{"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"}, running: "▶", paused: "‖", rolling: "↶", vsep: "│", dash: "—", caret: "▏"}
}

func (g *glyphs) levelGlyph(l level) string { return g.words.Of(l) }

// phase returns a host phase's symbol and level.
func (g *glyphs) phase(p engine.Phase) (string, level) { return g.words.Phase(p) }

// fit truncates s (which may hold ANSI styles) to w cells and pads it.
func (g *glyphs) fit(s string, w int) string {
	if w <= 0 {
		return ""
	}
	sw := ansi.StringWidth(s)
	if sw > w {
		s = ansi.Truncate(s, w, g.ellipsis)
		sw = ansi.StringWidth(s)
	}
	if sw < w {
		s += strings.Repeat(" ", w-sw)
	}
	return s
}

// cut truncates text to w cells with an ellipsis.
func (g *glyphs) cut(s string, w int) string {
	if w <= 0 {
		return ""
	}
	if ansi.StringWidth(s) <= w {
		return s
	}
	return ansi.Truncate(s, w, g.ellipsis)
}
