package tui

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"flightdeck/engine"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// keyMsg builds the key press a terminal would deliver for a key name.
func keyMsg(k string) tea.KeyPressMsg {
	switch k {
	case "space":
		return tea.KeyPressMsg{Code: tea.KeySpace, Text: " "}
	case "enter":
		return tea.KeyPressMsg{Code: tea.KeyEnter}
	case "esc":
		return tea.KeyPressMsg{Code: tea.KeyEscape}
	case "tab":
		return tea.KeyPressMsg{Code: tea.KeyTab}
	case "backspace":
		return tea.KeyPressMsg{Code: tea.KeyBackspace}
	case "down":
		return tea.KeyPressMsg{Code: tea.KeyDown}
	case "ctrl+c":
		return tea.KeyPressMsg{Code: 'c', Mod: tea.ModCtrl}
	case "ctrl+p":
		return tea.KeyPressMsg{Code: 'p', Mod: tea.ModCtrl}
	}
	r := []rune(k)[0]
	if r >= 'A' && r <= 'Z' {
		return tea.KeyPressMsg{Code: r + ('a' - 'A'), ShiftedCode: r, Text: k, Mod: tea.ModShift}
	}
	return tea.KeyPressMsg{Code: r, Text: k}
}

// press sends keys to the model and runs the commands they return (the
// way the program would), feeding their results back. It returns the
// messages the commands produced.
func press(t *testing.T, m *Model, keys ...string) []tea.Msg {
	t.Helper()
	var out []tea.Msg
	for _, k := range keys {
		_, cmd := m.Update(keyMsg(k))
		out = append(out, runCmd(m, cmd)...)
	}
	return out
}

func runCmd(m *Model, cmd tea.Cmd) []tea.Msg {
	if cmd == nil {
		return nil
	}
	msg := cmd()
	switch msg := msg.(type) {
	case tea.BatchMsg:
		var out []tea.Msg
		for _, c := range msg {
			out = append(out, runCmd(m, c)...)
		}
		return out
	case resultMsg, historyMsg:
		m.Update(msg)
	}
	return []tea.Msg{msg}
}

func screen(m *Model) string { return ansi.Strip(m.Render()) }

func canaryRun() []engine.Event {
	evs := rollingRun(4)
	evs[0].Start.Strategy = "canary"
	evs[0].Start.Steps = []int{5, 25, 100}
	w := 5.0
	target := 25.0
	return withEvents(evs, time.Second,
		engine.Event{Type: engine.EvStepStarted, Weight: &w, Wave: 1, Release: "r42"},
		engine.Event{Type: engine.EvWeightSet, Weight: &w, Release: "r42", Actor: "auto"},
		engine.Event{Type: engine.EvStepStarted, Weight: &target, Wave: 2, Release: "r42"},
		engine.Event{Type: engine.EvWaiting, Until: t0.Add(time.Minute), Message: "holding step 2"})
}

// throughTraffic is evs with the run started through a traffic layer of kind.
func throughTraffic(evs []engine.Event, kind string) []engine.Event {
	start := *evs[0].Start
	start.Traffic = kind
	evs[0].Start = &start
	return evs
}

func finishedRun() []engine.Event {
	evs := rollingRun(4)
	var more []engine.Event
	for _, h := range []string{"web-01", "web-02", "web-03", "web-04"} {
		more = append(more, engine.Event{Type: engine.EvHostPhase, Host: h, Phase: engine.PhaseLive, Release: "r42"})
	}
	more = append(more,
		engine.Event{Type: engine.EvReport, Report: &engine.Report{Strategy: "rolling", Hosts: 4, Outcome: engine.OutcomeSucceeded, Verdict: "SUCCEEDED"}},
		engine.Event{Type: engine.EvRunFinished, Outcome: engine.OutcomeSucceeded, Release: "r42"})
	return withEvents(evs, time.Second, more...)
}

