package tui

// The SLO pane: per-release sparklines of error rate, p99 and requests,
// the countdown and the last gate verdict.

import (
	"fmt"
	"strings"
	"time"

	"flightdeck/engine"
)

func (m *Model) sloPane(w, h int) []string {
	focus := 0
	if m.focus == paneSLO && m.overlay == overlayNone {
		focus = 1
	}
	k := cacheKey{state: m.stateVer, live: m.liveVer(), w: w, h: h, sec: m.clock().Unix(), extra: focus}
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

// sloLimits is the title's note on the limits the lines are drawn against.
func (m *Model) sloLimits() string {
	if m.opts.SLO.None {
		return "no SLO limits in the plan"
	}
	return fmt.Sprintf("limits: errors %s, p99 %s", fmtPct(m.opts.SLO.ErrorRate), fmtMs(m.opts.SLO.P99))
}

func (m *Model) renderSLO(w, h int) []string {
	extra := m.sloLimits()
	if m.live != nil {
		extra = fmt.Sprintf("live %s every %s%s%s", m.live.Source, m.live.Interval, m.glyphs.sep, extra)
	}
	lines := []string{m.titleLine(paneSLO, "SLO", extra, w)}
	lines = append(lines, m.sloStatus())
	if m.live != nil {
		return m.renderLive(lines, w, h)
	}
	ser := m.seriesByRelease()
	if len(ser) == 0 {
		if m.opts.SLO.NoSource {
			lines = append(lines, m.style.muted.Render("  no traffic source in this plan: nothing measures the SLOs"),
				m.style.muted.Render("  (a router, or a gate reading Prometheus, gives live figures)"))
		} else {
			lines = append(lines, m.style.muted.Render("  no measurement yet (this cockpit shows the gate's windows)"))
		}
		return m.glyphs.block(lines, w, h)
	}
	return m.renderGateSamples(lines, ser, w, h)
}

// renderGateSamples draws the gate measurements of the run (one point per
// gate window) when there is no live sampler: a cockpit that only follows
// a journal.
func (m *Model) renderGateSamples(lines []string, ser []series, w, h int) []string {
	thr := m.opts.SLO
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
		relSt := m.style.bold
		if s.release == m.snap.Info.Release {
			relSt = m.style.accent.Bold(true)
		}
		name := relSt.Render(m.glyphs.fit(m.glyphs.cut(s.release, relW), relW))
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
	return m.glyphs.block(lines, w, h)
}

func (m *Model) sloRow(name, metric, spark, value string, l level, noData bool) string {
	verdict := ""
	switch {
	case noData:
		verdict = m.style.muted.Render(m.glyphs.none + " no data")
	case l != lvNone:
		g, word := m.glyphs.levelGlyph(l), levelWord(l)
		if g != word {
			word = g + " " + word
		}
		verdict = m.style.of(l).Render(word)
	}
	return name + " " + m.style.muted.Render(m.glyphs.fit(metric, 4)) + " " + spark + " " + m.glyphs.fit(value, 8) + " " + verdict
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
	// The engine's one countdown: it stands still while the run is paused
	// and says what it counts down to.
	if what, left, running, ok := st.Countdown(m.now()); ok && st.Active() && left > 0 {
		label := "next wave"
		switch {
		case st.Settling != "" && st.WaitUntil.IsZero():
			label = "run ends"
		case st.Info.Strategy == "canary":
			label = "next step"
		}
		text := fmt.Sprintf("%s in %s", label, fmtAge(left.Round(time.Second)))
		if !running {
			text += " once resumed"
		}
		if what != "" && label != "run ends" {
			text += ": " + what
		}
		parts = append(parts, m.style.accent.Render(text))
	}
	if n := len(st.Gates); n > 0 {
		gr := st.Gates[n-1]
		l := gateLevel(gr.Verdict)
		parts = append(parts, m.style.of(l).Render(fmt.Sprintf("gate step %d: %s %s", gr.Step, m.glyphs.levelGlyph(l), strings.ToUpper(string(gr.Verdict))))+
			m.style.muted.Render(" "+gr.Reason))
	}
	if len(parts) == 0 {
		return m.style.muted.Render("  no gate pending")
	}
	return "  " + strings.Join(parts, m.style.muted.Render(m.glyphs.sep))
}

func fmtPct(f float64) string { return fmt.Sprintf("%.2f%%", f*100) }

func fmtMs(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%dms", d.Milliseconds())
}
