package teatest

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/exp/golden"
	xt "github.com/charmbracelet/x/exp/teatest/v2"

	"flightdeck/engine"
	"flightdeck/engine/plan"
	"flightdeck/themes"
	"flightdeck/tui"
)

// framedReplay keeps the last frame a replay drew.
type framedReplay struct {
	*tui.Replay
	frames
}

func (f *framedReplay) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	_, cmd := f.Replay.Update(msg)
	return f, cmd
}

func (f *framedReplay) View() tea.View { return f.keep(f.Replay.View()) }

// TestReplayShowsTheRunsFinalScreen (acceptance 5 of issue 15): a run
// driven from the cockpit (deploy, pause, resume) is played back from its
// journal; at the end of the replay the fleet, SLO, checklist and event
// panes are the screen the run ended on, line for line, and the replay
// changes nothing. The replay's final screen is also kept as a golden file
// (times normalised).
func TestReplayShowsTheRunsFinalScreen(t *testing.T) {
	f := newFleet(t, 4)
	// One host at a time, so that the journal's order (and the golden
	// screen) does not depend on scheduling.
	f.env.Parallel, f.env.Strategy.WaveSize = 1, plan.Size{N: 1, Set: true}
	f.deployR1()
	b := f.backend()
	s := cockpit(t, b)
	s.press("d")
	s.waitFor(t, "Deploy a new release of shop/prod?")
	s.press("y")
	s.waitFor(t, "▶ RUNNING", "↻ restarting")
	s.press("p")
	s.waitFor(t, "‖ PAUSED by alice")
	f.openGate()
	s.press("p")
	s.waitFor(t, "✓ SUCCEEDED", "run finished")
	b.wg.Wait()
	run := s.m.last()
	s.press("q")
	s.tm.WaitFinished(t, xt.WithFinalTimeout(10*time.Second))

	evs := journal(t, f)
	r := &framedReplay{Replay: tui.NewReplay(evs, tui.Options{Actor: operator, Theme: themes.NoColor(), Location: time.UTC}, 64)}
	t.Cleanup(r.Close)
	tm := xt.NewTestModel(t, r, xt.WithInitialTermSize(120, 40))
	xt.WaitFor(t, tm.Output(), func([]byte) bool {
		return strings.Contains(r.last(), "end of run") && strings.Contains(r.last(), "run finished")
	}, xt.WithDuration(30*time.Second), xt.WithCheckInterval(20*time.Millisecond))
	replay := r.last()

	runLines, replayLines := strings.Split(run, "\n"), strings.Split(replay, "\n")
	if len(runLines) != 40 || len(replayLines) != 40 {
		t.Fatalf("frames of %d and %d lines, want 40", len(runLines), len(replayLines))
	}
	// The panes: everything between the header and the status and key
	// lines. The event pane's title counts the lines the cockpit has
	// logged since it opened (the run's cockpit also saw the run before):
	// that number is not the run's.
	count := regexp.MustCompile(`─ Events \d+ `)
	for i := 1; i < 38; i++ {
		if count.ReplaceAllString(runLines[i], "─ Events N ") != count.ReplaceAllString(replayLines[i], "─ Events N ") {
			t.Errorf("line %d differs:\nrun:    %q\nreplay: %q", i, runLines[i], replayLines[i])
		}
	}
	if !strings.Contains(replayLines[0], "SUCCEEDED") || !strings.Contains(replayLines[0], "read-only") || !strings.Contains(replayLines[39], "REPLAY") {
		t.Errorf("header %q, bar %q; want the outcome, read-only and the replay's bar", replayLines[0], replayLines[39])
	}
	// Nothing was journaled by the replay.
	if after := journal(t, f); len(after) != len(evs) {
		t.Errorf("the journal grew from %d to %d events during the replay", len(evs), len(after))
	}

	// Seek back to the start (paused, as at the end): the cockpit shows
	// the run's beginning; end goes back to the end.
	tm.Send(tea.KeyPressMsg{Code: tea.KeyHome})
	xt.WaitFor(t, tm.Output(), func([]byte) bool {
		l := r.last()
		return strings.Contains(l, "paused · 0:00") && strings.Contains(l, "RUNNING") && strings.Contains(l, "queued")
	}, xt.WithDuration(10*time.Second), xt.WithCheckInterval(20*time.Millisecond))
	tm.Send(tea.KeyPressMsg{Code: tea.KeyEnd})
	xt.WaitFor(t, tm.Output(), func([]byte) bool {
		return strings.Contains(r.last(), "end of run") && strings.Contains(r.last(), "SUCCEEDED")
	}, xt.WithDuration(10*time.Second), xt.WithCheckInterval(20*time.Millisecond))
	tm.Type("q")
	tm.WaitFinished(t, xt.WithFinalTimeout(10*time.Second))

	// testdata/TestReplayShowsTheRunsFinalScreen.golden (-update rewrites it).
	golden.RequireEqual(t, normaliseTimes(replay))
}

