// Package describe says what engine events and run states mean, in words
// and glyphs, once for every place that shows them: the cockpit, the line
// output (headless, `journal show`, `watch --headless`) and serve's
// `status`. Every text it returns is safe to print on a terminal: control
// characters that came from hosts (hook output, errors) are escaped, so a
// host cannot set the operator's window title, clear the screen or forge
// a line.
package describe

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"flightdeck/engine"
)

// Level is how good a value or a state is. It is always shown with a
// glyph and a word, never by colour alone.
type Level int

// Levels.
const (
	None Level = iota
	OK
	Warn
	Breach
	Info
	Muted
)

// Glyphs are the symbols of a state, Unicode or ASCII.
type Glyphs struct {
	ASCII                                 bool
	OK, Warn, Breach, None                string
	Arrow, Dash                           string
	Running, Paused, RollingBack, Pending string
}

// NewGlyphs returns the Unicode glyphs, or plain ASCII ones.
func NewGlyphs(ascii bool) Glyphs {
	if ascii {
		return Glyphs{ASCII: true, OK: "ok", Warn: "!", Breach: "x", None: "-", Arrow: "->", Dash: "-",
			Running: ">", Paused: "||", RollingBack: "<<", Pending: "."}
	}
	return Glyphs{OK: "✓", Warn: "▲", Breach: "✗", None: "·", Arrow: "→", Dash: "—",
		Running: "▶", Paused: "‖", RollingBack: "↶", Pending: "·"}
}

// Of returns the glyph of a level.
func (g Glyphs) Of(l Level) string {
	switch l {
	case OK:
		return g.OK
	case Warn:
		return g.Warn
	case Breach:
		return g.Breach
	}
	return g.None
}

// Phase returns a host phase's glyph and level.
func (g Glyphs) Phase(p engine.Phase) (string, Level) {
	type pg struct {
		u, a string
		l    Level
	}
	var v pg
	switch p {
	case engine.PhaseQueued:
		v = pg{"·", ".", Muted}
	case engine.PhasePreparing:
		v = pg{"↓", "v", Info}
	case engine.PhasePrepared:
		v = pg{"◦", "o", None}
	case engine.PhaseDraining:
		v = pg{"⇣", "d", Info}
	case engine.PhaseSwitching:
		v = pg{"⇄", "~", Info}
	case engine.PhaseRestart:
		v = pg{"↻", "r", Info}
	case engine.PhaseHealth:
		v = pg{"♥", "h", Info}
	case engine.PhaseStandby:
		v = pg{"◐", "s", Info}
	case engine.PhaseLive:
		v = pg{"●", "*", OK}
	case engine.PhaseReverting:
		v = pg{"↶", "<", Warn}
	case engine.PhaseReverted:
		v = pg{"↺", "<", Warn}
	case engine.PhaseFailed:
		v = pg{"✗", "x", Breach}
	case engine.PhaseSkipped:
		v = pg{"–", "-", Muted}
	default:
		v = pg{"•", "?", None}
	}
	if g.ASCII {
		return v.a, v.l
	}
	return v.u, v.l
}

// RunState is a run's state as a glyph and words ("‖ PAUSED by bob") and
// a level. since, when not zero, is the time the state is shown at: a
// paused run says for how long.
func (g Glyphs) RunState(st *engine.State, now time.Time) (string, Level) {
	by := func(who string) string { return " by " + orNone(Clean(who), "?") }
	switch st.Status {
	case engine.StatusRunning:
		return g.Running + " RUNNING", Info
	case engine.StatusPaused:
		s := g.Paused + " PAUSED" + by(st.PausedBy)
		if !st.PausedAt.IsZero() && !now.IsZero() {
			s += " for " + Age(now.Sub(st.PausedAt))
		}
		return s, Warn
	case engine.StatusRollingBack:
		word := "ROLLING BACK"
		if st.Aborted {
			word = "ABORTING"
		}
		return g.RollingBack + " " + word + by(st.RollbackBy), Breach
	case engine.StatusFinished:
		switch {
		case st.Outcome == engine.OutcomeSucceeded && st.Info.Kind == engine.KindRollback:
			return g.OK + " ROLLED BACK to " + st.Info.Release + by(st.RollbackBy), Warn
		case st.Outcome == engine.OutcomeSucceeded:
			return g.OK + " SUCCEEDED", OK
		case st.Outcome == engine.OutcomeRolledBack:
			return g.Breach + " ROLLED BACK" + by(st.RollbackBy), Breach
		case st.Outcome == engine.OutcomeAborted:
			return g.Breach + " ABORTED" + by(st.RollbackBy), Breach
		default:
			return g.Breach + " " + strings.ToUpper(strings.ReplaceAll(string(st.Outcome), "_", " ")), Breach
		}
	case engine.StatusUnfinished:
		return g.Breach + " UNFINISHED (its process died; `flightdeck resume` finishes it)", Breach
	}
	return g.None + " IDLE (no run)", Muted
}

