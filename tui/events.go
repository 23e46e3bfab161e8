package tui

// The events pane: the run's recent events, newest at the bottom.

import (
	"fmt"

	"flightdeck/engine"
)

func (m *Model) eventsPane(w, h int) []string {
	focus := 0
	if m.focus == paneEvents && m.overlay == overlayNone {
		focus = 1
	}
	k := cacheKey{state: m.stateVer, w: w, h: h, extra: focus<<20 | m.eventScroll}
	return m.cache.evs.get(k, func() []string { return m.renderEvents(w, h) })
}

func (m *Model) renderEvents(w, h int) []string {
	extra := fmt.Sprintf("%d", len(m.eventLog))
	if m.eventScroll > 0 {
		extra += fmt.Sprintf("%sscrolled %d up", m.glyphs.sep, m.eventScroll)
	}
	if m.eventsLost > 0 {
		extra += fmt.Sprintf("%s%d not shown (fell behind)", m.glyphs.sep, m.eventsLost)
	}
	lines := []string{m.titleLine(paneEvents, "Events", extra, w)}
	rows := h - 1
	end := len(m.eventLog) - clampInt(m.eventScroll, 0, len(m.eventLog))
	start := max(0, end-rows)
	for _, e := range m.eventLog[start:end] {
		text, l := m.eventText(e)
		ts := m.style.muted.Render(e.Time.In(m.opts.Location).Format("15:04:05"))
		lines = append(lines, ts+" "+m.style.of(l).Render(text))
	}
	return m.glyphs.block(lines, w, h)
}

// eventText renders an event as one compact line and a level, in the
// words of package describe ("" for an event that adds nothing).
func (m *Model) eventText(e engine.Event) (string, level) {
	text, l := m.glyphs.words.Event(e)
	if e.Type == engine.EvRunFinished {
		text = "run " + text
	}
	return text, l
}
