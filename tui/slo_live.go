package tui

// The SLO pane's live figures: per release, requests/s, error rate and
// p99 sampled every second (engine/sampler), each a line as wide as the
// pane with the SLO limit drawn on it, the current value with its unit,
// and the gate verdicts marked on the same time axis.

import (
	"fmt"
	"strings"
	"time"

	"flightdeck/engine"
	"flightdeck/engine/sampler"
	"flightdeck/tui/describe"
)

// liveMetric is one line of a release: what it plots and its limit (0:
// none, the line scales to its own maximum).
type liveMetric struct {
	name  string
	value func(sampler.Point) float64
	limit float64
	// top, without a limit, is the scale shared by every release's line
	// (the candidate's share of the traffic shows); 0: the line's own maximum.
	top  float64
	text func(sampler.Point) string
}

func (m *Model) liveMetrics() []liveMetric {
	thr := m.opts.SLO
	errLimit, p99Limit := thr.ErrorRate, thr.P99.Seconds()
	if thr.None {
		errLimit, p99Limit = 0, 0
	}
	return []liveMetric{
		{name: "req", value: func(p sampler.Point) float64 { return p.RPS }, text: func(p sampler.Point) string { return fmtRate(p.RPS) }},
		{name: "err", value: func(p sampler.Point) float64 { return p.ErrorRate }, limit: errLimit, text: func(p sampler.Point) string { return fmtPct(p.ErrorRate) }},
		{name: "p99", value: func(p sampler.Point) float64 { return p.P99.Seconds() }, limit: p99Limit, text: func(p sampler.Point) string { return fmtMs(p.P99) }},
	}
}

func fmtRate(r float64) string {
	if r < 10 {
		return fmt.Sprintf("%.1f/s", r)
	}
	return fmt.Sprintf("%.0f/s", r)
}

// liveSeries orders the sampled releases: the previous (stable) release,
// the new one (candidate), then the others, newest last.
func (m *Model) liveSeries() []sampler.Series {
	var out []sampler.Series
	seen := map[string]bool{}
	add := func(rel string) {
		if seen[rel] {
			return
		}
		if s := m.live.Find(rel); s != nil {
			seen[rel] = true
			out = append(out, *s)
		}
	}
	add(m.snap.Info.Previous)
	add(m.snap.Info.Release)
	for i := len(m.live.Series) - 1; i >= 0; i-- {
		add(m.live.Series[i].Release)
	}
	return out
}

// samplesPerCell is how many samples one character cell holds: two in
// Braille (two dot columns), one in ASCII.
func (m *Model) samplesPerCell() int {
	if m.glyphs.ascii {
		return 1
	}
	return 2
}

