package tui

// The fleet pane: one row per host with its release, phase, health, time
// in phase and progress.

import (
	"fmt"
	"strings"
	"time"

	"github.com/charmbracelet/x/ansi"

	"flightdeck/engine"
	"flightdeck/tui/describe"
)

func (m *Model) fleetPane(w, h int) []string {
	k := cacheKey{state: m.stateVer, ui: m.uiVer, live: m.liveVer(), w: w, h: h, sec: m.clock().Unix()}
	return m.cache.fleet.get(k, func() []string { return m.renderFleet(w, h) })
}

func (m *Model) renderFleet(w, h int) []string {
	n := m.fleetLen()
	extra := fmt.Sprintf("%d hosts", len(m.snap.Hosts))
	if m.filter != "" || m.filterOn {
		extra = fmt.Sprintf("%d of %d hosts%sfilter /%s", n, len(m.snap.Hosts), m.glyphs.sep, m.filter)
	}
	if m.fleetLen() > 0 {
		extra += fmt.Sprintf("%s%d/%d", m.glyphs.sep, m.cursor+1, n)
	}
	lines := []string{m.titleLine(paneFleet, "Fleet", extra, w)}
	rows := h - 1
	cols := m.fleetCols(w)
	if rows >= 8 {
		lines = append(lines, m.style.muted.Render(m.glyphs.fit(m.fleetHeader(cols), w)))
		rows--
	}
	m.fleetRows = rows
	if n == 0 {
		msg := "no hosts yet: waiting for a run"
		if m.filter != "" {
			msg = "no host matches /" + m.filter
		}
		lines = append(lines, m.style.muted.Render("  "+msg))
		return m.glyphs.block(lines, w, h)
	}
	// Keep the cursor in view; render only the visible rows.
	if m.cursor < m.offset {
		m.offset = m.cursor
	}
	if m.cursor >= m.offset+rows {
		m.offset = m.cursor - rows + 1
	}
	m.offset = clampInt(m.offset, 0, max(n-rows, 0))
	now := m.clock()
	for i := m.offset; i < min(n, m.offset+rows); i++ {
		lines = append(lines, m.fleetRow(m.hostAt(i), cols, w, now, i == m.cursor))
	}
	return m.glyphs.block(lines, w, h)
}

type fleetCols struct {
	name, rel, phase, health, host, age, prog int
	// traffic is the width of REQ/S and ERR% (0: the source has no per-host figures).
	traffic int
	// slot is the width of SLOT (0: not a blue/green or A/B run).
	slot  int
	slots map[string]engine.Slot
}

func (m *Model) fleetCols(w int) fleetCols {
	relW := max(len(m.snap.Info.Release), len(m.snap.Info.Previous), 7)
	c := fleetCols{name: m.nameWidth, rel: min(relW, 16), phase: 12, health: 6, age: 6}
	fixed := 2 + c.name + 1 + c.rel + 1 + c.phase + 1 + c.health + 1 + c.age + 1
	if m.hostStates != nil {
		c.host = 9 // the host's own state (a lab container: up, paused, killed, offline, slow-net)
		fixed += c.host + 1
	}
	if m.live != nil && len(m.live.Hosts) > 0 {
		c.traffic = 6
		fixed += 2 * (c.traffic + 1)
	}
	if c.slots = m.hostSlots(); c.slots != nil {
		c.slot = 11 // green+blue
		fixed += c.slot + 1
	}
	c.prog = w - fixed
	if c.prog < 8 {
		c.prog = 0
	}
	return c
}

func (m *Model) fleetHeader(c fleetCols) string {
	s := "  " + m.glyphs.fit("HOST", c.name) + " " + m.glyphs.fit("RELEASE", c.rel) + " " + m.glyphs.fit("PHASE", c.phase) + " " +
		m.glyphs.fit("HEALTH", c.health) + " "
	if c.host > 0 {
		s += m.glyphs.fit("CONTAINER", c.host) + " "
	}
	if c.traffic > 0 {
		s += m.glyphs.fit(" REQ/S", c.traffic) + " " + m.glyphs.fit("  ERR%", c.traffic) + " "
	}
	if c.slot > 0 {
		s += m.glyphs.fit("SLOT", c.slot) + " "
	}
	s += m.glyphs.fit("TIME", c.age) + " "
	if c.prog > 0 {
		s += "PROGRESS"
	}
	return s
}

