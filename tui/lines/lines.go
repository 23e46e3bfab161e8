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
	"flightdeck/tui/describe"
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

// Format renders an event as one human-readable line ("" for none), in
// the words of package describe (the cockpit's), with its time; the end
// of run report takes a few lines.
func Format(e engine.Event) string {
	if e.Type == engine.EvReport {
		return FormatReport(e.Report)
	}
	text, _ := describe.NewGlyphs(false).Event(e)
	if text == "" {
		return ""
	}
	ts := e.Time.Local().Format("15:04:05.000")
	switch e.Type {
	case engine.EvRunStarted:
		return fmt.Sprintf("%s run %s: %s", ts, describe.Clean(e.Run), text)
	case engine.EvRunFinished:
		return fmt.Sprintf("%s run %s %s", ts, describe.Clean(e.Run), text)
	}
	return ts + " " + text
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
		fmt.Fprintf(&b, "gate step %d: %s (%s)\n", g.Step, g.Verdict, describe.Clean(g.Reason))
	}
	if r.RTO > 0 {
		fmt.Fprintf(&b, "rollback RTO: %s\n", r.RTO.Round(time.Millisecond))
	}
	if len(r.Failed) > 0 {
		fmt.Fprintf(&b, "failed hosts: %s\n", describe.Clean(strings.Join(r.Failed, ", ")))
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
			line += ": " + describe.Clean(strings.ReplaceAll(it.Evidence, "\n", "; "))
		}
		fmt.Fprintln(&b, line)
	}
	fmt.Fprintf(&b, "verdict: %s", describe.Clean(r.Verdict))
	return b.String()
}