// VerdictLevel is a gate verdict's level: pass is OK, fail a breach,
// anything else (inconclusive, no data) a warning.
func VerdictLevel(v engine.Verdict) Level {
	switch v {
	case engine.VerdictPass:
		return OK
	case engine.VerdictFail:
		return Breach
	}
	return Warn
}

// Event describes an event as one line (no time stamp) and a level; ""
// for an event that adds nothing to read (the line that follows says it).
// Host events start with "[host] ".
func (g Glyphs) Event(e engine.Event) (string, Level) {
	s, l := g.event(e)
	return Clean(s), l
}

func (g Glyphs) event(e engine.Event) (string, Level) {
	who := ""
	if e.Actor != "" {
		who = " by " + e.Actor
	}
	host := ""
	if e.Host != "" {
		host = "[" + e.Host + "] "
	}
	arrow := g.Arrow
	switch e.Type {
	case engine.EvRunStarted:
		s := e.Start
		if s == nil {
			return "run started", None
		}
		switch s.Kind {
		case engine.KindRollback:
			return fmt.Sprintf("rollback of %s/%s to %s started%s (%d hosts)", s.App, s.Env, s.Release, who, len(s.Hosts)), Warn
		case engine.KindAdopt:
			return fmt.Sprintf("adopt of %s in %s/%s started%s (%d hosts)", orNone(s.Release, "every release"), s.App, s.Env, who, len(s.Hosts)), Info
		}
		plan := fmt.Sprintf("%d waves", len(s.Waves))
		if len(s.Steps) > 0 {
			var steps []string
			for _, st := range s.Steps {
				steps = append(steps, fmt.Sprintf("%d%%", st))
			}
			plan = "steps " + strings.Join(steps, " "+arrow+" ")
		}
		text := fmt.Sprintf("deploy of %s/%s %s %s %s started%s: %s, %d hosts, %s", s.App, s.Env, orNone(s.Previous, "(none)"), arrow, s.Release,
			who, s.Strategy, len(s.Hosts), plan)
		if s.TrafficAt != "" {
			text += "; traffic through " + s.TrafficAt
		}
		return text, Info
	case engine.EvRunResumed, engine.EvWaveStarted, engine.EvWaiting, engine.EvSettling:
		return host + e.Message, None
	case engine.EvHostObserved:
		return host + "current " + arrow + " " + orNone(e.Release, "(none)"), Muted
	case engine.EvHostPhase:
		s := host + string(e.Phase)
		if e.Release != "" {
			s += " " + e.Release
		}
		if pr := e.Progress; pr != nil && pr.FilesTotal > 0 && e.Phase == engine.PhasePreparing {
			s += fmt.Sprintf(" %d/%d files", pr.FilesDone, pr.FilesTotal)
		}
		if e.Message != "" {
			s += ": " + e.Message
		}
		if e.Error != "" {
			s += ": " + e.Error
		}
		_, l := g.Phase(e.Phase)
		if l == Info || l == Muted {
			l = None
		}
		return s, l
	case engine.EvHostOutput:
		return host + e.Command + "| " + e.Message, Muted
	case engine.EvWaveDone:
		return fmt.Sprintf("wave %d done", e.Wave), None
	case engine.EvPaused:
		s := "PAUSED" + who
		if e.Message != "" && !strings.HasPrefix(e.Message, "paused by") {
			s += ": " + e.Message
		}
		return s, Warn
	case engine.EvResumed:
		return "resumed" + who, None
	case engine.EvCommand:
		s := e.Command + who
		if e.Target != "" {
			s += " (to " + e.Target + ")"
		}
		return s, Muted
	case engine.EvCommandRefused:
		return fmt.Sprintf("refused %s%s: %s", e.Command, who, e.Error), Breach
	case engine.EvRollbackStart:
		what := "ROLLING BACK"
		if e.Command == string(engine.CmdAbort) {
			what = "ABORTING"
		}
		s := fmt.Sprintf("%s to %s%s", what, orNone(e.Target, "each host's previous release"), who)
		if e.Message != "" {
			s += ": " + e.Message
		}
		return s, Breach
	case engine.EvRolledBack:
		return host + e.Message, Warn
	case engine.EvWeightSet, engine.EvCohortSet:
		s := e.Message
		if s == "" && e.Weight != nil {
			word := "weight"
			if e.Type == engine.EvCohortSet {
				word = "cohort"
			}
			s = fmt.Sprintf("%s %g%% %s %s", word, *e.Weight, arrow, e.Release)
		}
		return "traffic: " + s + who, Info
	case engine.EvStepStarted:
		if e.Message != "" {
			return e.Message, Info
		}
		if e.Weight != nil {
			return fmt.Sprintf("step %d: %g%% to %s%s", e.Wave, *e.Weight, e.Release, who), Info
		}
		return fmt.Sprintf("step %d", e.Wave), Info
	case engine.EvGateResult:
		if gr := e.Gate; gr != nil {
			return fmt.Sprintf("gate step %d: %s (%s)", gr.Step, strings.ToUpper(string(gr.Verdict)), gr.Reason), VerdictLevel(gr.Verdict)
		}
	case engine.EvMetricSample:
		if s := e.Sample; s != nil {
			return fmt.Sprintf("measure %s: %.0f req, error rate %.3f%%, p99 %s", s.Release, s.Requests, s.ErrorRate*100, s.P99.Round(time.Millisecond)), Muted
		}
	case engine.EvChecklistItem:
		if it := e.Item; it != nil {
			s := fmt.Sprintf("checklist %s: %s", it.Title, it.State)
			if it.AckBy != "" && !strings.Contains(it.Evidence, it.AckBy) {
				s += " by " + it.AckBy
			}
			if it.Evidence != "" {
				s += " (" + strings.ReplaceAll(strings.TrimSpace(it.Evidence), "\n", "; ") + ")"
			}
			return s, None
		}
	case engine.EvRule321:
		return "3-2-1: " + e.Message, None
	case engine.EvObserved, engine.EvFinishing:
		return "", None // the checklist item / the report that follows says it
	case engine.EvPruned:
		return host + "pruned " + strings.Join(e.Removed, ", "), Muted
	case engine.EvNotice:
		return host + e.Message + e.Error, Warn
	case engine.EvReport:
		if r := e.Report; r != nil {
			s := "report: " + r.Verdict
			if r.RTO > 0 {
				s += fmt.Sprintf(" (RTO %s)", r.RTO.Round(time.Millisecond))
			}
			return s, None
		}
	case engine.EvRunFinished:
		l := Breach
		if e.Outcome == engine.OutcomeSucceeded {
			l = OK
		}
		s := "finished: " + strings.ToUpper(strings.ReplaceAll(string(e.Outcome), "_", " "))
		if e.Error != "" {
			s += " " + g.Dash + " " + e.Error
		}
		return s, l
	}
	if e.Message != "" {
		return host + e.Message, None
	}
	return host + string(e.Type), None
}

// Clean makes text that may come from a host safe to print: every C0 and
// C1 control character but the tab (escape sequences, carriage returns,
// new lines, backspaces, bells) is written as a visible \xNN, and invalid
// UTF-8 as \xNN too. Clean text comes back unchanged, without a copy.
func Clean(s string) string {
	clean := true
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if isControl(r) || (r == utf8.RuneError && n == 1) {
			clean = false
			break
		}
		i += n
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case isControl(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func isControl(r rune) bool {
	return (r < 0x20 && r != '\t') || r == 0x7f || (r >= 0x80 && r <= 0x9f)
}

// Age is a short duration: 42s, 3m05s, 2h10m.
func Age(d time.Duration) string {
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

func orNone(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}
