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
	run := strings.Builder{}
	cur := lvNone
	flush := func() {
		if run.Len() > 0 {
			b.WriteString(m.style.of(cur).Render(run.String()))
			run.Reset()
		}
	}
	for _, v := range vals {
		l := classify(v)
		if l != cur {
			flush()
			cur = l
		}
		run.WriteString(levels[sparkIndex(v, top, len(levels))])
	}
	flush()
	return b.String()
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
