// Package lines prints engine events as plain text lines (or JSON lines):
// the headless output, and what a dumb terminal or a pipe gets instead of
// the cockpit.
package lines

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"flightdeck/engine"
)

// Printer writes one line per event. Repeated progress of a host in the same
// phase is folded into the phase's last line.
type Printer struct {
	w     io.Writer
	json  bool
	phase map[string]engine.Phase
	// Verbose prints every progress event too.
	Verbose bool
}

// New returns a printer writing to w; asJSON writes each event as a JSON line.
func New(w io.Writer, asJSON bool) *Printer {
	return &Printer{w: w, json: asJSON, phase: map[string]engine.Phase{}}
}

// Follow prints a subscriber's events until ctx ends or stop is closed
// and the subscriber has nothing more buffered.
func (p *Printer) Follow(ctx context.Context, sub *engine.Sub, stop <-chan struct{}) {
	for {
		evs, lost := sub.Drain()
		if lost > 0 {
			fmt.Fprintf(p.w, "… %d events not shown (output fell behind; see `flightdeck journal show`)\n", lost)
		}
		for _, e := range evs {
			p.Print(e)
		}
		if len(evs) > 0 || lost > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-stop:
			if evs, _ := sub.Drain(); len(evs) > 0 {
				for _, e := range evs {
					p.Print(e)
				}
			}
			return
		case <-sub.C():
		}
	}
}

// Print writes one event.
func (p *Printer) Print(e engine.Event) {
	if p.json {
		b, err := json.Marshal(e)
		if err == nil {
			fmt.Fprintf(p.w, "%s\n", b)
		}
		return
	}
	if e.Type == engine.EvHostPhase && !p.Verbose {
		if p.phase[e.Host] == e.Phase && e.Phase == engine.PhasePreparing {
			return
		}
		p.phase[e.Host] = e.Phase
	}
	if s := Format(e); s != "" {
		fmt.Fprintln(p.w, s)
	}
}

