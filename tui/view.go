package tui

import (
	"fmt"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"flightdeck/engine"
)

// viewCache keeps rendered pieces that did not change.
type viewCache struct {
	frameKey cacheKey
	frame    string
	slo, ck  cachedLines
	hdr      cachedLines
	evs      cachedLines
	fleet    cachedLines
}

type cacheKey struct {
	state, ui uint64
	w, h      int
	sec       int64
	extra     int
}

type cachedLines struct {
	key   cacheKey
	ok    bool
	lines []string
}

func (c *cachedLines) get(k cacheKey, render func() []string) []string {
	if !c.ok || c.key != k {
		c.lines, c.key, c.ok = render(), k, true
	}
	return c.lines
}

// View renders the cockpit. Unchanged frames and panes come from a cache,
// so View is cheap when nothing changed.
func (m *Model) View() tea.View {
	v := tea.NewView(m.Render())
	v.AltScreen = !m.o.NoAltScreen
	v.WindowTitle = "flightdeck " + m.appEnv()
	return v
}

// Render returns the cockpit's screen as text with ANSI styles: exactly
// the window's height in lines, none wider than the window.
func (m *Model) Render() string {
	k := cacheKey{state: m.stateVer, ui: m.uiVer, w: m.w, h: m.h, sec: m.clock().Unix()}
	if k == m.cache.frameKey && m.cache.frame != "" {
		return m.cache.frame
	}
	m.cache.frameKey = k
	m.cache.frame = m.frame()
	return m.cache.frame
}

// clock is the time shown: now, or the end of a finished run (so that a
// finished run's times stand still).
func (m *Model) clock() time.Time {
	if m.snap.Status == engine.StatusFinished && !m.snap.Finished.IsZero() {
		return m.snap.Finished
	}
	return m.now()
}

func (m *Model) frame() string {
	w, h := max(m.w, 20), max(m.h, 4)
	lines := make([]string, 0, h)
	lines = append(lines, m.header(w)...)
	bodyH := h - 3
	lines = append(lines, m.body(w, bodyH)...)
	lines = append(lines, m.g.fit(m.statusLine(w), w), m.g.fit(m.keyBar(w), w))
	return strings.Join(lines, "\n")
}

func (m *Model) appEnv() string {
	return orNone(m.snap.Info.App, m.o.App) + "/" + orNone(m.snap.Info.Env, m.o.Env)
}

// ---------------------------------------------------------------- header

func (m *Model) header(w int) []string {
	k := cacheKey{state: m.stateVer, w: w, sec: m.clock().Unix()}
	return m.cache.hdr.get(k, func() []string {
		return []string{m.st.header.Render(m.g.fit(m.headerText(w), w))}
	})
}

// runState is the run's state as a glyph, a word and a level.
func (m *Model) runState() (string, level) {
	st, g := m.snap, &m.g
	switch st.Status {
	case engine.StatusRunning:
		return g.running + " RUNNING", lvInfo
	case engine.StatusPaused:
		return g.paused + " PAUSED by " + orNone(st.PausedBy, "?"), lvWarn
	case engine.StatusRollingBack:
		word := "ROLLING BACK"
		if st.Aborted {
			word = "ABORTING"
		}
		return g.rolling + " " + word + " by " + orNone(st.RollbackBy, "?"), lvBreach
	case engine.StatusFinished:
		switch {
		case st.Outcome == engine.OutcomeSucceeded && st.Info.Kind == engine.KindRollback:
			return g.ok + " ROLLED BACK to " + st.Info.Release + " by " + orNone(st.RollbackBy, "?"), lvWarn
		case st.Outcome == engine.OutcomeSucceeded:
			return g.ok + " SUCCEEDED", lvOK
		case st.Outcome == engine.OutcomeRolledBack:
			return g.breach + " ROLLED BACK by " + orNone(st.RollbackBy, "?"), lvBreach
		case st.Outcome == engine.OutcomeAborted:
			return g.breach + " ABORTED by " + orNone(st.RollbackBy, "?"), lvBreach
		default:
			return g.breach + " " + strings.ToUpper(string(st.Outcome)), lvBreach
		}
	}
	return g.none + " IDLE (no run)", lvMuted
}

