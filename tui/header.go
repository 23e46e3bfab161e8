package tui

// The header: app/env, the run state, strategy, release, traffic, the
// 3-2-1 rule and who is connected.

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/x/ansi"

	"flightdeck/engine"
)

func (m *Model) header(w int) []string {
	k := cacheKey{state: m.stateVer, w: w, sec: m.clock().Unix()}
	return m.cache.hdr.get(k, func() []string {
		return []string{m.style.header.Render(m.glyphs.fit(m.headerText(w), w))}
	})
}

// runState is the run's state as a glyph, words and a level (a paused
// run says by whom and for how long).
func (m *Model) runState() (string, level) {
	return m.glyphs.words.RunState(m.snap, m.clock())
}

func (m *Model) headerText(w int) string {
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
	switch {
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
	left := strings.Join(parts, m.style.muted.Render(g.sep))
	right := m.presenceText()
	if right == "" {
		return left
	}
	lw, rw := ansi.StringWidth(left), ansi.StringWidth(right)
	if lw+rw+2 > w {
		if w-lw-2 < 12 {
			return left
		}
		right = ansi.Truncate(right, w-lw-2, g.ellipsis)
		rw = ansi.StringWidth(right)
	}
	return left + strings.Repeat(" ", w-lw-rw) + right
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

func (m *Model) presenceText() string {
	if len(m.presence) == 0 {
		return ""
	}
	names := make([]string, len(m.presence))
	for i, p := range m.presence {
		names[i] = p.Name + "(" + string(p.Role) + ")"
	}
	return m.style.muted.Render("on: ") + strings.Join(names, " ")
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
