package tui

// The events pane: the run's recent events, newest at the bottom.

import (
	"fmt"
	"strings"
	"time"

	"flightdeck/engine"
)

func (m *Model) eventsPane(w, h int) []string {
	focus := 0
	if m.focus == paneEvents && m.overlay == overlayNone {
		focus = 1
	}
	k := cacheKey{state: m.stateVer, w: w, h: h, extra: focus<<20 | m.eventScroll}
	return m.cache.evs.get(k, func() []string { return m.renderEvents(w, h) })
}

func (m *Model) renderEvents(w, h int) []string {
	extra := fmt.Sprintf("%d", len(m.eventLog))
	if m.eventScroll > 0 {
		extra += fmt.Sprintf("%sscrolled %d up", m.glyphs.sep, m.eventScroll)
	}
	if m.eventsLost > 0 {
		extra += fmt.Sprintf("%s%d not shown (fell behind)", m.glyphs.sep, m.eventsLost)
	}
	lines := []string{m.titleLine(paneEvents, "Events", extra, w)}
	rows := h - 1
	end := len(m.eventLog) - clampInt(m.eventScroll, 0, len(m.eventLog))
	start := max(0, end-rows)
	for _, e := range m.eventLog[start:end] {
		text, l := m.eventText(e)
		ts := m.style.muted.Render(e.Time.In(m.opts.Location).Format("15:04:05"))
		lines = append(lines, ts+" "+m.style.of(l).Render(text))
	}
	return m.glyphs.block(lines, w, h)
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
	arrow := m.glyphs.arrow
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
		_, l := m.glyphs.phase(e.Phase)
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
			s += " " + m.glyphs.dash + " " + e.Error
		}
		return s, l
	}
	if e.Message != "" {
		return host + e.Message, lvNone
	}
	return host + string(e.Type), lvNone
}