func (m *Model) fleetRow(hs *engine.HostState, c fleetCols, w int, now time.Time, selected bool) string {
	g := &m.glyphs
	glyph, lv := g.phase(hs.Phase)
	phase := string(hs.Phase)
	if m.untouched(hs) {
		glyph, lv, phase = g.none, lvMuted, "unchanged"
	}
	cursor := "  "
	if selected {
		cursor = g.cursor + " "
	}
	rel := orNone(hs.Current, "-")
	hw, hl := m.health(hs)
	age := fmtAge(now.Sub(hs.Since))
	prog, pl := m.progress(hs, c.prog)
	hostSt, hostLv := m.hostState(hs.Name)
	if selected && m.focus == paneFleet {
		row := cursor + m.glyphs.fit(hs.Name, c.name) + " " + m.glyphs.fit(rel, c.rel) + " " +
			m.glyphs.fit(glyph+" "+phase, c.phase) + " " + m.glyphs.fit(hw, c.health) + " "
		if c.host > 0 {
			row += m.glyphs.fit(hostSt, c.host) + " "
		}
		if c.traffic > 0 {
			rps, errp, _ := m.hostTraffic(hs.Name, c.traffic)
			row += rps + " " + errp + " "
		}
		if c.slot > 0 {
			slot, _ := m.slotText(hs, c.slots)
			row += m.glyphs.fit(slot, c.slot) + " "
		}
		row += m.glyphs.fit(age, c.age) + " " + ansi.Strip(prog)
		return m.style.sel.Render(m.glyphs.fit(row, w))
	}
	relSt := m.style.text
	if hs.Current != "" && hs.Current == m.snap.Info.Release {
		relSt = m.style.accent
	}
	var b strings.Builder
	b.WriteString(cursor)
	b.WriteString(m.glyphs.fit(hs.Name, c.name))
	b.WriteByte(' ')
	b.WriteString(relSt.Render(m.glyphs.fit(rel, c.rel)))
	b.WriteByte(' ')
	b.WriteString(m.style.of(lv).Render(m.glyphs.fit(glyph+" "+phase, c.phase)))
	b.WriteByte(' ')
	b.WriteString(m.style.of(hl).Render(m.glyphs.fit(hw, c.health)))
	b.WriteByte(' ')
	if c.host > 0 {
		b.WriteString(m.style.of(hostLv).Render(m.glyphs.fit(hostSt, c.host)))
		b.WriteByte(' ')
	}
	if c.traffic > 0 {
		rps, errp, el := m.hostTraffic(hs.Name, c.traffic)
		b.WriteString(m.style.muted.Render(rps))
		b.WriteByte(' ')
		b.WriteString(m.style.of(el).Render(errp))
		b.WriteByte(' ')
	}
	if c.slot > 0 {
		slot, sl := m.slotText(hs, c.slots)
		b.WriteString(m.style.of(sl).Render(m.glyphs.fit(slot, c.slot)))
		b.WriteByte(' ')
	}
	b.WriteString(m.style.muted.Render(m.glyphs.fit(age, c.age)))
	b.WriteByte(' ')
	if pl != lvNone {
		prog = m.style.of(pl).Render(prog)
	}
	b.WriteString(prog)
	return m.glyphs.fit(b.String(), w)
}

// untouched reports a host a finished run never switched, left in a
// phase of the run's first half (queued, prepared): it serves the release
// it had, so the fleet says "unchanged" rather than "prepared".
func (m *Model) untouched(hs *engine.HostState) bool {
	return m.snap.Status == engine.StatusFinished && !hs.Touched &&
		(hs.Phase == engine.PhasePrepared || hs.Phase == engine.PhaseQueued || hs.Phase == engine.PhasePreparing ||
			hs.Phase == engine.PhaseSkipped)
}

