package tui

// The help overlay: every key and what it does now.

import (
	"strings"

	"github.com/charmbracelet/x/ansi"

	"flightdeck/engine"
)

func (m *Model) helpView(w, h int) []string {
	lines := []string{m.titleLine(paneFleet, "Keys", "disabled actions say why; "+m.glyphs.breach+" marks destructive ones", w)}
	keyW := 16
	keysOf := func(a Action) string {
		if ks := m.keys.Binding(a).Keys(); len(ks) > 0 {
			return strings.Join(ks, "/")
		}
		return "(unbound)"
	}
	var body []string
	for _, ai := range bindings {
		switch ai.act {
		case ActUp, ActDown, ActPageUp, ActPageDown, ActConfirm, ActCancel:
			continue // listed together below
		}
		if ai.offered != nil && !ai.offered(m) {
			continue // not a capability of this cockpit
		}
		v := m.avail(ai.act)
		tag := ""
		switch {
		case v.hidden:
			tag = m.style.muted.Render("  (hidden: " + v.detail + ")")
		case !v.ok:
			tag = m.style.muted.Render("  (now: " + v.why + ")")
		}
		mark := "  "
		if ai.dangerous {
			mark = m.style.danger.Render(m.glyphs.breach) + " "
		}
		body = append(body, "  "+m.style.key.Render(m.glyphs.fit(keysOf(ai.act), keyW))+" "+mark+ai.desc+tag)
	}
	body = append(body,
		"  "+m.style.key.Render(m.glyphs.fit(keysOf(ActUp)+" "+keysOf(ActDown), keyW))+"   move; "+m.style.key.Render(keysOf(ActPageUp)+" "+keysOf(ActPageDown))+" page",
		"  "+m.style.key.Render(m.glyphs.fit(keysOf(ActConfirm), keyW))+"   confirm a dialog; "+m.style.key.Render(keysOf(ActCancel))+" cancel, close, clear the filter",
		"  "+m.style.key.Render(m.glyphs.fit("ctrl+c", keyW))+"   quit at once (always)",
		m.style.muted.Render("  Remap keys in $XDG_CONFIG_HOME/flightdeck/config.yaml, e.g. keys: {pause: [\"p\"]}"))
	body = append(body, "", m.style.bold.Render("  Legend"))
	body = append(body, m.legend()...)
	if sc := m.opts.Scenario; sc.Name != "" {
		body = append(body, "", m.style.bold.Render("  Scenario "+sc.Name), "  "+sc.Briefing)
	}
	// Long lines wrap: the legend and the briefing are read whole.
	var wrapped []string
	for _, l := range body {
		for _, wl := range strings.Split(ansi.Wrap(l, w-2, " "), "\n") {
			if !strings.HasPrefix(wl, "  ") {
				wl = "  " + wl
			}
			wrapped = append(wrapped, wl)
		}
	}
	off := clampInt(m.overlayScroll, 0, max(len(wrapped)-(h-1), 0))
	return m.glyphs.block(append(lines, wrapped[off:]...), w, h)
}

// legend explains the header's and the fleet's glyphs.
func (m *Model) legend() []string {
	g := &m.glyphs
	ok, none := m.style.ok.Render(g.ok), m.style.muted.Render(g.none)
	rule := "3" + ok + " 2" + ok + ok + " 1" + ok
	var phases []string
	for _, p := range []engine.Phase{engine.PhaseQueued, engine.PhasePreparing, engine.PhasePrepared, engine.PhaseDraining,
		engine.PhaseSwitching, engine.PhaseRestart, engine.PhaseHealth, engine.PhaseStandby, engine.PhaseLive,
		engine.PhaseReverting, engine.PhaseReverted, engine.PhaseFailed, engine.PhaseSkipped} {
		glyph, l := g.phase(p)
		phases = append(phases, m.style.of(l).Render(glyph)+" "+string(p))
	}
	return []string{
		"  " + rule + "  the 3-2-1 rule of this deploy: 3 " + g.dash + " the release went through the earlier environments; " +
			"2 " + g.dash + " two verifications, an automated one (gates, checks) and a manual one (checklist acks); " +
			"1 " + g.dash + " one instant rollback path (the previous release kept on every host). " +
			ok + " done, " + none + " not yet, " + m.style.breach.Render(g.breach) + " failed, " + m.style.warn.Render("!") + " overridden.",
		"  phases: " + strings.Join(phases, "  "),
		"  health: " + ok + " up  " + m.style.warn.Render(g.warn) + " waiting  " + m.style.breach.Render(g.breach) + " failing  " +
			g.dash + " no health check configured",
	}
}
