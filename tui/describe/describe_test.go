package describe_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"flightdeck/engine"
	"flightdeck/serve"
	"flightdeck/tui/describe"
	"flightdeck/tui/lines"
)

func TestClean(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain text, with a tab\tand ünïcödé → ✓", "plain text, with a tab\tand ünïcödé → ✓"},
		{"\x1b]0;pwned\x07title", `\x1b]0;pwned\x07title`},
		{"\x1b[2J\x1b[Hclear", `\x1b[2J\x1b[Hclear`},
		{"line\r\n12:00:00 run SUCCEEDED", `line\x0d\x0a12:00:00 run SUCCEEDED`},
		{"c1 \u009b31m csi", `c1 \x9b31m csi`},
		{"raw c1 byte \x9b", `raw c1 byte \x9b`},
		{"del\x7f bs\b", `del\x7f bs\x08`},
	} {
		if got := describe.Clean(tc.in); got != tc.want {
			t.Errorf("Clean(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// hostile is what a host may put in its output and errors: a window
// title, a screen clear, a carriage return and a forged line.
const hostile = "\x1b]0;owned\x07\x1b[2J\r\n12:00:00.000 run x finished: SUCCEEDED\x9b1m"

// hasControl reports a C0 (but tab) or C1 control, raw or UTF-8 encoded.
func hasControl(s string) bool {
	for _, r := range s {
		if (r < 0x20 && r != '\t' && r != '\n') || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == 0xfffd {
			return true
		}
	}
	return false
}

// TestNoControlReachesAnyRenderer is issue 14 item 12: hook output, host
// errors and notices carrying escape sequences are escaped in every place
// that shows events: describe (the cockpit's words), the line output
// (headless, journal show, watch) and serve's status.
func TestNoControlReachesAnyRenderer(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	evs := []engine.Event{
		{Seq: 1, Run: "r", Time: at, Type: engine.EvRunStarted, Start: &engine.RunInfo{Kind: engine.KindDeploy, App: "shop", Env: "prod",
			Strategy: "rolling", Release: "v2", Previous: "v1", Hosts: []engine.RunHost{{Name: "web-1", Current: "v1"}}}},
		{Seq: 2, Run: "r", Time: at, Type: engine.EvHostOutput, Host: "web-1", Command: "restart", Message: hostile},
		{Seq: 3, Run: "r", Time: at, Type: engine.EvHostPhase, Host: "web-1", Phase: engine.PhaseFailed, Error: hostile},
		{Seq: 4, Run: "r", Time: at, Type: engine.EvNotice, Host: "web-1", Message: hostile},
		{Seq: 5, Run: "r", Time: at, Type: engine.EvChecklistItem, Item: &engine.ChecklistItem{ID: "x", Title: "x", State: "failed", Evidence: hostile}},
		{Seq: 6, Run: "r", Time: at, Type: engine.EvRunFinished, Outcome: engine.OutcomeFailed, Error: hostile},
		{Seq: 7, Run: "r", Time: at, Type: engine.EvReport, Report: &engine.Report{Verdict: hostile, Failed: []string{"web-1"},
			Gates:     []engine.GateResult{{Step: 1, Verdict: engine.VerdictFail, Reason: hostile}},
			Checklist: []engine.ChecklistItem{{Title: "x", State: "failed", Evidence: hostile}}}},
	}
	for _, ascii := range []bool{false, true} {
		for _, e := range evs {
			if s, _ := describe.NewGlyphs(ascii).Event(e); hasControl(s) || strings.Contains(s, "\n") {
				t.Errorf("describe %s: %q", e.Type, s)
			}
		}
	}
	var out bytes.Buffer
	p := lines.New(&out, false)
	for _, e := range evs {
		p.Print(e)
	}
	if hasControl(out.String()) || strings.Contains(out.String(), "\n12:00:00.000 run x finished") {
		t.Errorf("line output carries controls or a forged line:\n%q", out.String())
	}
	hub := engine.NewHub()
	hub.Publish(evs...)
	hub.SetSnapshot(engine.Fold(evs))
	out.Reset()
	serve.WriteStatus(&out, hub, nil, "shop", "prod", false)
	if hasControl(out.String()) || !strings.Contains(out.String(), `\x1b]0;owned`) {
		t.Errorf("status carries controls (or lost the escaped text):\n%q", out.String())
	}
}