func (m *Model) headerText(w int) string {
	st, g := m.snap, &m.g
	state, lv := m.runState()
	parts := []string{
		m.st.title.Render("flightdeck") + " " + m.st.bold.Render(m.appEnv()),
		m.st.of(lv).Bold(true).Render(state),
	}
	if st.Info.Strategy != "" {
		parts = append(parts, st.Info.Strategy)
	}
	if st.Info.Release != "" {
		if st.Info.Kind == engine.KindRollback {
			parts = append(parts, "rollback "+g.arrow+" "+st.Info.Release)
		} else {
			parts = append(parts, orNone(st.Info.Previous, "(none)")+" "+g.arrow+" "+m.st.accent.Render(st.Info.Release))
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
		parts = append(parts, m.st.warn.Bold(true).Render(fmt.Sprintf("promotion proposed by %s: A approves", p.By)))
	}
	if m.o.ReadOnly {
		parts = append(parts, m.st.warn.Render("read-only"))
	}
	left := strings.Join(parts, m.st.muted.Render(g.sep))
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
	st, g := m.snap, &m.g
	if st.Info.Kind != engine.KindDeploy {
		return ""
	}
	mark := func(status engine.RuleStatus) string {
		switch status {
		case "ok", "n/a":
			return m.st.ok.Render(g.ok)
		case "overridden":
			return m.st.warn.Render("!")
		case "failed":
			return m.st.breach.Render(g.breach)
		}
		return m.st.muted.Render(g.none)
	}
	auto, manual := st.Rule2()
	two := ""
	for _, v := range []bool{auto, manual} {
		if v {
			two += m.st.ok.Render(g.ok)
		} else {
			two += m.st.muted.Render(g.none)
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
	return m.st.muted.Render("on: ") + strings.Join(names, " ")
}

// ---------------------------------------------------------------- body

func (m *Model) body(w, h int) []string {
	if h <= 0 {
		return nil
	}
	switch m.overlay {
	case overlayHelp:
		return m.helpView(w, h)
	case overlayDetails:
		return m.detailsView(w, h)
	}
	lines := m.panes(w, h)
	if m.overlay == overlayConfirm && m.confirm != nil {
		lines = m.overlayDialog(lines, w, h)
	}
	return lines
}

func (m *Model) panes(w, h int) []string {
	out := make([]string, 0, h)
	sep := m.st.border.Render(m.g.vsep)
	switch {
	case w >= 120 && h >= 18:
		evH := max(h*3/10, 4)
		topH := h - evH
		fleetW := w * 55 / 100
		rightW := w - fleetW - 1
		sloH := topH * 55 / 100
		fleet := m.fleetPane(fleetW, topH)
		right := append(m.sloPane(rightW, sloH), m.checklistPane(rightW, topH-sloH)...)
		for i := range topH {
			out = append(out, fleet[i]+sep+right[i])
		}
		out = append(out, m.eventsPane(w, evH)...)
	case w >= 60 && h >= 12:
		fleetH := max(h*4/10, 3)
		evH := max(h*3/10, 3)
		midH := h - fleetH - evH
		out = append(out, m.fleetPane(w, fleetH)...)
		lw := w / 2
		rw := w - lw - 1
		slo, ck := m.sloPane(lw, midH), m.checklistPane(rw, midH)
		for i := range midH {
			out = append(out, slo[i]+sep+ck[i])
		}
		out = append(out, m.eventsPane(w, evH)...)
	default:
		// Too small for panes side by side: the focused pane takes the body.
		switch m.focus {
		case paneSLO:
			out = m.sloPane(w, h)
		case paneChecklist:
			out = m.checklistPane(w, h)
		case paneEvents:
			out = m.eventsPane(w, h)
		default:
			out = m.fleetPane(w, h)
		}
	}
	return out
}

// titleLine draws a pane's title rule.
func (m *Model) titleLine(p pane, name, extra string, w int) string {
	st := m.st.border
	nameSt := m.st.bold
	if m.focus == p && m.overlay == overlayNone {
		st, nameSt = m.st.focus, m.st.focus
	}
	s := st.Render(m.g.rule+" ") + nameSt.Render(name)
	if extra != "" {
		s += " " + m.st.muted.Render(extra)
	}
	s += " "
	if rest := w - ansi.StringWidth(s); rest > 0 {
		s += st.Render(strings.Repeat(m.g.rule, rest))
	}
	return m.g.fit(s, w)
}

// block pads lines to exactly h lines of width w.
func (g *glyphs) block(lines []string, w, h int) []string {
	out := make([]string, h)
	for i := range h {
		if i < len(lines) {
			out[i] = g.fit(lines[i], w)
		} else {
			out[i] = strings.Repeat(" ", w)
		}
	}
	return out
}

// ---------------------------------------------------------------- fleet

func (m *Model) fleetPane(w, h int) []string {
	k := cacheKey{state: m.stateVer, ui: m.uiVer, w: w, h: h, sec: m.clock().Unix()}
	return m.cache.fleet.get(k, func() []string { return m.renderFleet(w, h) })
}

func (m *Model) renderFleet(w, h int) []string {
	n := m.fleetLen()
	extra := fmt.Sprintf("%d hosts", len(m.snap.Hosts))
	if m.filter != "" || m.filterOn {
		extra = fmt.Sprintf("%d of %d hosts%sfilter /%s", n, len(m.snap.Hosts), m.g.sep, m.filter)
	}
	if m.fleetLen() > 0 {
		extra += fmt.Sprintf("%s%d/%d", m.g.sep, m.cursor+1, n)
	}
	lines := []string{m.titleLine(paneFleet, "Fleet", extra, w)}
	rows := h - 1
	cols := m.fleetCols(w)
	if rows >= 8 {
		lines = append(lines, m.st.muted.Render(m.g.fit(m.fleetHeader(cols), w)))
		rows--
	}
	m.fleetH = rows
	if n == 0 {
		msg := "no hosts yet: waiting for a run"
		if m.filter != "" {
			msg = "no host matches /" + m.filter
		}
		lines = append(lines, m.st.muted.Render("  "+msg))
		return m.g.block(lines, w, h)
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
	return m.g.block(lines, w, h)
}

type fleetCols struct {
	name, rel, phase, health, host, age, prog int
}

func (m *Model) fleetCols(w int) fleetCols {
	relW := max(len(m.snap.Info.Release), len(m.snap.Info.Previous), 7)
	c := fleetCols{name: m.nameW, rel: min(relW, 16), phase: 12, health: 6, age: 6}
	fixed := 2 + c.name + 1 + c.rel + 1 + c.phase + 1 + c.health + 1 + c.age + 1
	if m.hostSt != nil {
		c.host = 9 // the host's own state (a lab container: up, paused, killed, offline, slow-net)
		fixed += c.host + 1
	}
	c.prog = w - fixed
	if c.prog < 8 {
		c.prog = 0
	}
	return c
}

func (m *Model) fleetHeader(c fleetCols) string {
	s := "  " + m.g.fit("HOST", c.name) + " " + m.g.fit("RELEASE", c.rel) + " " + m.g.fit("PHASE", c.phase) + " " +
		m.g.fit("HEALTH", c.health) + " "
	if c.host > 0 {
		s += m.g.fit("CONTAINER", c.host) + " "
	}
	s += m.g.fit("TIME", c.age) + " "
	if c.prog > 0 {
		s += "PROGRESS"
	}
	return s
}

func (m *Model) fleetRow(hs *engine.HostState, c fleetCols, w int, now time.Time, selected bool) string {
	g := &m.g
	glyph, lv := g.phase(hs.Phase)
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
		row := cursor + m.g.fit(hs.Name, c.name) + " " + m.g.fit(rel, c.rel) + " " +
			m.g.fit(glyph+" "+string(hs.Phase), c.phase) + " " + m.g.fit(hw, c.health) + " "
		if c.host > 0 {
			row += m.g.fit(hostSt, c.host) + " "
		}
		row += m.g.fit(age, c.age) + " " + ansi.Strip(prog)
		return m.st.sel.Render(m.g.fit(row, w))
	}
	relSt := m.st.text
	if hs.Current != "" && hs.Current == m.snap.Info.Release {
		relSt = m.st.accent
	}
	var b strings.Builder
	b.WriteString(cursor)
	b.WriteString(m.g.fit(hs.Name, c.name))
	b.WriteByte(' ')
	b.WriteString(relSt.Render(m.g.fit(rel, c.rel)))
	b.WriteByte(' ')
	b.WriteString(m.st.of(lv).Render(m.g.fit(glyph+" "+string(hs.Phase), c.phase)))
	b.WriteByte(' ')
	b.WriteString(m.st.of(hl).Render(m.g.fit(hw, c.health)))
	b.WriteByte(' ')
	if c.host > 0 {
		b.WriteString(m.st.of(hostLv).Render(m.g.fit(hostSt, c.host)))
		b.WriteByte(' ')
	}
	b.WriteString(m.st.muted.Render(m.g.fit(age, c.age)))
	b.WriteByte(' ')
	if pl != lvNone {
		prog = m.st.of(pl).Render(prog)
	}
	b.WriteString(prog)
	return m.g.fit(b.String(), w)
}

// hostState is the host's own state from a HostStater backend: "up" is
// fine, anything else (paused, killed, offline, slow-net …) a fault.
func (m *Model) hostState(name string) (string, level) {
	st, ok := m.hostSt[name]
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

// health is a host's health as a glyph and word.
func (m *Model) health(hs *engine.HostState) (string, level) {
	g := &m.g
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
		return m.g.cut(hs.Err, w), lvBreach
	}
	p := hs.Progress
	if hs.Phase != engine.PhasePreparing || p.FilesTotal == 0 {
		return "", lvNone
	}
	text := fmt.Sprintf(" %d/%d files %s/%s", p.FilesDone, p.FilesTotal, fmtBytes(p.BytesDone), fmtBytes(p.BytesTotal))
	barW := min(16, w-ansi.StringWidth(text))
	if barW < 4 {
		return m.g.cut(strings.TrimSpace(text), w), lvInfo
	}
	frac := 0.0
	if p.BytesTotal > 0 {
		frac = float64(p.BytesDone) / float64(p.BytesTotal)
	} else {
		frac = float64(p.FilesDone) / float64(p.FilesTotal)
	}
	full := clampInt(int(frac*float64(barW)+0.5), 0, barW)
	return strings.Repeat(m.g.barFull, full) + strings.Repeat(m.g.barEmpty, barW-full) + text, lvInfo
}

func fmtAge(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

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

// ---------------------------------------------------------------- SLO

func (m *Model) sloPane(w, h int) []string {
	focus := 0
	if m.focus == paneSLO && m.overlay == overlayNone {
		focus = 1
	}
	k := cacheKey{state: m.stateVer, w: w, h: h, sec: m.clock().Unix(), extra: focus}
	return m.cache.slo.get(k, func() []string { return m.renderSLO(w, h) })
}

type series struct {
	release string
	ms      []engine.Measurement
}

// seriesByRelease groups samples per release: the previous release first,
// then the new one, then any other.
func (m *Model) seriesByRelease() []series {
	var out []series
	idx := map[string]int{}
	add := func(rel string) {
		if _, ok := idx[rel]; !ok && rel != "" {
			idx[rel] = len(out)
			out = append(out, series{release: rel})
		}
	}
	add(m.snap.Info.Previous)
	add(m.snap.Info.Release)
	for _, s := range m.snap.Samples {
		add(s.Release)
		i := idx[s.Release]
		out[i].ms = append(out[i].ms, s)
	}
	// Releases without samples are dropped unless there are no samples at all.
	kept := out[:0]
	for _, s := range out {
		if len(s.ms) > 0 {
			kept = append(kept, s)
		}
	}
	return kept
}

func (m *Model) renderSLO(w, h int) []string {
	thr := m.o.SLO
	extra := fmt.Sprintf("limits: errors %s, p99 %s", fmtPct(thr.ErrorRate), fmtMs(thr.P99))
	lines := []string{m.titleLine(paneSLO, "SLO", extra, w)}
	lines = append(lines, m.sloStatus())
	ser := m.seriesByRelease()
	if len(ser) == 0 {
		lines = append(lines, m.st.muted.Render("  no measurements in this run"))
		return m.g.block(lines, w, h)
	}
	room := h - len(lines)
	withReq := room >= 3*len(ser)
	relW := 4
	for _, s := range ser {
		relW = max(relW, min(len(s.release), 12))
	}
	// release(relW) metric(4) spark value(8) verdict(9)
	sw := clampInt(w-(relW+1+4+1+1+8+1+9), 4, 240)
	for _, s := range ser {
		errs := make([]float64, len(s.ms))
		p99s := make([]float64, len(s.ms))
		reqs := make([]float64, len(s.ms))
		maxReq := 1.0
		for i, x := range s.ms {
			errs[i], p99s[i], reqs[i] = x.ErrorRate, x.P99.Seconds(), x.Requests
			maxReq = max(maxReq, x.Requests)
		}
		last := s.ms[len(s.ms)-1]
		errL := classify(last.ErrorRate, thr.ErrorRate)
		p99L := classify(last.P99.Seconds(), thr.P99.Seconds())
		if last.NoData {
			errL, p99L = lvNone, lvNone
		}
		relSt := m.st.bold
		if s.release == m.snap.Info.Release {
			relSt = m.st.accent.Bold(true)
		}
		name := relSt.Render(m.g.fit(m.g.cut(s.release, relW), relW))
		blank := strings.Repeat(" ", relW)
		lines = append(lines,
			m.sloRow(name, "err", m.sparkline(errs, 2*thr.ErrorRate, sw, func(v float64) level { return classify(v, thr.ErrorRate) }),
				fmtPct(last.ErrorRate), errL, last.NoData),
			m.sloRow(blank, "p99", m.sparkline(p99s, 2*thr.P99.Seconds(), sw, func(v float64) level { return classify(v, thr.P99.Seconds()) }),
				fmtMs(last.P99), p99L, last.NoData))
		if withReq {
			lines = append(lines, m.sloRow(blank, "req", m.sparkline(reqs, maxReq, sw, func(float64) level { return lvInfo }),
				fmt.Sprintf("%.0f", last.Requests), lvNone, false))
		}
	}
	return m.g.block(lines, w, h)
}

func (m *Model) sloRow(name, metric, spark, value string, l level, noData bool) string {
	verdict := ""
	switch {
	case noData:
		verdict = m.st.muted.Render(m.g.none + " no data")
	case l != lvNone:
		g, word := m.g.levelGlyph(l), levelWord(l)
		if g != word {
			word = g + " " + word
		}
		verdict = m.st.of(l).Render(word)
	}
	return name + " " + m.st.muted.Render(m.g.fit(metric, 4)) + " " + spark + " " + m.g.fit(value, 8) + " " + verdict
}

func levelWord(l level) string {
	switch l {
	case lvOK:
		return "ok"
	case lvWarn:
		return "warn"
	case lvBreach:
		return "breach"
	}
	return ""
}

// classify rates v against a limit: above it is a breach, above 80 % of
// it a warning.
func classify(v, limit float64) level {
	switch {
	case v > limit:
		return lvBreach
	case v >= 0.8*limit:
		return lvWarn
	}
	return lvOK
}

// sloStatus is the countdown to the next step, gate or wave and the last
// gate verdict.
func (m *Model) sloStatus() string {
	st := m.snap
	var parts []string
	if st.Active() && st.WaitUntil.After(m.now()) {
		what := "next wave"
		if st.Info.Strategy == "canary" {
			what = "next step"
		}
		if st.Status == engine.StatusPaused {
			what += " (paused)"
		}
		parts = append(parts, m.st.accent.Render(fmt.Sprintf("%s in %s", what, fmtAge(st.WaitUntil.Sub(m.now()).Round(time.Second)))))
	}
	if n := len(st.Gates); n > 0 {
		gr := st.Gates[n-1]
		l := lvWarn
		switch gr.Verdict {
		case engine.VerdictPass:
			l = lvOK
		case engine.VerdictFail:
			l = lvBreach
		}
		parts = append(parts, m.st.of(l).Render(fmt.Sprintf("gate step %d: %s %s", gr.Step, m.g.levelGlyph(l), strings.ToUpper(string(gr.Verdict))))+
			m.st.muted.Render(" "+gr.Reason))
	}
	if len(parts) == 0 {
		return m.st.muted.Render("  no gate pending")
	}
	return "  " + strings.Join(parts, m.st.muted.Render(m.g.sep))
}

func fmtPct(f float64) string { return fmt.Sprintf("%.2f%%", f*100) }

func fmtMs(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%dms", d.Milliseconds())
}

// ---------------------------------------------------------------- checklist

func (m *Model) checklistPane(w, h int) []string {
	focus := 0
	if m.focus == paneChecklist && m.overlay == overlayNone {
		focus = 1
	}
	k := cacheKey{state: m.stateVer, w: w, h: h, extra: focus<<20 | m.ckCursor}
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
		lines = append(lines, m.st.muted.Render("  no checklist in this run"))
		return m.g.block(lines, w, h)
	}
	rows := h - 1
	cur := clampInt(m.ckCursor, 0, len(cl)-1)
	off := max(0, cur-rows+1)
	for i := off; i < min(len(cl), off+rows); i++ {
		it := cl[i]
		l, word := m.checklistLevel(it)
		glyph := m.g.levelGlyph(l)
		if l == lvMuted {
			glyph = m.g.none
		}
		cursor := "  "
		if i == cur {
			cursor = m.g.cursor + " "
		}
		ev := ""
		if it.Evidence != "" {
			ev = " " + m.g.sep[1:] + it.Evidence
		}
		if i == cur && focused {
			lines = append(lines, m.st.sel.Render(m.g.fit(cursor+glyph+" "+it.Title+" "+m.g.dash+" "+word+ev, w)))
			continue
		}
		lines = append(lines, cursor+m.st.of(l).Render(glyph+" ")+it.Title+" "+m.st.of(l).Render(m.g.dash+" "+word)+m.st.muted.Render(ev))
	}
	return m.g.block(lines, w, h)
}

// ---------------------------------------------------------------- events

func (m *Model) eventsPane(w, h int) []string {
	focus := 0
	if m.focus == paneEvents && m.overlay == overlayNone {
		focus = 1
	}
	k := cacheKey{state: m.stateVer, w: w, h: h, extra: focus<<20 | m.evOff}
	return m.cache.evs.get(k, func() []string { return m.renderEvents(w, h) })
}

func (m *Model) renderEvents(w, h int) []string {
	extra := fmt.Sprintf("%d", len(m.log))
	if m.evOff > 0 {
		extra += fmt.Sprintf("%sscrolled %d up", m.g.sep, m.evOff)
	}
	if m.lost > 0 {
		extra += fmt.Sprintf("%s%d not shown (fell behind)", m.g.sep, m.lost)
	}
	lines := []string{m.titleLine(paneEvents, "Events", extra, w)}
	rows := h - 1
	end := len(m.log) - clampInt(m.evOff, 0, len(m.log))
	start := max(0, end-rows)
	for _, e := range m.log[start:end] {
		text, l := m.eventText(e)
		ts := m.st.muted.Render(e.Time.In(m.o.Location).Format("15:04:05"))
		lines = append(lines, ts+" "+m.st.of(l).Render(text))
	}
	return m.g.block(lines, w, h)
}

// eventText renders an event as one compact line and a level.
func (m *Model) eventText(e engine.Event) (string, level) {
	by := ""
	if e.Actor != "" {
		by = " by " + e.Actor
	}
	host := ""
	if e.Host != "" {
		host = "[" + e.Host + "] "
	}
	arrow := m.g.arrow
	switch e.Type {
	case engine.EvRunStarted:
		s := e.Start
		if s == nil {
			return "run started", lvNone
		}
		if s.Kind == engine.KindRollback {
			return fmt.Sprintf("rollback to %s started%s (%d hosts)", s.Release, by, len(s.Hosts)), lvWarn
		}
		return fmt.Sprintf("deploy %s %s %s started%s: %s, %d hosts, %d waves", orNone(s.Previous, "(none)"), arrow, s.Release, by, s.Strategy, len(s.Hosts), len(s.Waves)), lvInfo
	case engine.EvHostPhase:
		s := host + string(e.Phase)
		if e.Release != "" {
			s += " " + e.Release
		}
		if e.Message != "" {
			s += ": " + e.Message
		}
		if e.Error != "" {
			s += ": " + e.Error
		}
		_, l := m.g.phase(e.Phase)
		if l == lvInfo || l == lvMuted {
			l = lvNone
		}
		return s, l
	case engine.EvHostOutput:
		return host + e.Command + "| " + e.Message, lvMuted
	case engine.EvHostObserved:
		return host + "current " + arrow + " " + orNone(e.Release, "(none)"), lvMuted
	case engine.EvWaveDone:
		return fmt.Sprintf("wave %d done", e.Wave), lvNone
	case engine.EvPaused:
		return "PAUSED" + by, lvWarn
	case engine.EvResumed:
		return "resumed" + by, lvNone
	case engine.EvCommand:
		s := e.Command + by
		if e.Target != "" {
			s += " (to " + e.Target + ")"
		}
		return s, lvMuted
	case engine.EvCommandRefused:
		return fmt.Sprintf("refused %s%s: %s", e.Command, by, e.Error), lvBreach
	case engine.EvRollbackStart:
		what := "rollback"
		if e.Command == string(engine.CmdAbort) {
			what = "abort"
		}
		return fmt.Sprintf("%s%s to %s: %s", strings.ToUpper(what), by, orNone(e.Target, "each host's previous release"), e.Message), lvBreach
	case engine.EvRolledBack:
		return e.Message, lvWarn
	case engine.EvWeightSet:
		if e.Weight != nil {
			return fmt.Sprintf("weight %g%% %s %s%s", *e.Weight, arrow, e.Release, by), lvInfo
		}
	case engine.EvStepStarted:
		if e.Weight != nil {
			return fmt.Sprintf("step %d: %g%% to %s%s", e.Wave, *e.Weight, e.Release, by), lvInfo
		}
	case engine.EvCohortSet:
		if e.Weight != nil {
			return fmt.Sprintf("cohort %g%% %s %s%s", *e.Weight, arrow, e.Release, by), lvInfo
		}
	case engine.EvGateResult:
		if g := e.Gate; g != nil {
			l := lvWarn
			if g.Verdict == engine.VerdictPass {
				l = lvOK
			} else if g.Verdict == engine.VerdictFail {
				l = lvBreach
			}
			return fmt.Sprintf("gate step %d: %s (%s)", g.Step, strings.ToUpper(string(g.Verdict)), g.Reason), l
		}
	case engine.EvChecklistItem:
		if it := e.Item; it != nil {
			s := "checklist " + it.Title + ": " + string(it.State)
			if it.AckBy != "" {
				s += " by " + it.AckBy
			}
			return s, lvNone
		}
	case engine.EvPruned:
		return host + "pruned " + strings.Join(e.Removed, ", "), lvMuted
	case engine.EvNotice:
		return host + e.Message + e.Error, lvWarn
	case engine.EvReport:
		if e.Report != nil {
			s := "report: " + e.Report.Verdict
			if e.Report.RTO > 0 {
				s += fmt.Sprintf(" (RTO %s)", e.Report.RTO.Round(time.Millisecond))
			}
			return s, lvNone
		}
	case engine.EvRunFinished:
		l := lvBreach
		if e.Outcome == engine.OutcomeSucceeded {
			l = lvOK
		}
		s := "run finished: " + strings.ToUpper(strings.ReplaceAll(string(e.Outcome), "_", " "))
		if e.Error != "" {
			s += " " + m.g.dash + " " + e.Error
		}
		return s, l
	}
	if e.Message != "" {
		return host + e.Message, lvNone
	}
	return host + string(e.Type), lvNone
}

// ---------------------------------------------------------------- status and keys

func (m *Model) statusLine(w int) string {
	switch {
	case m.filterOn:
		return m.st.accent.Render("/"+m.filter+m.g.caret) + m.st.muted.Render(fmt.Sprintf("  %d of %d hosts%senter keep%sesc clear", m.fleetLen(), len(m.snap.Hosts), m.g.sep, m.g.sep))
	case m.status != "" && m.statusErr:
		return m.st.breach.Render(m.g.breach + " " + m.status)
	case m.status != "":
		return m.st.text.Render(m.status)
	case m.snap.TrafficErr != "":
		return m.st.breach.Render(m.g.breach + " traffic: " + m.snap.TrafficErr)
	case m.snap.Report != nil && m.snap.Status == engine.StatusFinished:
		return m.st.bold.Render("verdict: " + m.snap.Report.Verdict)
	case m.snap.Err != "":
		return m.st.breach.Render(m.snap.Err)
	}
	return ""
}

type barItem struct {
	key, label, why string
	ok, danger      bool
}

func (m *Model) barItems() []barItem {
	var items []barItem
	for _, ai := range actionTable {
		if !ai.bar {
			continue
		}
		k := m.km.keyLabel(ai.act)
		if k == "" {
			continue
		}
		v := m.avail(ai.act)
		if v.hidden {
			continue
		}
		items = append(items, barItem{key: k, label: v.label, why: v.why, ok: v.ok, danger: ai.dangerous})
	}
	return items
}

func (m *Model) renderItem(it barItem) string {
	switch {
	case !it.ok:
		return m.st.muted.Render(it.key + " " + it.label + " (" + it.why + ")")
	case it.danger:
		return m.st.key.Render(it.key) + " " + m.st.danger.Render(it.label)
	}
	return m.st.key.Render(it.key) + " " + it.label
}

func (m *Model) keyBar(w int) string {
	var items []barItem
	switch m.overlay {
	case overlayConfirm:
		items = []barItem{{key: m.km.keyLabel(ActConfirm), label: m.confirm.yes, ok: true, danger: m.confirm.danger},
			{key: m.km.keyLabel(ActCancel), label: "cancel", ok: true}}
	case overlayHelp:
		items = []barItem{{key: m.km.keyLabel(ActHelp) + "/" + m.km.keyLabel(ActCancel), label: "close help", ok: true},
			{key: m.km.keyLabel(ActDown) + "/" + m.km.keyLabel(ActUp), label: "scroll", ok: true}}
	case overlayDetails:
		items = []barItem{{key: m.km.keyLabel(ActCancel), label: "close", ok: true},
			{key: m.km.keyLabel(ActDown) + "/" + m.km.keyLabel(ActUp), label: "scroll", ok: true}}
	default:
		items = m.barItems()
	}
	// The help and quit keys always stay visible at the end.
	var tail []barItem
	if m.overlay == overlayNone {
		rest := items[:0:0]
		for _, it := range items {
			if it.label == "help" || it.label == "quit" {
				tail = append(tail, it)
			} else {
				rest = append(rest, it)
			}
		}
		items = rest
	}
	sep := "  "
	tailStr := ""
	for _, it := range tail {
		tailStr += sep + m.renderItem(it)
	}
	room := w - ansi.StringWidth(tailStr)
	var b strings.Builder
	used := 0
	for i, it := range items {
		s := m.renderItem(it)
		sw := ansi.StringWidth(s)
		if i > 0 {
			sw += len(sep)
		}
		if used+sw > room {
			break
		}
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(s)
		used += sw
	}
	return b.String() + tailStr
}

// ---------------------------------------------------------------- overlays

func (m *Model) helpView(w, h int) []string {
	lines := []string{m.titleLine(paneFleet, "Keys", "disabled actions say why; "+m.g.breach+" marks destructive ones", w)}
	keyW := 16
	keysOf := func(a Action) string {
		if ks := m.km.Binding(a).Keys(); len(ks) > 0 {
			return strings.Join(ks, "/")
		}
		return "(unbound)"
	}
	var body []string
	for _, ai := range actionTable {
		switch ai.act {
		case ActUp, ActDown, ActPageUp, ActPageDown, ActConfirm, ActCancel:
			continue // listed together below
		}
		v := m.avail(ai.act)
		tag := ""
		switch {
		case v.hidden:
			tag = m.st.muted.Render("  (hidden: read-only)")
		case !v.ok:
			tag = m.st.muted.Render("  (now: " + v.why + ")")
		}
		mark := "  "
		if ai.dangerous {
			mark = m.st.danger.Render(m.g.breach) + " "
		}
		body = append(body, "  "+m.st.key.Render(m.g.fit(keysOf(ai.act), keyW))+" "+mark+ai.desc+tag)
	}
	body = append(body,
		"  "+m.st.key.Render(m.g.fit(keysOf(ActUp)+" "+keysOf(ActDown), keyW))+"   move; "+m.st.key.Render(keysOf(ActPageUp)+" "+keysOf(ActPageDown))+" page",
		"  "+m.st.key.Render(m.g.fit(keysOf(ActConfirm), keyW))+"   confirm a dialog; "+m.st.key.Render(keysOf(ActCancel))+" cancel, close, clear the filter",
		"  "+m.st.key.Render(m.g.fit("ctrl+c", keyW))+"   quit at once (always)",
		m.st.muted.Render("  Remap keys in $XDG_CONFIG_HOME/flightdeck/config.yaml, e.g. keys: {pause: [\"p\"]}"))
	off := clampInt(m.detOff, 0, max(len(body)-(h-1), 0))
	return m.g.block(append(lines, body[off:]...), w, h)
}

func (m *Model) detailsView(w, h int) []string {
	hs := m.snap.Host(m.details)
	lines := []string{m.titleLine(paneFleet, "Host "+m.details, "", w)}
	if hs == nil {
		lines = append(lines, m.st.muted.Render("  host not in this run"))
		return m.g.block(lines, w, h)
	}
	glyph, lv := m.g.phase(hs.Phase)
	now := m.clock()
	body := []string{
		fmt.Sprintf("  release %s (was %s)%sphase %s for %s%swave %d",
			orNone(hs.Current, "-"), orNone(hs.Previous, "-"), m.g.sep, m.st.of(lv).Render(glyph+" "+string(hs.Phase)), fmtAge(now.Sub(hs.Since)), m.g.sep, hs.Wave),
		fmt.Sprintf("  prepared %s%sswitched %s%sreverted %s%sreleases on host: %s",
			yesNo(hs.Prepared), m.g.sep, yesNo(hs.Switched), m.g.sep, yesNo(hs.Reverted), m.g.sep, orNone(strings.Join(hs.Releases, ", "), "-")),
	}
	if p := hs.Progress; p.FilesTotal > 0 {
		body = append(body, fmt.Sprintf("  files %d/%d%sbytes %s/%s%ssent %s", p.FilesDone, p.FilesTotal, m.g.sep,
			fmtBytes(p.BytesDone), fmtBytes(p.BytesTotal), m.g.sep, fmtBytes(p.BytesSent)))
	}
	if hs.Err != "" {
		body = append(body, m.st.breach.Render("  "+m.g.breach+" error: "+hs.Err))
	}
	body = append(body, "", m.st.bold.Render("  Phase history"))
	for _, pc := range hs.History {
		g, l := m.g.phase(pc.Phase)
		s := "  " + m.st.muted.Render(pc.Time.In(m.o.Location).Format("15:04:05.000")) + " " + m.st.of(l).Render(g+" "+string(pc.Phase))
		if pc.Note != "" {
			s += " " + pc.Note
		}
		body = append(body, s)
	}
	body = append(body, "", m.st.bold.Render("  Hook output and events"))
	evs := m.hostLog[hs.Name]
	if len(evs) == 0 {
		body = append(body, m.st.muted.Render("  (none received by this cockpit)"))
	}
	for _, e := range evs {
		text, l := m.eventText(e)
		body = append(body, "  "+m.st.muted.Render(e.Time.In(m.o.Location).Format("15:04:05"))+" "+m.st.of(l).Render(text))
	}
	off := clampInt(m.detOff, 0, max(len(body)-(h-1), 0))
	return m.g.block(append(lines, body[off:]...), w, h)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// overlayDialog draws the confirmation dialog over the middle of the panes.
func (m *Model) overlayDialog(under []string, w, h int) []string {
	c := m.confirm
	bw := min(w-2, 72)
	border := lipgloss.RoundedBorder()
	if m.g.ascii {
		border = lipgloss.ASCIIBorder()
	}
	bc := m.st.accent
	if c.danger {
		bc = m.st.danger
	}
	content := []string{m.st.bold.Render(c.title), ""}
	content = append(content, c.lines...)
	content = append(content, "", m.st.key.Render("["+m.km.keyLabel(ActConfirm)+"]")+" "+c.yes+"   "+
		m.st.key.Render("["+m.km.keyLabel(ActCancel)+"]")+" cancel")
	box := lipgloss.NewStyle().Border(border).BorderForeground(bc.GetForeground()).Padding(0, 1).Width(bw).
		Render(strings.Join(content, "\n"))
	boxLines := strings.Split(box, "\n")
	if len(boxLines) > h {
		boxLines = boxLines[:h]
	}
	top := (h - len(boxLines)) / 2
	left := (w - bw) / 2
	out := append([]string(nil), under...)
	for i, bl := range boxLines {
		row := top + i
		if row < 0 || row >= len(out) {
			continue
		}
		base := out[row]
		rightPart := ansi.TruncateLeft(base, left+ansi.StringWidth(bl), "")
		out[row] = m.g.fit(ansi.Truncate(base, left, "")+bl+rightPart, w)
	}
	return out
}
