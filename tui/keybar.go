package tui

// The status line and the key bar.

import (
	"flightdeck/tui/describe"

	"errors"

	"fmt"
	"strings"

	"github.com/charmbracelet/x/ansi"

	"flightdeck/engine"
)

func (m *Model) statusLine(w int) string {
	switch {
	case m.weightOn:
		prompt := m.style.accent.Render("set the canary's weight: "+m.weightText+m.glyphs.caret+"%") +
			m.style.muted.Render(fmt.Sprintf("  now %g%%%senter sets%sesc cancels", m.snap.Weight, m.glyphs.sep, m.glyphs.sep))
		if m.statusErr && m.status != "" {
			prompt += "  " + m.style.breach.Render(m.glyphs.breach+" "+m.status)
		}
		return prompt
	case m.filterOn:
		return m.style.accent.Render("/"+m.filter+m.glyphs.caret) + m.style.muted.Render(fmt.Sprintf("  %d of %d hosts%senter keep%sesc clear", m.fleetLen(), len(m.snap.Hosts), m.glyphs.sep, m.glyphs.sep))
	case m.status != "" && m.statusErr:
		return m.style.breach.Render(m.glyphs.breach + " " + m.status)
	case m.status != "":
		return m.style.text.Render(m.status)
	case m.snap.TrafficErr != "":
		return m.style.breach.Render(m.glyphs.breach + " traffic: " + describe.Clean(m.snap.TrafficErr))
	case m.snap.Report != nil && m.snap.Status == engine.StatusFinished:
		v := m.style.bold.Render("verdict: " + describe.Clean(m.snap.Report.Verdict))
		if cause, _ := causeFirst(m.snap.Err); m.snap.Err != "" && m.snap.Outcome != engine.OutcomeSucceeded &&
			!strings.Contains(m.snap.Report.Verdict, cause) {
			v += m.style.breach.Render(" " + m.glyphs.dash + " " + m.causeText(m.snap.Err))
		}
		return v
	case m.snap.Err != "":
		return m.style.breach.Render(m.causeText(m.snap.Err))
	}
	return ""
}

// causeText leads an error with its cause: "connection refused (restart
// web-3: dial tcp …)", so that a line cut at the screen's edge still says
// what went wrong.
func (m *Model) causeText(err string) string {
	cause, where := causeFirst(describe.Clean(err))
	if where == "" {
		return cause
	}
	return cause + " (" + where + ")"
}

type barItem struct {
	key, label, why string
	ok, danger      bool
}

func (m *Model) barItems() []barItem {
	var items []barItem
	for _, ai := range bindings {
		if !ai.bar {
			continue
		}
		k := m.keys.keyLabel(ai.act)
		if k == "" {
			continue
		}
		v := m.avail(ai.act)
		if v.hidden || (!v.ok && errors.Is(v.err, engine.ErrNoRun)) || (!v.ok && ai.traffic && len(m.snap.Info.Steps) == 0) {
			// The bar shows what can be done now: not every run command
			// greyed out between runs, nor traffic steps in a run that has none.
			continue
		}
		items = append(items, barItem{key: k, label: v.label, why: v.why, ok: v.ok, danger: ai.dangerous})
	}
	return items
}

func (m *Model) renderItem(it barItem) string {
	switch {
	case !it.ok:
		return m.style.muted.Render(it.key + " " + it.label + " (" + it.why + ")")
	case it.danger:
		return m.style.key.Render(it.key) + " " + m.style.danger.Render(it.label)
	}
	return m.style.key.Render(it.key) + " " + it.label
}

func (m *Model) keyBar(w int) string {
	var items []barItem
	switch m.overlay {
	case overlayConfirm:
		items = []barItem{{key: m.keys.keyLabel(ActConfirm), label: m.confirm.yes, ok: true, danger: m.confirm.danger},
			{key: m.keys.keyLabel(ActCancel), label: "cancel", ok: true}}
	case overlayHelp:
		items = []barItem{{key: m.keys.keyLabel(ActHelp) + "/" + m.keys.keyLabel(ActCancel), label: "close help", ok: true},
			{key: m.keys.keyLabel(ActDown) + "/" + m.keys.keyLabel(ActUp), label: "scroll", ok: true}}
	case overlayHistory:
		items = []barItem{{key: m.keys.keyLabel(ActConfirm) + "/" + m.keys.keyLabel(ActRollback), label: "roll back to selected", ok: true, danger: true},
			{key: m.keys.keyLabel(ActDown) + "/" + m.keys.keyLabel(ActUp), label: "select", ok: true},
			{key: m.keys.keyLabel(ActCancel), label: "close", ok: true}}
	case overlayDetails:
		items = []barItem{{key: m.keys.keyLabel(ActCancel), label: "close", ok: true},
			{key: m.keys.keyLabel(ActDown) + "/" + m.keys.keyLabel(ActUp), label: "scroll", ok: true}}
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