func TestKeysSendCommands(t *testing.T) {
	paused := withEvents(rollingRun(4), time.Second, engine.Event{Type: engine.EvPaused, Actor: "bob"})
	tests := []struct {
		name   string
		evs    []engine.Event
		keys   []string
		want   []engine.Command
		screen string // must appear on screen afterwards
	}{
		{name: "p pauses", evs: rollingRun(4), keys: []string{"p"}, want: []engine.Command{{Kind: engine.CmdPause}}},
		{name: "p resumes a paused run", evs: paused, keys: []string{"p"}, want: []engine.Command{{Kind: engine.CmdResume}}},
		{name: "r asks, y rolls back", evs: rollingRun(4), keys: []string{"r", "y"}, want: []engine.Command{{Kind: engine.CmdRollback}}},
		{name: "r asks, n cancels", evs: rollingRun(4), keys: []string{"r", "n"}, screen: "cancelled"},
		{name: "r asks, esc cancels", evs: rollingRun(4), keys: []string{"r", "esc"}},
		{name: "a asks, enter aborts", evs: rollingRun(4), keys: []string{"a", "enter"}, want: []engine.Command{{Kind: engine.CmdAbort}}},
		{name: "space acks the selected item", evs: rollingRun(4), keys: []string{"tab", "tab", "j", "space"},
			want: []engine.Command{{Kind: engine.CmdAck, Item: "migrations"}}},
		{name: "space on a verified item says why", evs: rollingRun(4), keys: []string{"space"}, screen: "ack: health-503 is already verified; nothing to acknowledge"},
		{name: "+ on a rolling run says why", evs: rollingRun(4), keys: []string{"+"}, screen: "step: step-up needs a traffic strategy (canary, bluegreen, ab); this run is rolling"},
		{name: "canary +", evs: canaryRun(), keys: []string{"+"}, want: []engine.Command{{Kind: engine.CmdStepUp}}},
		{name: "canary -", evs: canaryRun(), keys: []string{"-"}, want: []engine.Command{{Kind: engine.CmdStepDown}}},
		{name: "canary P", evs: canaryRun(), keys: []string{"P"}, want: []engine.Command{{Kind: engine.CmdPromote}}},
		{name: "canary ctrl+p asks", evs: canaryRun(), keys: []string{"ctrl+p", "y"}, want: []engine.Command{{Kind: engine.CmdPromoteAll}}},
		{name: "pause on a finished run says why", evs: finishedRun(), keys: []string{"p"}, screen: "pause: no run"},
		{name: "deploy refused to an operator", evs: rollingRun(4), keys: []string{"d"}, screen: "deploy: alice (operator) may not start a deploy"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, rec := loaded(tc.evs, 100, 30, nil)
			defer m.Close()
			press(t, m, tc.keys...)
			got := rec.commands()
			if len(got) != len(tc.want) {
				t.Fatalf("commands %+v, want %+v", got, tc.want)
			}
			for i, c := range got {
				if c.Kind != tc.want[i].Kind || c.Item != tc.want[i].Item || c.Actor != alice {
					t.Errorf("command %d = %+v, want %+v by alice", i, c, tc.want[i])
				}
			}
			if tc.screen != "" && !strings.Contains(screen(m), tc.screen) {
				t.Errorf("screen lacks %q:\n%s", tc.screen, screen(m))
			}
			if m.overlay != overlayNone {
				t.Errorf("a dialog is still open")
			}
		})
	}
}

func TestRollbackDialogNamesTargetAndHosts(t *testing.T) {
	m, rec := loaded(rollingRun(4), 100, 30, nil)
	defer m.Close()
	press(t, m, "r")
	s := screen(m)
	for _, want := range []string{"Roll back shop/prod?", "r42 (being deployed by run prod-20250314T093000-abc) → r41", "Hosts affected: 2 of 4: web-01, web-02"} {
		if !strings.Contains(s, want) {
			t.Errorf("rollback dialog lacks %q:\n%s", want, s)
		}
	}
	press(t, m, "q") // q cancels a dialog; it never quits from one
	if len(rec.commands()) != 0 || m.overlay != overlayNone {
		t.Fatalf("q in a dialog should cancel it: %+v", rec.commands())
	}
}