// hostState is the host's own state from a HostStater backend: "up" is
// fine, anything else (paused, killed, offline, slow-net …) a fault.
func (m *Model) hostState(name string) (string, level) {
	st, ok := m.hostStates[name]
	switch {
	case !ok:
		return "", lvNone
	case st == "up":
		return st, lvOK
	case st == "slow-net":
		return st, lvWarn
	}
	return st, lvBreach
}

// hostTraffic is a host's latest request rate and error rate from the
// live sampler, right-aligned in w cells, and the error rate's level.
func (m *Model) hostTraffic(name string, w int) (rps, errp string, l level) {
	r, ok := m.live.Hosts[name]
	if !ok || r.NoData {
		return fmt.Sprintf("%*s", w, "0"), fmt.Sprintf("%*s", w, m.glyphs.none), lvMuted
	}
	l = lvOK
	if !m.opts.SLO.None {
		l = classify(r.ErrorRate, m.opts.SLO.ErrorRate)
	}
	return fmt.Sprintf("%*s", w, trimRate(r.RPS)), fmt.Sprintf("%*s", w, fmt.Sprintf("%.1f%%", r.ErrorRate*100)), l
}

func trimRate(r float64) string {
	if r < 10 {
		return fmt.Sprintf("%.1f", r)
	}
	return fmt.Sprintf("%.0f", r)
}

// health is a host's health as a glyph and word; a dash when the plan
// configures no health check (nothing checked the host).
func (m *Model) health(hs *engine.HostState) (string, level) {
	g := &m.glyphs
	if m.opts.NoHealthCheck && hs.Phase != engine.PhaseFailed {
		if g.ascii {
			return "-", lvMuted
		}
		return "–", lvMuted
	}
	switch hs.Phase {
	case engine.PhaseLive:
		return g.ok + " up", lvOK
	case engine.PhaseHealth, engine.PhaseRestart:
		return g.warn + " wait", lvWarn
	case engine.PhaseFailed:
		return g.breach + " fail", lvBreach
	case engine.PhaseReverted:
		return g.ok + " rev", lvWarn
	}
	return "", lvNone
}

// progress is the prepare progress bar with files and bytes, or the
// host's error.
func (m *Model) progress(hs *engine.HostState, w int) (string, level) {
	if w <= 0 {
		return "", lvNone
	}
	if hs.Err != "" {
		// The cause leads ("connection refused"), then where: a cut error
		// never shows only the start of a path.
		return m.glyphs.cut(m.causeText(hs.Err), w), lvBreach
	}
	p := hs.Progress
	if hs.Phase != engine.PhasePreparing || p.FilesTotal == 0 || m.untouched(hs) {
		return "", lvNone
	}
	text := fmt.Sprintf(" %d/%d files %s/%s", p.FilesDone, p.FilesTotal, fmtBytes(p.BytesDone), fmtBytes(p.BytesTotal))
	barW := min(16, w-ansi.StringWidth(text))
	if barW < 4 {
		return m.glyphs.cut(strings.TrimSpace(text), w), lvInfo
	}
	frac := 0.0
	if p.BytesTotal > 0 {
		frac = float64(p.BytesDone) / float64(p.BytesTotal)
	} else {
		frac = float64(p.FilesDone) / float64(p.FilesTotal)
	}
	full := clampInt(int(frac*float64(barW)+0.5), 0, barW)
	return strings.Repeat(m.glyphs.barFull, full) + strings.Repeat(m.glyphs.barEmpty, barW-full) + text, lvInfo
}

// fmtAge is a short duration (describe.Age: 42s, 3m05s, 2h10m).
func fmtAge(d time.Duration) string { return describe.Age(d) }

func fmtBytes(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%dB", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1fK", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1fG", float64(n)/(1<<30))
}
