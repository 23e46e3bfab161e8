package tui

// The confirmation dialog, drawn over the panes.

import (
	"strings"

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"
)

// overlayDialog draws the confirmation dialog over the middle of the panes.
func (m *Model) overlayDialog(under []string, w, h int) []string {
	c := m.confirm
	bw := min(w-2, 72)
	border := lipgloss.RoundedBorder()
	if m.glyphs.ascii {
		border = lipgloss.ASCIIBorder()
	}
	bc := m.style.accent
	if c.danger {
		bc = m.style.danger
	}
	content := []string{m.style.bold.Render(c.title), ""}
	content = append(content, c.lines...)
	content = append(content, "", m.style.key.Render("["+m.keys.keyLabel(ActConfirm)+"]")+" "+c.yes+"   "+
		m.style.key.Render("["+m.keys.keyLabel(ActCancel)+"]")+" cancel")
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
		out[row] = m.glyphs.fit(ansi.Truncate(base, left, "")+bl+rightPart, w)
	}
	return out
}