func TestBetweenRuns(t *testing.T) {
	m, rec := loadedOn(&faultRecorder{recorder: newRecorder(), fault: "5 % of requests answer 500"}, finishedRun(), 100, 30,
		func(o *Options) { o.Actor = olga })
	defer m.Close()
	press(t, m, "r")
	s := screen(m)
	if !strings.Contains(s, "r42 → r41") || !strings.Contains(s, "Hosts affected: 4 of 4") {
		t.Fatalf("dialog:\n%s", s)
	}
	press(t, m, "y")
	press(t, m, "d")
	if s := screen(m); !strings.Contains(s, "Deploy a new release of shop/prod?") || !strings.Contains(s, "Live now: r42") {
		t.Fatalf("d does not ask to confirm:\n%s", s)
	}
	press(t, m, "y")
	press(t, m, "D")
	if s := screen(m); !strings.Contains(s, "5 % of requests answer 500") {
		t.Fatalf("D does not name its fault:\n%s", s)
	}
	press(t, m, "y")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.rollbacks) != 1 || rec.rollbacks[0] != "r41" {
		t.Errorf("rollbacks %v, want [r41]", rec.rollbacks)
	}
	if fmt.Sprint(rec.deploys) != "[good faulty]" {
		t.Errorf("deploys %v, want a good then a bad one", rec.deploys)
	}
	if len(rec.cmds) != 0 {
		t.Errorf("between runs nothing goes to a run: %v", rec.cmds)
	}
}

func TestRefusedCommandShowsError(t *testing.T) {
	m, rec := loaded(rollingRun(4), 100, 30, nil)
	defer m.Close()
	rec.sendErr = fmt.Errorf("alice (viewer) may not pause: %w", engine.ErrNotAllowed)
	press(t, m, "p")
	if s := screen(m); !strings.Contains(s, "pause: alice (viewer) may not pause: not allowed") {
		t.Fatalf("refusal not shown:\n%s", s)
	}
}

func TestReadOnlyHidesActions(t *testing.T) {
	m, rec := loaded(rollingRun(4), 160, 48, func(o *Options) { o.ReadOnly = true })
	defer m.Close()
	press(t, m, "p", "r", "a", "space", "d")
	if len(rec.commands()) != 0 || m.overlay != overlayNone {
		t.Fatalf("read-only sent %v", rec.commands())
	}
	bar := ansi.Strip(m.keyBar(160))
	for _, hidden := range []string{"pause", "rollback", "abort", "ack", "deploy"} {
		if strings.Contains(bar, hidden) {
			t.Errorf("key bar %q shows %s in read-only mode", bar, hidden)
		}
	}
	if s := screen(m); !strings.Contains(strings.SplitN(s, "\n", 2)[0], "read-only") {
		t.Errorf("header should say read-only: %s", strings.SplitN(s, "\n", 2)[0])
	}
	if !strings.Contains(bar, "filter") || !strings.Contains(bar, "help") {
		t.Errorf("key bar %q should keep the read-only keys", bar)
	}
	press(t, m, "?")
	if s := screen(m); !strings.Contains(s, "roll back (asks to confirm)  (hidden: read-only)") {
		t.Errorf("help should say why rollback is hidden:\n%s", s)
	}
}

