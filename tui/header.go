package tui

// The header: app/env, the run state, strategy, release, traffic, the
// 3-2-1 rule and who is connected.

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/x/ansi"

	"flightdeck/engine"
	"flightdeck/tui/describe"
)

func (m *Model) header(w int) []string {
	k := cacheKey{state: m.stateVer, w: w, sec: m.clock().Unix()}
	return m.cache.hdr.get(k, func() []string {
		lines := m.headerLines(w)
		for i, l := range lines {
			lines[i] = m.style.header.Render(m.glyphs.fit(l, w))
		}
		return lines
	})
}

// runState is the run's state as a glyph, words and a level (a paused
// run says by whom and for how long).
func (m *Model) runState() (string, level) {
	return m.glyphs.words.RunState(m.snap, m.clock())
}

// headerLines lays the header out in as many lines as it needs (at most
// maxHeader): the parts wrap at their separators rather than being cut,
// and who is connected (and what they are doing) is never cut off: it
// goes right of the last line when it fits, else on a line of its own.
func (m *Model) headerLines(w int) []string {
	parts := m.headerParts()
	sep := m.style.muted.Render(m.glyphs.sep)
	var lines []string
	cur := ""
	for _, p := range parts {
		switch {
		case cur == "":
			cur = p
		case ansi.StringWidth(cur)+ansi.StringWidth(sep)+ansi.StringWidth(p) <= w:
			cur += sep + p
		default:
			lines = append(lines, cur)
			cur = p
		}
	}
	lines = append(lines, cur)
	who := m.presenceLines(w)
	limit := m.maxHeader()
	// Who is connected comes before the header's later parts on a small
	// terminal: the first line (app, state) and every name stay.
	if keep := max(1, limit-len(who)); len(lines) > keep {
		lines = lines[:keep]
	}
	for i, p := range who {
		last := lines[len(lines)-1]
		lw, rw := ansi.StringWidth(last), ansi.StringWidth(p)
		if i == 0 && lw+rw+2 <= w {
			lines[len(lines)-1] = last + strings.Repeat(" ", w-lw-rw) + p
			continue
		}
		lines = append(lines, p)
	}
	if len(lines) > limit {
		// More names than a tiny terminal has lines for: say how many.
		hidden := len(lines) - limit + 1
		lines = append(lines[:limit-1], m.style.muted.Render(fmt.Sprintf("… %d more lines of connected operators (`status` over ssh lists everyone)", hidden)))
	}
	return lines
}

// maxHeader is how many lines the header may take: up to 6 on a tall
// terminal, fewer on a short one (the panes keep the rest).
func (m *Model) maxHeader() int {
	return clampInt((m.height-8)/3, 1, 6)
}

// headerParts are the header's pieces, in order.
func (m *Model) headerParts() []string {
	st, g := m.snap, &m.glyphs
	state, lv := m.runState()
	parts := []string{
		m.style.title.Render("flightdeck") + " " + m.style.bold.Render(m.appEnv()),
		m.style.of(lv).Bold(true).Render(state),
	}
	if st.Info.Strategy != "" {
		parts = append(parts, st.Info.Strategy)
	}
	if t := trafficLayer(st.Info.Traffic); t != "" {
		parts = append(parts, "via "+t)
	}
	if st.Info.Release != "" {
		if st.Info.Kind == engine.KindRollback {
			parts = append(parts, "rollback "+g.arrow+" "+st.Info.Release)
		} else {
			parts = append(parts, orNone(st.Info.Previous, "(none)")+" "+g.arrow+" "+m.style.accent.Render(st.Info.Release))
		}
	}
	switch where := m.trafficWhere(); {
	case where != "":
		parts = append(parts, where)
		if st.Info.Strategy == "ab" && st.Active() {
			parts = append(parts, fmt.Sprintf("cohort %g%%", st.Cohort))
		}
	case st.Info.Strategy == "ab" || st.Cohort > 0:
		parts = append(parts, fmt.Sprintf("cohort %g%%", st.Cohort))
	case st.Info.Strategy == "canary" || st.Weight > 0:
		s := fmt.Sprintf("weight %g%%", st.Weight)
		if st.StepTarget > 0 && st.StepTarget != st.Weight && (st.Status == engine.StatusRunning || st.Status == engine.StatusPaused) {
			s += fmt.Sprintf(" %s %g%%", g.arrow, st.StepTarget)
		}
		if n := len(st.Info.Steps); n > 0 {
			s += fmt.Sprintf(" (step %d/%d)", st.Step, n)
		}
		parts = append(parts, s)
	case len(st.Info.Waves) > 0:
		parts = append(parts, fmt.Sprintf("wave %d/%d", st.Wave, len(st.Info.Waves)))
	}
	if r := m.rule321(); r != "" {
		parts = append(parts, r)
	}
	if p := st.Proposal; p != nil && st.Active() {
		parts = append(parts, m.style.warn.Bold(true).Render(fmt.Sprintf("promotion proposed by %s: A approves", p.By)))
	}
	if m.opts.ReadOnly {
		parts = append(parts, m.style.warn.Render("read-only"))
	}
	if sc := m.opts.Scenario.Name; sc != "" {
		parts = append(parts, m.style.muted.Render("scenario ")+sc+m.style.muted.Render(" (? briefing)"))
	}
	return parts
}

// rule321 renders the 3-2-1 rule as three small indicators: the release
// went through the earlier environments (3), two verifications (2: an
// automated one and a manual one), one instant rollback path (1). Each is
// a glyph, never colour alone.
func (m *Model) rule321() string {
	st, g := m.snap, &m.glyphs
	if st.Info.Kind != engine.KindDeploy {
		return ""
	}
	mark := func(status engine.RuleStatus) string {
		switch status {
		case "ok", "n/a":
			return m.style.ok.Render(g.ok)
		case "overridden":
			return m.style.warn.Render("!")
		case "failed":
			return m.style.breach.Render(g.breach)
		}
		return m.style.muted.Render(g.none)
	}
	auto, manual := st.Rule2()
	two := ""
	for _, v := range []bool{auto, manual} {
		if v {
			two += m.style.ok.Render(g.ok)
		} else {
			two += m.style.muted.Render(g.none)
		}
	}
	return "3" + mark(st.Rule3.Status) + " 2" + two + " 1" + mark(st.Rule1.Status)
}

// presenceLines lists who is connected, wrapped at names to width w
// (a name longer than a line is the only thing cut).
func (m *Model) presenceLines(w int) []string {
	if len(m.presence) == 0 {
		return nil
	}
	var lines []string
	cur := m.style.muted.Render("on:")
	for _, p := range m.presence {
		name := describe.Clean(p.Name) + "(" + string(p.Role) + ")"
		if ansi.StringWidth(cur)+1+ansi.StringWidth(name) > w && cur != "" {
			lines = append(lines, cur)
			cur = m.glyphs.cut(name, w)
			continue
		}
		if cur != "" {
			cur += " "
		}
		cur += name
	}
	return append(lines, cur)
}

// trafficLayer names the kind of traffic layer a run moves traffic
// through, as the header shows it ("" when the run has none).
func trafficLayer(kind string) string {
	switch kind {
	case "":
		return ""
	case "flightdeck":
		return "router"
	case "haproxy":
		return "HAProxy"
	}
	return kind
}
