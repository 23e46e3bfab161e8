package tui

// The details overlay: one host's state, phase history and output.

import (
	"fmt"
	"strings"
)

func (m *Model) detailsView(w, h int) []string {
	hs := m.snap.Host(m.details)
	lines := []string{m.titleLine(paneFleet, "Host "+m.details, "", w)}
	if hs == nil {
		lines = append(lines, m.style.muted.Render("  host not in this run"))
		return m.glyphs.block(lines, w, h)
	}
	glyph, lv := m.glyphs.phase(hs.Phase)
	now := m.clock()
	body := []string{
		fmt.Sprintf("  release %s (was %s)%sphase %s for %s%swave %d",
			orNone(hs.Current, "-"), orNone(hs.Previous, "-"), m.glyphs.sep, m.style.of(lv).Render(glyph+" "+string(hs.Phase)), fmtAge(now.Sub(hs.Since)), m.glyphs.sep, hs.Wave),
		fmt.Sprintf("  prepared %s%sswitched %s%sreverted %s%sreleases on host: %s",
			yesNo(hs.Prepared), m.glyphs.sep, yesNo(hs.Switched), m.glyphs.sep, yesNo(hs.Reverted), m.glyphs.sep, orNone(strings.Join(hs.Releases, ", "), "-")),
	}
	if p := hs.Progress; p.FilesTotal > 0 {
		body = append(body, fmt.Sprintf("  files %d/%d%sbytes %s/%s%ssent %s", p.FilesDone, p.FilesTotal, m.glyphs.sep,
			fmtBytes(p.BytesDone), fmtBytes(p.BytesTotal), m.glyphs.sep, fmtBytes(p.BytesSent)))
	}
	if hs.Err != "" {
		body = append(body, m.style.breach.Render("  "+m.glyphs.breach+" error: "+hs.Err))
	}
	body = append(body, "", m.style.bold.Render("  Phase history"))
	for _, pc := range hs.History {
		g, l := m.glyphs.phase(pc.Phase)
		s := "  " + m.style.muted.Render(pc.Time.In(m.opts.Location).Format("15:04:05.000")) + " " + m.style.of(l).Render(g+" "+string(pc.Phase))
		if pc.Note != "" {
			s += " " + pc.Note
		}
		body = append(body, s)
	}
	body = append(body, "", m.style.bold.Render("  Hook output and events"))
	evs := m.hostLog[hs.Name]
	if len(evs) == 0 {
		body = append(body, m.style.muted.Render("  (none received by this cockpit)"))
	}
	for _, e := range evs {
		text, l := m.eventText(e)
		body = append(body, "  "+m.style.muted.Render(e.Time.In(m.opts.Location).Format("15:04:05"))+" "+m.style.of(l).Render(text))
	}
	off := clampInt(m.overlayScroll, 0, max(len(body)-(h-1), 0))
	return m.glyphs.block(append(lines, body[off:]...), w, h)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