func TestFilter(t *testing.T) {
	m, _ := loaded(rollingRun(12), 100, 30, nil)
	defer m.Close()
	press(t, m, "/", "1", "0")
	if m.fleetLen() != 1 || m.hostAt(0).Name != "web-10" {
		t.Fatalf("filter %q matched %d hosts", m.filter, m.fleetLen())
	}
	if s := screen(m); !strings.Contains(s, "1 of 12 hosts") || strings.Contains(s, "web-03") {
		t.Errorf("filtered fleet:\n%s", s)
	}
	press(t, m, "backspace")
	if m.fleetLen() != 4 { // web-01, web-10, web-11, web-12
		t.Errorf("after backspace %q matched %d hosts, want 4", m.filter, m.fleetLen())
	}
	press(t, m, "enter", "p") // typing ends: p is a key again
	if m.filter != "1" || m.filterOn {
		t.Errorf("enter should keep the filter: %q on=%v", m.filter, m.filterOn)
	}
	press(t, m, "esc")
	if m.filter != "" || m.fleetLen() != 12 {
		t.Errorf("esc should clear the filter: %q %d", m.filter, m.fleetLen())
	}
	press(t, m, "/", "z", "z", "esc")
	if m.filter != "" || m.filterOn {
		t.Errorf("esc while typing should clear: %q", m.filter)
	}
}

func TestPaneCyclingAndMovement(t *testing.T) {
	m, _ := loaded(rollingRun(12), 100, 30, nil)
	defer m.Close()
	press(t, m, "j", "j", "down")
	if m.cursor != 3 || m.selectedHost != "web-04" {
		t.Fatalf("cursor %d (%s), want 3 (web-04)", m.cursor, m.selectedHost)
	}
	want := []pane{paneSLO, paneChecklist, paneEvents, paneFleet}
	for _, p := range want {
		press(t, m, "tab")
		if m.focus != p {
			t.Fatalf("focus %v, want %v", m.focus, p)
		}
	}
	press(t, m, "tab", "tab", "j", "j", "j", "j", "j")
	if m.checkCursor != 3 {
		t.Errorf("checklist cursor %d, want 3 (clamped at the last item)", m.checkCursor)
	}
	if m.cursor != 3 {
		t.Errorf("moving in the checklist moved the fleet cursor to %d", m.cursor)
	}
	press(t, m, "tab", "tab", "enter")
	if m.overlay != overlayDetails || m.details != "web-04" {
		t.Fatalf("enter should open web-04's details, got %v %q", m.overlay, m.details)
	}
	press(t, m, "esc")
	m.focus = paneFleet
	press(t, m, "k", "k", "k", "enter")
	s := screen(m)
	for _, want := range []string{"Host web-01", "Phase history", "restarting", "restart| restarting shop (pid 4242)"} {
		if !strings.Contains(s, want) {
			t.Errorf("details lack %q:\n%s", want, s)
		}
	}
}

func TestFleetScrollsWithThousandsOfHosts(t *testing.T) {
	m, _ := loaded(rollingRun(2000), 100, 30, nil)
	defer m.Close()
	for range 1500 {
		m.Update(keyMsg("j"))
	}
	m.Update(keyMsg("pgdown"))
	s := screen(m)
	if !strings.Contains(s, "▸ web-"+fmt.Sprint(1501+m.fleetRows-1)) && m.cursor <= 1500 {
		t.Errorf("cursor %d after 1500 j and a page down", m.cursor)
	}
	if !strings.Contains(s, "▸ "+m.selectedHost) {
		t.Errorf("selected host %s not on screen:\n%s", m.selectedHost, s)
	}
}

