package tui

// The checklist pane: the run's release checklist items and their state.

import (
	"flightdeck/tui/describe"

	"fmt"

	"flightdeck/engine"
)

func (m *Model) checklistPane(w, h int) []string {
	focus := 0
	if m.focus == paneChecklist && m.overlay == overlayNone {
		focus = 1
	}
	k := cacheKey{state: m.stateVer, w: w, h: h, extra: focus<<20 | m.checkCursor}
	return m.cache.ck.get(k, func() []string { return m.renderChecklist(w, h, focus == 1) })
}

func (m *Model) checklistLevel(it engine.ChecklistItem) (level, string) {
	switch it.State {
	case "verified":
		return lvOK, "verified"
	case "acknowledged":
		return lvOK, "acked by " + orNone(it.AckBy, "?")
	case "failed":
		return lvBreach, "failed"
	case "n/a":
		return lvMuted, "n/a"
	}
	if it.Required {
		return lvWarn, "needs ack"
	}
	return lvWarn, orNone(string(it.State), "unknown")
}

func (m *Model) renderChecklist(w, h int, focused bool) []string {
	cl := m.snap.Checklist
	done := 0
	for _, it := range cl {
		if it.State == "verified" || it.State == "acknowledged" || it.State == "n/a" {
			done++
		}
	}
	lines := []string{m.titleLine(paneChecklist, "Checklist", fmt.Sprintf("%d/%d", done, len(cl)), w)}
	if len(cl) == 0 {
		lines = append(lines, m.style.muted.Render("  no checklist in this run"))
		return m.glyphs.block(lines, w, h)
	}
	rows := h - 1
	cur := clampInt(m.checkCursor, 0, len(cl)-1)
	off := max(0, cur-rows+1)
	for i := off; i < min(len(cl), off+rows); i++ {
		it := cl[i]
		l, word := m.checklistLevel(it)
		glyph := m.glyphs.levelGlyph(l)
		if l == lvMuted {
			glyph = m.glyphs.none
		}
		cursor := "  "
		if i == cur {
			cursor = m.glyphs.cursor + " "
		}
		ev := ""
		if it.Evidence != "" {
			ev = " " + m.glyphs.sep[1:] + describe.Clean(it.Evidence)
		}
		if i == cur && focused {
			lines = append(lines, m.style.sel.Render(m.glyphs.fit(cursor+glyph+" "+it.Title+" "+m.glyphs.dash+" "+word+ev, w)))
			continue
		}
		lines = append(lines, cursor+m.style.of(l).Render(glyph+" ")+it.Title+" "+m.style.of(l).Render(m.glyphs.dash+" "+word)+m.style.muted.Render(ev))
	}
	return m.glyphs.block(lines, w, h)
}
