package tui

import (
	"strings"
)

// sparkline draws vals (oldest first, the newest at the right) in width
// cells, each cell styled by its level. Values are scaled to [0, top]
// (clamped), so a fixed top keeps the threshold at a fixed height.
func (m *Model) sparkline(vals []float64, top float64, width int, classify func(float64) level) string {
	if width <= 0 {
		return ""
	}
	if len(vals) > width {
		vals = vals[len(vals)-width:]
	}
	var b strings.Builder
	// Empty cells on the left when there are fewer samples than cells.
	if pad := width - len(vals); pad > 0 {
		b.WriteString(m.style.muted.Render(strings.Repeat(" ", pad)))
	}
	levels := m.glyphs.spark
	r := styledRuns{m: m}
	for _, v := range vals {
		r.add(classify(v), levels[sparkIndex(v, top, len(levels))])
	}
	b.WriteString(r.String())
	return b.String()
}

// styledRuns writes cells of several levels, styling each run of cells of
// one level once (a style per cell would multiply the escape sequences).
type styledRuns struct {
	m   *Model
	b   strings.Builder
	run strings.Builder
	cur level
}

// add appends s, a cell of level lv.
func (r *styledRuns) add(lv level, s string) {
	if lv != r.cur {
		r.flush()
		r.cur = lv
	}
	r.run.WriteString(s)
}

func (r *styledRuns) flush() {
	if r.run.Len() > 0 {
		r.b.WriteString(r.m.style.of(r.cur).Render(r.run.String()))
		r.run.Reset()
	}
}

// String ends the last run and returns what was written.
func (r *styledRuns) String() string {
	r.flush()
	return r.b.String()
}

// sparkIndex maps v in [0, top] to one of n levels.
func sparkIndex(v, top float64, n int) int {
	if top <= 0 || v <= 0 {
		return 0
	}
	i := int(v / top * float64(n))
	if i >= n {
		i = n - 1
	}
	return i
}