func (m *Model) renderLive(lines []string, w, h int) []string {
	live := m.live
	ser := m.liveSeries()
	metrics := m.liveMetrics()
	room := h - len(lines)
	if len(ser) == 0 {
		msg := fmt.Sprintf("  no traffic through %s yet (sampled every %s)", live.Source, live.Interval)
		lines = append(lines, m.style.muted.Render(msg))
		if live.Err != "" {
			lines = append(lines, m.style.warn.Render("  "+m.glyphs.cut(live.Err, w-2)))
		}
		return m.glyphs.block(lines, w, h)
	}
	// Rows per release: req, err, p99; fewer when the pane is short.
	perRel := 3
	gateRow := len(m.snap.Gates) > 0
	for perRel > 1 && len(ser)*perRel+boolInt(gateRow) > room {
		if gateRow && len(ser)*perRel+1 > room && perRel == 3 {
			gateRow = false
			continue
		}
		perRel--
	}
	if perRel < 3 {
		metrics = metrics[1 : 1+perRel] // err and p99 first, then err alone
		if perRel == 1 {
			metrics = metrics[:1]
		}
	}
	nRel := max(1, min(len(ser), (room-boolInt(gateRow))/perRel))
	ser = ser[:nRel]
	relW := 4
	if perRel < 3 {
		relW = 6 // the req/s under the release's name
	}
	for _, s := range ser {
		relW = max(relW, min(len(s.Release), 12))
	}
	// release(relW) metric(3) line value(8) verdict(8)
	cells := clampInt(w-(relW+1+3+1+1+8+1+8), 4, 300)
	spc := m.samplesPerCell()
	n := min(len(live.Times), cells*spc)
	from := len(live.Times) - n
	for i := range metrics {
		if metrics[i].limit > 0 {
			continue
		}
		for _, s := range ser {
			for _, p := range s.Points[from:] {
				if !p.NoData {
					metrics[i].top = max(metrics[i].top, metrics[i].value(p))
				}
			}
		}
	}
	for _, s := range ser {
		relSt := m.style.bold
		if s.Release == m.snap.Info.Release {
			relSt = m.style.accent.Bold(true)
		}
		name := relSt.Render(m.glyphs.fit(m.glyphs.cut(s.Release, relW), relW))
		blank := strings.Repeat(" ", relW)
		pts := s.Points[from:]
		for i, mt := range metrics {
			label := blank
			switch {
			case i == 0:
				label = name
			case i == 1 && perRel < 3 && len(pts) > 0:
				// No req line: the newest rate under the name.
				label = m.style.muted.Render(m.glyphs.fit(fmtRate(pts[len(pts)-1].RPS), relW))
			}
			lines = append(lines, m.liveRow(label, mt, pts, cells, spc))
		}
	}
	if gateRow {
		lines = append(lines, m.gateAxis(relW, live.Times[from:], cells, spc))
	}
	if live.Err != "" && len(lines) < h {
		lines = append(lines, m.style.warn.Render("  "+m.glyphs.cut("sampling: "+live.Err, w-2)))
	}
	return m.glyphs.block(lines, w, h)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// liveRow is one metric of one release: label, the line, the newest value
// and its verdict against the limit.
func (m *Model) liveRow(label string, mt liveMetric, pts []sampler.Point, cells, spc int) string {
	top := 2 * mt.limit
	if mt.limit <= 0 {
		top = mt.top
	}
	line := m.liveLine(pts, mt, top, cells, spc)
	value, verdict := "–", m.style.muted.Render("no traffic")
	if m.glyphs.ascii {
		value = "-"
	}
	if len(pts) > 0 {
		last := pts[len(pts)-1]
		switch {
		case mt.name == "req":
			value, verdict = fmtRate(last.RPS), ""
		case !last.NoData:
			value = mt.text(last)
			verdict = ""
			if mt.limit > 0 {
				l := classify(mt.value(last), mt.limit)
				g, word := m.glyphs.levelGlyph(l), levelWord(l)
				if g != word {
					word = g + " " + word
				}
				verdict = m.style.of(l).Render(word)
			}
		}
	}
	return label + " " + m.style.muted.Render(m.glyphs.fit(mt.name, 3)) + " " + line + " " + m.glyphs.fit(value, 8) + " " + verdict
}

// Braille dots by row from the bottom (1..4), for the left and right
// column of a cell.
var brailleDots = [2][5]rune{{0, 0x40, 0x04, 0x02, 0x01}, {0, 0x80, 0x20, 0x10, 0x08}}

// liveLevel maps v to 0 (nothing) .. 4 rows against top. With a limit
// (top = twice the limit) rows 1–2 are at or under it and 3–4 over it.
func liveLevel(v, top float64) int {
	if v <= 0 || top <= 0 {
		return 0
	}
	return clampInt(int(v/top*4+0.999999), 1, 4)
}

// liveLine draws the newest cells*spc points, the newest at the right. In
// Braille each cell holds two samples as bars of up to four dots, and the
// limit is a dotted line on row 3 (just over the limit) wherever a bar
// does not cross it: a breach pokes through the line, in the breach
// colour. In ASCII: _ and - at or under the limit, ^ and # over it.
func (m *Model) liveLine(pts []sampler.Point, mt liveMetric, top float64, cells, spc int) string {
	out := styledRuns{m: m}
	pad := cells*spc - len(pts) // samples missing on the left
	for c := range cells {
		var r rune
		if !m.glyphs.ascii {
			r = 0x2800
		}
		lv := lvMuted
		worst := -1.0
		for k := range spc {
			i := c*spc + k - pad
			if i < 0 || i >= len(pts) || pts[i].NoData {
				if !m.glyphs.ascii && mt.limit > 0 {
					r |= brailleDots[k][3]
				}
				continue
			}
			v := mt.value(pts[i])
			worst = max(worst, v)
			l := liveLevel(v, top)
			if m.glyphs.ascii {
				r = rune("_-^#"[max(l-1, 0)])
				if l == 0 {
					r = '_'
				}
				continue
			}
			for row := 1; row <= l; row++ {
				r |= brailleDots[k][row]
			}
			if mt.limit > 0 && l < 3 {
				r |= brailleDots[k][3]
			}
		}
		if m.glyphs.ascii && r == 0 {
			r = ' '
			if mt.limit > 0 {
				r = '.'
			}
		}
		if worst >= 0 {
			lv = lvInfo
			if mt.limit > 0 {
				lv = classify(worst, mt.limit)
			}
		}
		out.add(lv, string(r))
	}
	return out.String()
}

// gateAxis marks each gate verdict of the run under the sample it was
// journaled at.
func (m *Model) gateAxis(relW int, times []time.Time, cells, spc int) string {
	marks := make([]string, cells)
	levels := make([]level, cells)
	for i := range marks {
		marks[i] = " "
	}
	pad := cells*spc - len(times)
	var last *engine.GateResult
	for gi := range m.snap.Gates {
		g := &m.snap.Gates[gi]
		last = g
		if g.At.IsZero() || len(times) == 0 || g.At.Before(times[0].Add(-time.Second)) {
			continue
		}
		j := len(times) - 1
		for j > 0 && times[j].After(g.At) {
			j--
		}
		c := (j + pad) / spc
		if c < 0 || c >= cells {
			continue
		}
		l := gateLevel(g.Verdict)
		// The worst verdict of a cell wins.
		if marks[c] == " " || l == lvBreach {
			marks[c], levels[c] = m.gateMark(l), l
		}
	}
	var b strings.Builder
	b.WriteString(m.style.muted.Render(m.glyphs.fit("gate", relW) + " " + m.glyphs.fit("", 3) + " "))
	for i, mk := range marks {
		if mk == " " {
			b.WriteString(m.style.muted.Render(m.glyphs.rule))
			continue
		}
		b.WriteString(m.style.of(levels[i]).Render(mk))
	}
	if last != nil {
		l := gateLevel(last.Verdict)
		b.WriteString(" " + m.style.of(l).Render(m.glyphs.fit(fmt.Sprintf("step %d %s", last.Step, strings.ToUpper(string(last.Verdict))), 17)))
	}
	return b.String()
}

// gateMark is a one-cell mark of a verdict.
func (m *Model) gateMark(l level) string {
	if !m.glyphs.ascii {
		return m.glyphs.levelGlyph(l)
	}
	switch l {
	case lvOK:
		return "+"
	case lvBreach:
		return "x"
	}
	return "?"
}

func gateLevel(v engine.Verdict) level { return describe.VerdictLevel(v) }