var (
	clockRE = regexp.MustCompile(`\b\d\d:\d\d:\d\d(\.\d+)?\b`)
	posRE   = regexp.MustCompile(`\d+:\d\d / \d+:\d\d`)
	hostRE  = regexp.MustCompile(`^([▸ ] web-\d .*) \d+s( +)`)
)

// normaliseTimes replaces what differs from one test run to the next
// (clock times, the replay's position, each host's time in its phase) and
// trims trailing blanks.
func normaliseTimes(s string) string {
	s = clockRE.ReplaceAllString(s, "HH:MM:SS")
	s = posRE.ReplaceAllString(s, "M:SS / M:SS")
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = hostRE.ReplaceAllString(lines[i], "${1} Ns${2}")
		lines[i] = strings.TrimRight(lines[i], " ")
	}
	return strings.Join(lines, "\n") + "\n"
}

// TestTmuxReplayOfADemoRun: a demo release run in the real binary and its
// `flightdeck replay --speed 0` end on the same fleet (host, release,
// phase), checklist and event lines. The SLO pane and the fleet's REQ/S
// and ERR% are the run's live samples, which are not journaled: the
// replay draws the gate's journaled windows instead.
func TestTmuxReplayOfADemoRun(t *testing.T) {
	if testing.Short() {
		t.Skip("the tmux demo is skipped in -short mode")
	}
	t.Parallel()
	d := startDemo(t, nil, nil, "--hosts", "4", "--strategy", "rolling")
	// The release's end (the bootstrap run's "run finished" comes first).
	run := d.waitScreen("the release's end", waitLong, func(s string) bool {
		header, _, _ := strings.Cut(s, "\n")
		return strings.Contains(header, "v1 → v2") && !strings.Contains(header, "RUNNING") && !strings.Contains(header, "PAUSED") &&
			strings.Contains(s, "run finished")
	})
	// And its journal is complete.
	deadline := time.Now().Add(waitLong)
	for {
		runs, err := engine.ListRuns(filepath.Join(d.dir, ".flightdeck"))
		if err != nil {
			t.Fatal(err)
		}
		if n := len(runs); n >= 2 && runs[n-1].Status == engine.StatusFinished && runs[n-1].Release == "v2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the release's journal is not finished: %+v", runs)
		}
		time.Sleep(100 * time.Millisecond) // poll interval, not synchronisation
	}
	d.run("new-session", "-d", "-s", "replay", "-x", "160", "-y", "48",
		"-e", "XDG_CONFIG_HOME="+filepath.Join(filepath.Dir(d.dir), "config"),
		binary, "replay", "-f", filepath.Join(d.dir, "flightdeck.yaml"), "last", "--speed", "0")
	var replay string
	deadline = time.Now().Add(waitLong)
	for {
		replay = d.run("capture-pane", "-p", "-t", "replay")
		if strings.Contains(replay, "end of run") && strings.Contains(replay, "run finished") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replay did not reach the end:\n%s", replay)
		}
		time.Sleep(100 * time.Millisecond) // poll interval, not synchronisation
	}
	fleetRows := func(s string) []string {
		var out []string
		for _, l := range strings.Split(s, "\n") {
			f := strings.Fields(l)
			if len(f) > 4 && f[0] == "▸" {
				f = f[1:]
			}
			if len(f) > 3 && strings.HasPrefix(f[0], "web-") {
				out = append(out, strings.Join(f[:4], " ")) // host, release, phase glyph and word
			}
		}
		return out
	}
	checklist := func(s string) []string {
		var out []string
		in := false
		for _, l := range strings.Split(s, "\n") {
			i := strings.LastIndex(l, "│")
			if i < 0 {
				continue
			}
			right := strings.TrimSpace(l[i+len("│"):])
			if strings.HasPrefix(right, "─ Checklist") {
				in = true
			}
			if in && right != "" {
				out = append(out, right)
			}
		}
		return out
	}
	events := func(s string) []string {
		lines := strings.Split(s, "\n")
		for i, l := range lines {
			if strings.HasPrefix(l, "─ Events") {
				return lines[i+1 : len(lines)-2]
			}
		}
		return nil
	}
	for _, part := range []struct {
		name string
		get  func(string) []string
	}{{"fleet", fleetRows}, {"checklist", checklist}, {"events", events}} {
		a, b := part.get(run), part.get(replay)
		if len(a) == 0 || strings.Join(a, "\n") != strings.Join(b, "\n") {
			t.Errorf("%s differs:\n--- run\n%s\n--- replay\n%s", part.name, strings.Join(a, "\n"), strings.Join(b, "\n"))
		}
	}
	d.run("send-keys", "-t", "replay", "q")
	if code := d.quit(); code != 0 && code != 1 {
		t.Errorf("the demo exited with status %d", code)
	}
}