func TestRemappedKeys(t *testing.T) {
	cfg, err := ParseConfig("config.yaml", []byte("keys:\n  pause: [\"x\"]\n  rollback: [\"r\", \"R\"]\n  help: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	m, rec := loaded(rollingRun(4), 100, 30, func(o *Options) { o.KeyMap = &cfg.Keys })
	defer m.Close()
	press(t, m, "p", "?")
	if len(rec.commands()) != 0 || m.overlay != overlayNone {
		t.Fatalf("unbound keys acted: %v overlay %v", rec.commands(), m.overlay)
	}
	press(t, m, "x")
	press(t, m, "R", "y")
	got := rec.commands()
	if len(got) != 2 || got[0].Kind != engine.CmdPause || got[1].Kind != engine.CmdRollback {
		t.Fatalf("commands %+v, want pause then rollback", got)
	}
	if bar := ansi.Strip(m.keyBar(100)); !strings.Contains(bar, "x pause") || strings.Contains(bar, "? help") {
		t.Errorf("key bar %q should show the remapped keys", bar)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct{ file, err string }{
		{"keys:\n  pasue: [\"p\"]\n", "config.yaml:2:3: unknown action \"pasue\""},
		{"keys:\n  pause: [\"r\"]\n", "config.yaml:2:3: key \"r\" is bound to both pause and rollback"},
		{"keys:\n  quit: [\"ctrl+c\"]\n", "ctrl+c always quits"},
		{"keys: [p]\n", "config.yaml:1:7: keys must map an action"},
		{"theme: neon\n", "unknown theme \"neon\""},
		{"ascii: maybe\n", "config.yaml:1:8: ascii must be true or false"},
		{"colour: red\n", "config.yaml:1:1: unknown setting \"colour\""},
		{"keys:\n  pause: [\n", "config.yaml:"},
	}
	for _, tc := range tests {
		_, err := ParseConfig("config.yaml", []byte(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%q: err %v, want %q", tc.file, err, tc.err)
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "night.yaml"), []byte("base: dark\ncolors: {ok: \"#00ff00\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(p, []byte("theme: night.yaml\nascii: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	th, err := cfg.LoadTheme()
	if err != nil || th.Name != filepath.Join(dir, "night.yaml") || cfg.ASCII == nil || !*cfg.ASCII {
		t.Fatalf("theme %q %v ascii %v", th.Name, err, cfg.ASCII)
	}
	if _, err := LoadConfig(filepath.Join(dir, "none.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing config: %v, want ErrNotExist", err)
	}
	if got := DefaultConfigPath(func(k string) string { return map[string]string{"XDG_CONFIG_HOME": "/x"}[k] }); got != "/x/flightdeck/config.yaml" {
		t.Errorf("DefaultConfigPath = %q", got)
	}
}

func TestQuit(t *testing.T) {
	m, _ := loaded(rollingRun(4), 100, 30, nil)
	press(t, m, "q")
	if s := screen(m); m.overlay != overlayConfirm || !strings.Contains(s, "The run continues without the cockpit") {
		t.Fatalf("q during a run should ask:\n%s", s)
	}
	msgs := press(t, m, "y")
	if len(msgs) != 1 {
		t.Fatalf("msgs %v", msgs)
	}
	if _, ok := msgs[0].(tea.QuitMsg); !ok {
		t.Fatalf("y should quit, got %T", msgs[0])
	}
	select {
	case <-m.stop:
	default:
		t.Error("quitting should end the subscription")
	}

	m2, _ := loaded(rollingRun(4), 100, 30, func(o *Options) { o.QuitStopsRun = true })
	press(t, m2, "q")
	if s := screen(m2); !strings.Contains(s, "Quitting interrupts the run") {
		t.Errorf("quit dialog should say the run is interrupted:\n%s", s)
	}
	if msgs := press(t, m2, "ctrl+c"); len(msgs) != 1 {
		t.Errorf("ctrl+c should quit at once, got %v", msgs)
	} else if _, ok := msgs[0].(tea.QuitMsg); !ok {
		t.Errorf("ctrl+c: %T", msgs[0])
	}

	m3, _ := loaded(finishedRun(), 100, 30, nil)
	if msgs := press(t, m3, "q"); len(msgs) != 1 {
		t.Errorf("q between runs should quit at once, got %v", msgs)
	}
}

func TestFeedIsCoalesced(t *testing.T) {
	rec := newRecorder()
	m := New(rec, Options{Actor: alice, TickEvery: -1})
	defer m.Close()
	evs := rollingRun(50)
	rec.hub.Publish(evs...)
	rec.hub.SetSnapshot(engine.Fold(evs))
	msg := m.listen()()
	f, ok := msg.(feedMsg)
	if !ok {
		t.Fatalf("listen returned %T", msg)
	}
	if len(f.evs) != len(evs) || f.snap.Run != evs[0].Run {
		t.Fatalf("one feed should carry all %d events and the snapshot, got %d", len(evs), len(f.evs))
	}
	m.Update(f)
	// The next feed waits at least feedEvery after the last one, however
	// many events arrive meanwhile.
	start := time.Now()
	m.lastFeed = start
	cmd := m.listen()
	for i := range 1000 {
		rec.hub.Publish(engine.Event{Seq: uint64(1000 + i), Type: engine.EvNotice, Message: "n"})
	}
	f2 := cmd().(feedMsg)
	if el := time.Since(start); el < feedEvery {
		t.Errorf("feed after %v, want ≥ %v", el, feedEvery)
	}
	if len(f2.evs)+f2.lost != 1000 {
		t.Errorf("feed carried %d events + %d lost, want 1000", len(f2.evs), f2.lost)
	}
	// Closing the model ends a waiting listener.
	cmd = m.listen()
	done := make(chan tea.Msg)
	go func() { done <- cmd() }()
	m.Close()
	if msg := <-done; msg != nil {
		t.Errorf("listener after Close returned %T", msg)
	}
}

func TestLayoutFitsEverySize(t *testing.T) {
	states := map[string][]engine.Event{"rolling": rollingRun(40), "canary": canaryRun(), "finished": finishedRun()}
	sizes := [][2]int{{80, 24}, {100, 30}, {120, 40}, {160, 48}, {200, 60}, {60, 20}, {40, 12}, {20, 4}}
	overlays := []string{"", "?", "r", "enter"}
	for name, evs := range states {
		for _, sz := range sizes {
			for _, ov := range overlays {
				for _, ascii := range []bool{false, true} {
					m, _ := loaded(evs, sz[0], sz[1], func(o *Options) { o.ASCII = ascii })
					if ov != "" {
						press(t, m, ov)
					}
					lines := strings.Split(m.Render(), "\n")
					if len(lines) != sz[1] {
						t.Errorf("%s %dx%d %q: %d lines", name, sz[0], sz[1], ov, len(lines))
					}
					for i, l := range lines {
						if w := ansi.StringWidth(l); w > sz[0] {
							t.Errorf("%s %dx%d %q: line %d is %d wide: %q", name, sz[0], sz[1], ov, i, w, ansi.Strip(l))
						}
						if ascii && strings.ContainsFunc(ansi.Strip(l), func(r rune) bool { return r > 127 }) {
							t.Errorf("%s %dx%d %q ascii: line %d has Unicode: %q", name, sz[0], sz[1], ov, i, ansi.Strip(l))
							break
						}
					}
					m.Close()
				}
			}
		}
	}
}

func TestStateShownByGlyphAndWord(t *testing.T) {
	paused := withEvents(rollingRun(4), time.Second, engine.Event{Type: engine.EvPaused, Actor: "bob"})
	rolling := withEvents(rollingRun(4), time.Second, engine.Event{Type: engine.EvRollbackStart, Actor: "alice", Command: "rollback", Message: "rollback by alice"})
	tests := []struct {
		name  string
		evs   []engine.Event
		ascii bool
		want  []string
	}{
		{"running", rollingRun(4), false, []string{"▶ RUNNING", "wave 1/2", "r41 → r42", "● live", "✓ up", "✗ breach", "✓ ok"}},
		{"canary", canaryRun(), false, []string{"weight 5% → 25% (step 2/3)", "step 2: 25% to r42", "next step in"}},
		{"paused", paused, false, []string{"‖ PAUSED by bob", "PAUSED by bob"}},
		{"rolling back", rolling, false, []string{"↶ ROLLING BACK by alice", "ROLLING BACK to each host's previous release by alice"}},
		{"finished", finishedRun(), false, []string{"✓ SUCCEEDED", "verdict: SUCCEEDED"}},
		{"through haproxy", throughTraffic(canaryRun(), "haproxy"), false, []string{"canary · via HAProxy"}},
		{"through nginx", throughTraffic(rollingRun(4), "nginx"), false, []string{"rolling · via nginx"}},
		{"through the router", throughTraffic(rollingRun(4), "flightdeck"), false, []string{"rolling · via router"}},
		{"ascii", rollingRun(4), true, []string{"> RUNNING", "r41 -> r42", "* live", "ok up", "x breach", "! migrations additive-only - needs ack"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := loaded(tc.evs, 160, 48, func(o *Options) { o.ASCII = tc.ascii })
			defer m.Close()
			s := screen(m)
			for _, w := range tc.want {
				if !strings.Contains(s, w) {
					t.Errorf("screen lacks %q:\n%s", w, s)
				}
			}
		})
	}
}

func TestSparkline(t *testing.T) {
	m, _ := loaded(rollingRun(2), 80, 24, func(o *Options) { o.ASCII = false })
	defer m.Close()
	thr := 0.001
	vals := []float64{0, 0.0005, 0.001, 0.0015, 0.002, 0.01}
	got := ansi.Strip(m.sparkline(vals, 2*thr, 8, func(v float64) level { return classify(v, thr) }))
	if got != "  ▁▃▅▇██" {
		t.Errorf("sparkline %q", got)
	}
	m2, _ := loaded(rollingRun(2), 80, 24, func(o *Options) { o.ASCII = true })
	defer m2.Close()
	if got := ansi.Strip(m2.sparkline(vals, 2*thr, 6, func(float64) level { return lvOK })); got != "_.-=##" {
		t.Errorf("ascii sparkline %q", got)
	}
	for _, tc := range []struct {
		v    float64
		want level
	}{{0.0005, lvOK}, {0.0009, lvWarn}, {0.0011, lvBreach}} {
		if got := classify(tc.v, thr); got != tc.want {
			t.Errorf("classify(%v) = %v, want %v", tc.v, got, tc.want)
		}
	}
}

func TestGolden(t *testing.T) {
	paused := withEvents(rollingRun(12), time.Second, engine.Event{Type: engine.EvPaused, Actor: "alice"})
	rolled := withEvents(rollingRun(12), time.Second,
		engine.Event{Type: engine.EvRollbackStart, Actor: "alice", Command: "rollback", Message: "rollback by alice"},
		engine.Event{Type: engine.EvHostPhase, Host: "web-01", Phase: engine.PhaseReverting, Release: "r41"},
		engine.Event{Type: engine.EvHostPhase, Host: "web-01", Phase: engine.PhaseReverted, Release: "r41"},
		engine.Event{Type: engine.EvHostPhase, Host: "web-02", Phase: engine.PhaseReverted, Release: "r41"},
		engine.Event{Type: engine.EvRolledBack, Target: "r41", Message: "rollback finished in 1.2s"},
		engine.Event{Type: engine.EvReport, Report: &engine.Report{Outcome: engine.OutcomeRolledBack, Verdict: "ROLLED BACK: rollback by alice", RTO: 1200 * time.Millisecond}},
		engine.Event{Type: engine.EvRunFinished, Outcome: engine.OutcomeRolledBack, Error: "rollback by alice"})
	tests := []struct {
		name string
		evs  []engine.Event
		w, h int
		keys []string
		pres []Presence
	}{
		{name: "rolling-80x24", evs: rollingRun(12), w: 80, h: 24},
		{name: "rolling-160x48", evs: rollingRun(12), w: 160, h: 48, pres: []Presence{{Name: "alice", Role: engine.RoleOperator, Via: "tui"}, {Name: "bob", Role: engine.RoleViewer, Via: "ssh"}}},
		{name: "paused-80x24", evs: paused, w: 80, h: 24},
		{name: "rollback-confirm-80x24", evs: rollingRun(12), w: 80, h: 24, keys: []string{"r"}},
		{name: "rolled-back-160x48", evs: rolled, w: 160, h: 48},
		{name: "canary-160x48", evs: canaryRun(), w: 160, h: 48},
		{name: "help-80x24", evs: rollingRun(12), w: 80, h: 24, keys: []string{"?"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, rec := loaded(tc.evs, tc.w, tc.h, nil)
			defer m.Close()
			if tc.pres != nil {
				rec.presence = tc.pres
				m.presence = tc.pres
				m.stateVer++
			}
			press(t, m, tc.keys...)
			got := screen(m)
			// Trailing blanks are not part of the picture.
			lines := strings.Split(got, "\n")
			for i := range lines {
				lines[i] = strings.TrimRight(lines[i], " ")
			}
			got = strings.Join(lines, "\n") + "\n"
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./tui -update)", err)
			}
			if got != string(want) {
				t.Errorf("screen differs from %s (go test ./tui -run TestGolden -update rewrites it)\n--- got\n%s--- want\n%s", path, got, want)
			}
		})
	}
}

func TestPickTheme(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	cfg := Config{Theme: "dark"}
	for _, tc := range []struct {
		noColor bool
		getenv  func(string) string
		want    string
	}{
		{false, env("TERM", "xterm-256color"), "dark"},
		{true, env("TERM", "xterm-256color"), "mono"},
		{false, env("NO_COLOR", "1"), "mono"},
		{false, env("TERM", "dumb"), "mono"},
	} {
		th, err := PickTheme(cfg, tc.noColor, tc.getenv)
		if err != nil || th.Name != tc.want {
			t.Errorf("PickTheme(noColor=%v) = %q, %v; want %q", tc.noColor, th.Name, err, tc.want)
		}
	}
}

func TestPresenceShownAndRefreshed(t *testing.T) {
	m, rec := loaded(rollingRun(4), 160, 48, nil)
	defer m.Close()
	rec.mu.Lock()
	rec.presence = []Presence{{Name: "alice", Role: engine.RoleOperator, Via: "tui"}, {Name: "bob", Role: engine.RoleViewer, Via: "ssh"}}
	rec.mu.Unlock()
	m.Update(tickMsg(time.Now()))
	if s := screen(m); !strings.Contains(s, "on: alice(operator) bob(viewer)") {
		t.Errorf("header lacks who is connected:\n%s", strings.SplitN(s, "\n", 2)[0])
	}
}

// TestApproveKey: A approves a promotion another operator proposed; the
// proposer sees why it is disabled for them.
func TestApproveKey(t *testing.T) {
	for _, tt := range []struct {
		name    string
		by      string
		wantCmd bool
	}{
		{"another operator's proposal", "bob", true},
		{"my own proposal", "alice", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := engine.Fold([]engine.Event{
				{Seq: 1, Type: engine.EvRunStarted, Start: &engine.RunInfo{Kind: engine.KindDeploy, Strategy: "canary", Release: "r2", Previous: "r1",
					Steps: []int{5, 25, 100}, Hosts: []engine.RunHost{{Name: "a", Current: "r1"}}}},
				{Seq: 2, Type: engine.EvStepStarted, Wave: 2},
				{Seq: 3, Type: engine.EvApprovalRequested, Actor: tt.by, Wave: 3},
			})
			m := New(newRecorder(), Options{Actor: engine.Actor{Name: "alice", Role: engine.RoleOperator}})
			defer m.Close()
			m.snap = st
			a := m.avail(ActApprove)
			if a.ok != tt.wantCmd {
				t.Fatalf("approve available = %v (%s), want %v", a.ok, a.why, tt.wantCmd)
			}
		})
	}
}