// Format renders an event as one human-readable line ("" for none).
func Format(e engine.Event) string {
	ts := e.Time.Local().Format("15:04:05.000")
	who := ""
	if e.Actor != "" {
		who = " by " + e.Actor
	}
	var msg string
	switch e.Type {
	case engine.EvRunStarted:
		s := e.Start
		if s == nil {
			return ""
		}
		if s.Kind == engine.KindRollback {
			msg = fmt.Sprintf("rollback of %s/%s to %s started%s (%d hosts)", s.App, s.Env, s.Release, who, len(s.Hosts))
		} else if s.Kind == engine.KindAdopt {
			what := s.Release
			if what == "" {
				what = "every release"
			}
			msg = fmt.Sprintf("adopt of %s in %s/%s started%s (%d hosts)", what, s.App, s.Env, who, len(s.Hosts))
		} else {
			prev := s.Previous
			if prev == "" {
				prev = "(none)"
			}
			plan := fmt.Sprintf("%d waves", len(s.Waves))
			if len(s.Steps) > 0 {
				var steps []string
				for _, st := range s.Steps {
					steps = append(steps, fmt.Sprintf("%d%%", st))
				}
				plan = "steps " + strings.Join(steps, " → ")
			}
			msg = fmt.Sprintf("deploy of %s/%s %s → %s started%s: %s, %d hosts, %s", s.App, s.Env, prev, s.Release, who, s.Strategy, len(s.Hosts), plan)
			if s.TrafficAt != "" {
				msg += "; traffic through " + s.TrafficAt
			}
		}
		return fmt.Sprintf("%s run %s: %s", ts, e.Run, msg)
	case engine.EvRunResumed:
		msg = e.Message
	case engine.EvHostObserved:
		cur := e.Release
		if cur == "" {
			cur = "(none)"
		}
		return fmt.Sprintf("%s [%s] current → %s", ts, e.Host, cur)
	case engine.EvHostPhase:
		msg = string(e.Phase)
		if e.Release != "" {
			msg += " " + e.Release
		}
		if pr := e.Progress; pr != nil && pr.FilesTotal > 0 && e.Phase == engine.PhasePreparing {
			msg += fmt.Sprintf(" %d/%d files", pr.FilesDone, pr.FilesTotal)
		}
		if e.Message != "" {
			msg += ": " + e.Message
		}
		if e.Error != "" {
			msg += ": " + e.Error
		}
		return fmt.Sprintf("%s [%s] %s", ts, e.Host, msg)
	case engine.EvHostOutput:
		return fmt.Sprintf("%s [%s] %s| %s", ts, e.Host, e.Command, e.Message)
	case engine.EvWaveStarted:
		msg = e.Message
	case engine.EvWaveDone:
		msg = fmt.Sprintf("wave %d done", e.Wave)
	case engine.EvWaiting, engine.EvSettling:
		msg = e.Message
	case engine.EvPaused:
		msg = "PAUSED" + who
		if e.Message != "" && !strings.HasPrefix(e.Message, "paused by") {
			msg += ": " + e.Message
		}
	case engine.EvResumed:
		msg = "resumed" + who
	case engine.EvCommand:
		msg = fmt.Sprintf("%s%s", e.Command, who)
		if e.Target != "" {
			msg += " (to " + e.Target + ")"
		}
	case engine.EvCommandRefused:
		msg = fmt.Sprintf("refused %s%s: %s", e.Command, who, e.Error)
	case engine.EvRollbackStart:
		target := e.Target
		if target == "" {
			target = "each host's previous release"
		}
		msg = fmt.Sprintf("ROLLING BACK to %s%s: %s", target, who, e.Message)
	case engine.EvRolledBack:
		msg = e.Message
	case engine.EvWeightSet, engine.EvCohortSet:
		msg = e.Message
		if msg == "" && e.Weight != nil {
			msg = fmt.Sprintf("weight %g%% → %s", *e.Weight, e.Release)
		}
		msg = "traffic: " + msg + who
	case engine.EvStepStarted:
		msg = e.Message
	case engine.EvGateResult:
		if g := e.Gate; g != nil {
			msg = fmt.Sprintf("gate step %d: %s (%s)", g.Step, strings.ToUpper(string(g.Verdict)), g.Reason)
		}
	case engine.EvMetricSample:
		if s := e.Sample; s != nil {
			msg = fmt.Sprintf("measure %s: %.0f req, error rate %.3f%%, p99 %s", s.Release, s.Requests, s.ErrorRate*100, s.P99.Round(time.Millisecond))
		}
	case engine.EvChecklistItem:
		if it := e.Item; it != nil {
			msg = fmt.Sprintf("checklist %s: %s %s", it.Title, it.State, it.Evidence)
		}
	case engine.EvRule321:
		msg = "3-2-1: " + e.Message
	case engine.EvObserved, engine.EvFinishing:
		return "" // the checklist item / the report that follows says it
	case engine.EvPruned:
		return fmt.Sprintf("%s [%s] pruned %s", ts, e.Host, strings.Join(e.Removed, ", "))
	case engine.EvNotice:
		msg = e.Message
		if e.Error != "" {
			msg += e.Error
		}
		if e.Host != "" {
			return fmt.Sprintf("%s [%s] %s", ts, e.Host, msg)
		}
	case engine.EvReport:
		return FormatReport(e.Report)
	case engine.EvRunFinished:
		msg = fmt.Sprintf("run %s finished: %s", e.Run, strings.ToUpper(string(e.Outcome)))
		if e.Error != "" {
			msg += " — " + e.Error
		}
	default:
		msg = string(e.Type)
	}
	if msg == "" {
		return ""
	}
	return ts + " " + msg
}

// FormatReport renders the end-of-run report as a few lines.
func FormatReport(r *engine.Report) string {
	if r == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "── report ──────────────────────────────\n")
	fmt.Fprintf(&b, "strategy %s · %d hosts · %s · outcome %s\n", r.Strategy, r.Hosts, r.Duration.Round(time.Millisecond), r.Outcome)
	if p := r.Probe; p != nil {
		fmt.Fprintf(&b, "probe: %d requests, %d failed, p50 %s, p99 %s, longest gap %s\n",
			p.Requests, p.Failed, p.P50.Round(time.Microsecond*100), p.P99.Round(time.Microsecond*100), p.LongestGap.Round(time.Millisecond))
	}
	for _, g := range r.Gates {
		fmt.Fprintf(&b, "gate step %d: %s (%s)\n", g.Step, g.Verdict, g.Reason)
	}
	if r.RTO > 0 {
		fmt.Fprintf(&b, "rollback RTO: %s\n", r.RTO.Round(time.Millisecond))
	}
	if len(r.Failed) > 0 {
		fmt.Fprintf(&b, "failed hosts: %s\n", strings.Join(r.Failed, ", "))
	}
	for _, it := range r.Checklist {
		glyph := map[engine.ItemState]string{"verified": "✓", "failed": "✗", "acknowledged": "✓ack", "n/a": "–"}[it.State]
		if glyph == "" {
			glyph = "?"
		}
		line := fmt.Sprintf("checklist %s %s", glyph, it.Title)
		if it.AckBy != "" {
			line += " (by " + it.AckBy + ")"
		}
		if it.State != "verified" && it.State != "n/a" && it.Evidence != "" {
			line += ": " + strings.ReplaceAll(it.Evidence, "\n", "; ")
		}
		fmt.Fprintln(&b, line)
	}
	fmt.Fprintf(&b, "verdict: %s", r.Verdict)
	return b.String()
}
