package tui

// The details overlay: one host's state, phase history and output.

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/x/ansi"

	"flightdeck/engine"
	"flightdeck/tui/describe"
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
		cause, where := causeFirst(describe.Clean(hs.Err))
		body = append(body, m.style.breach.Render("  "+m.glyphs.breach+" "+hs.Name+" failed: "+cause))
		if where != "" {
			body = append(body, m.style.muted.Render("    while: "+where))
		}
		body = append(body, m.style.accent.Render("  next: "+nextStep(hs, cause, m.snap.Run)))
	}
	body = append(body, "", m.style.bold.Render("  Phase history"))
	for _, pc := range hs.History {
		g, l := m.glyphs.phase(pc.Phase)
		s := "  " + m.style.muted.Render(pc.Time.In(m.opts.Location).Format("15:04:05.000")) + " " + m.style.of(l).Render(g+" "+string(pc.Phase))
		if pc.Note != "" {
			s += " " + describe.Clean(pc.Note)
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
	// Long lines wrap (an error or a hook's output is read whole, never
	// cut), and the view follows the output as it arrives: overlayScroll
	// counts lines up from the newest.
	var wrapped []string
	for _, l := range body {
		wrapped = append(wrapped, strings.Split(ansi.Wrap(l, w, " /"), "\n")...)
	}
	room := h - 1
	last := max(len(wrapped)-room, 0)
	m.overlayScroll = clampInt(m.overlayScroll, 0, last)
	off := last - m.overlayScroll
	return m.glyphs.block(append(lines, wrapped[off:min(len(wrapped), off+room)]...), w, h)
}

// causeFirst splits an error into its cause (the innermost reason, which
// an operator reads first: "connection refused") and where it happened
// (the wrapping context: "restart web-3: dial tcp 10.0.0.3:22").
func causeFirst(err string) (cause, where string) {
	parts := strings.Split(err, ": ")
	if len(parts) < 2 {
		return err, ""
	}
	return parts[len(parts)-1], strings.Join(parts[:len(parts)-1], ": ")
}

// nextStep suggests what to do about a failed host.
func nextStep(hs *engine.HostState, cause, run string) string {
	c := strings.ToLower(cause)
	switch {
	case strings.Contains(c, "connection refused") || strings.Contains(c, "no route") || strings.Contains(c, "timeout") ||
		strings.Contains(c, "i/o timeout") || strings.Contains(c, "unreachable"):
		return "the host or its service does not answer: check that " + hs.Name + " is up (ssh, its service's log), then roll back (r) or deploy again (d)."
	case strings.Contains(c, "health"):
		return "the new release did not turn healthy: read its restart output below, then roll back (r) or fix and deploy again (d)."
	case strings.Contains(c, "exit status") || strings.Contains(c, "hook"):
		return "a hook failed: its output is below; fix the hook or the release, then deploy again (d)."
	case strings.Contains(c, "space") || strings.Contains(c, "permission"):
		return "the host refused the files: check its disk and the deploy directory's owner, then deploy again (d)."
	}
	return "read the output below and the journal (flightdeck journal show " + run + "), then roll back (r) or deploy again (d)."
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
