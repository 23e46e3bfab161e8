package tui

// The help overlay: every key and what it does now.

import (
	"strings"
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
	off := clampInt(m.overlayScroll, 0, max(len(body)-(h-1), 0))
	return m.glyphs.block(append(lines, body[off:]...), w, h)
}
