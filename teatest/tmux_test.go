package teatest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"flightdeck/engine"
)

// The tests in this file drive the real flightdeck binary inside tmux (a
// real terminal emulator): they type keys with `tmux send-keys` and read
// the screen with `tmux capture-pane`.

// binary is the flightdeck binary built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flightdeck-teatest-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "flightdeck")
	if out, err := exec.Command("go", "build", "-o", binary, "flightdeck/cmd/flightdeck").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build flightdeck: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// waitLong bounds each wait for the demo: it holds every canary step for
// at least 10 s and waits for the gate, on a shared, loaded machine.
const waitLong = 60 * time.Second

// needTmux skips (or fails under CI=true) when Debian's tmux is missing.
func needTmux(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("tmux")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("tmux not found: install the Debian package tmux")
		}
		t.Skip("tmux not found: install the Debian package tmux to run this test")
	}
	return p
}

// tmuxDemo is one `flightdeck demo` running in its own tmux server.
type tmuxDemo struct {
	t      *testing.T
	tmux   string
	sock   string
	dir    string // the demo's --dir
	status string // the file sh writes the demo's exit status to
	pid    int    // the demo process
}

// startDemo starts `flightdeck demo --dir <tmp> args...` in a detached
// 160×48 tmux session of a private tmux server. env is set in the
// session's environment (tmux new-session -e); wrap, when not empty, runs
// the binary through env(1) with these assignments (for TERM, which tmux
// itself sets in a pane).
func startDemo(t *testing.T, env, wrap []string, args ...string) *tmuxDemo {
	t.Helper()
	tm := needTmux(t)
	// A short directory: the tmux socket path must fit in sun_path.
	base, err := os.MkdirTemp("", "fdtmux-")
	if err != nil {
		t.Fatal(err)
	}
	d := &tmuxDemo{t: t, tmux: tm, sock: filepath.Join(base, "sock"), dir: filepath.Join(base, "fleet"), status: filepath.Join(base, "status")}
	xdg := filepath.Join(base, "config") // no user config file: default keys and theme
	if err := os.MkdirAll(xdg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command(d.tmux, "-S", d.sock, "kill-server").Run()
		if d.pid > 0 {
			// The demo is our child's child: if it outlived the tmux server
			// (it should not), stop it by its own pid.
			if p, err := os.FindProcess(d.pid); err == nil && processAlive(d.pid) {
				_ = p.Kill()
			}
		}
		chmodWritable(base)
		os.RemoveAll(base)
	})
	cmdline := []string{"-S", d.sock, "-f", "/dev/null", "new-session", "-d", "-s", "demo", "-x", "160", "-y", "48"}
	for _, kv := range append([]string{"XDG_CONFIG_HOME=" + xdg}, env...) {
		cmdline = append(cmdline, "-e", kv)
	}
	if len(wrap) > 0 {
		cmdline = append(append(cmdline, "env"), wrap...)
	}
	cmdline = append(cmdline, "sh", "-c", `"$@"; echo "$?" > "$0"`, d.status, binary, "demo", "--dir", d.dir)
	cmdline = append(cmdline, args...)
	// Keep the pane after the process exits (to read its exit status) and
	// give the whole 160×48 to the pane (no status line).
	cmdline = append(cmdline, ";", "set-option", "-w", "remain-on-exit", "on", ";", "set-option", "status", "off")
	cmd := exec.Command(tm, cmdline...)
	cmd.Env = serverEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tmux new-session: %v\n%s", err, out)
	}
	sh, err := strconv.Atoi(strings.TrimSpace(d.run("display-message", "-p", "-t", "demo", "#{pane_pid}")))
	if err != nil {
		t.Fatalf("pane pid: %v", err)
	}
	deadline := time.Now().Add(waitLong)
	for d.pid = childOf(sh, binary); d.pid == 0; d.pid = childOf(sh, binary) {
		if dead, code := d.dead(); dead {
			t.Fatalf("the demo exited at once (status %d):\n%s", code, d.history())
		}
		if time.Now().After(deadline) {
			t.Fatalf("no demo process under the pane's shell (pid %d)", sh)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return d
}

// serverEnv is the environment the tmux server starts with: ours, without
// what would change colours or the terminal of the demo behind our back.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "NO_COLOR", "COLORTERM", "FLIGHTDECK_ACTOR", "TMUX", "XDG_CONFIG_HOME":
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (d *tmuxDemo) run(args ...string) string {
	d.t.Helper()
	cmd := exec.Command(d.tmux, append([]string{"-S", d.sock}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		d.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// screen is the pane as text; escapes adds the SGR sequences (-e).
func (d *tmuxDemo) screen(escapes bool) string {
	args := []string{"capture-pane", "-p", "-t", "demo"}
	if escapes {
		args = append(args, "-e")
	}
	return d.run(args...)
}

// history is the pane's whole scrollback and screen as text.
func (d *tmuxDemo) history() string {
	return d.run("capture-pane", "-p", "-J", "-S", "-", "-E", "-", "-t", "demo")
}

func (d *tmuxDemo) keys(keys ...string) {
	d.t.Helper()
	d.run(append([]string{"send-keys", "-t", "demo"}, keys...)...)
}

// waitScreen polls the screen until ok holds and returns it; it fails the
// test with the last screen at the deadline.
func (d *tmuxDemo) waitScreen(what string, timeout time.Duration, ok func(string) bool) string {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	var s string
	for {
		s = d.screen(false)
		if ok(s) {
			return s
		}
		if dead, code := d.dead(); dead {
			d.t.Fatalf("waiting for %s: the demo exited (status %d); screen:\n%s\nscrollback:\n%s", what, code, s, d.history())
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("waiting for %s: not within %s; screen:\n%s", what, timeout, s)
		}
		time.Sleep(100 * time.Millisecond) // poll interval, not synchronisation
	}
}

// waitText waits until the screen contains every one of texts.
func (d *tmuxDemo) waitText(timeout time.Duration, texts ...string) string {
	d.t.Helper()
	return d.waitScreen(fmt.Sprintf("%q", texts), timeout, func(s string) bool {
		for _, x := range texts {
			if !strings.Contains(s, x) {
				return false
			}
		}
		return true
	})
}

// dead reports whether the demo process has exited, and its exit status.
// The pane runs it under sh, which writes the status to a file: tmux's own
// #{pane_dead_status} depends on tmux reaping the process, and the tmux
// 3.3a server was seen to miss that SIGCHLD now and then, leaving a zombie
// and a pane that never reports a status.
func (d *tmuxDemo) dead() (bool, int) {
	b, err := os.ReadFile(d.status)
	if err != nil {
		return false, 0
	}
	code, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return false, 0 // being written
	}
	return true, code
}

// waitExit waits until the demo process has exited and returns its status.
func (d *tmuxDemo) waitExit(timeout time.Duration) int {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if dead, code := d.dead(); dead {
			return code
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("the demo did not exit within %s; screen:\n%s", timeout, d.screen(false))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// quit presses q, answers the quit dialog if the cockpit asks (a run in
// progress), and waits for the demo process to exit; it returns the exit
// status.
func (d *tmuxDemo) quit() int {
	d.t.Helper()
	d.keys("q")
	deadline := time.Now().Add(waitLong)
	answered := false
	for {
		if dead, code := d.dead(); dead {
			return code
		}
		if !answered && strings.Contains(d.screen(false), "Quit the cockpit?") {
			d.keys("y")
			answered = true
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("the demo did not exit after q within %s; screen:\n%s", waitLong, d.screen(false))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// assertNoLeftovers checks that the demo process is gone and that no
// demo-service process naming the demo's directory is still running.
func (d *tmuxDemo) assertNoLeftovers() {
	d.t.Helper()
	if processAlive(d.pid) {
		d.t.Errorf("the demo process %d is still running", d.pid)
	}
	for _, p := range processesNaming("demo-service", d.dir) {
		d.t.Errorf("demo-service process left running: %s", p)
	}
}

// processAlive reports whether pid runs (a zombie does not count).
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// childOf returns the pid of a running child of parent whose command
// line starts with exe, or 0.
func childOf(parent int, exe string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:]) // state, ppid, ...
		if len(f) < 2 || f[1] != strconv.Itoa(parent) {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if strings.HasPrefix(string(cmd), exe+"\x00") {
			return pid
		}
	}
	return 0
}

// processesNaming scans /proc for running processes whose command line
// contains every one of words.
func processesNaming(words ...string) []string {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var found []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 || !processAlive(pid) {
			continue
		}
		cmd := strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
		all := true
		for _, w := range words {
			all = all && strings.Contains(cmd, w)
		}
		if all {
			found = append(found, fmt.Sprintf("pid %d: %s", pid, cmd))
		}
	}
	return found
}

func chmodWritable(dir string) {
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
}

var sgr = regexp.MustCompile("\x1b\\[([0-9;:]*)m")

// colourSequences returns the SGR sequences of s that set a foreground or
// background colour (30–38, 40–48, 90–97, 100–107; 39 and 49 only reset
// to the default and are not colours).
func colourSequences(s string) []string {
	var found []string
	for _, m := range sgr.FindAllStringSubmatch(s, -1) {
		params := strings.FieldsFunc(m[1], func(r rune) bool { return r == ';' || r == ':' })
		for i := 0; i < len(params); i++ {
			n, err := strconv.Atoi(params[i])
			if err != nil {
				continue
			}
			colour := (n >= 30 && n <= 38) || (n >= 40 && n <= 48) || (n >= 90 && n <= 97) || (n >= 100 && n <= 107)
			if colour {
				found = append(found, strconv.Quote(m[0]))
				break
			}
			if n == 58 { // underline colour: skip its arguments
				break
			}
		}
	}
	return found
}

func TestColourSequences(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"plain", 0},
		{"\x1b[1mbold\x1b[0m \x1b[7mrev\x1b[m \x1b[39;49m", 0},
		{"\x1b[31mred", 1},
		{"\x1b[1;38;5;203mx", 1},
		{"\x1b[48;2;1;2;3mx", 1},
		{"\x1b[92mx\x1b[104my", 2},
		{"\x1b[4:3mcurly", 0},
	} {
		if got := len(colourSequences(tc.in)); got != tc.want {
			t.Errorf("colourSequences(%q) = %d sequences, want %d", tc.in, got, tc.want)
		}
	}
}

// cockpitDrawn reports whether the screen shows the header and the four
// panes with their titles.
func cockpitDrawn(s string) bool {
	for _, x := range []string{"flightdeck demo-shop/demo", "─ Fleet", "─ SLO", "─ Checklist", "─ Events", "web-4"} {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

// TestTmuxCockpitPauseRollbackQuit drives the real demo cockpit from the
// keyboard: panes and header, help, pause by the named operator, rollback
// with confirmation (journaled with the actor), quit without leftovers.
func TestTmuxCockpitPauseRollbackQuit(t *testing.T) {
	if testing.Short() {
		t.Skip("the tmux demo is skipped in -short mode")
	}
	t.Parallel()
	const actor = "tmux-pilot"
	d := startDemo(t, []string{"FLIGHTDECK_ACTOR=" + actor}, nil, "--hosts", "4")

	s := d.waitScreen("the cockpit", waitLong, cockpitDrawn)
	if !strings.Contains(s, "on: "+actor) {
		t.Errorf("the header does not name the operator %q:\n%s", actor, s)
	}
	if c := colourSequences(d.screen(true)); len(c) == 0 {
		t.Errorf("the dark theme drew no colour at all; the NO_COLOR test below proves nothing")
	}

	// Help opens on ? and closes on esc, then on ? again.
	for _, closer := range []string{"Escape", "?"} {
		d.keys("?")
		d.waitText(waitLong, "pause / resume the run", "close help")
		d.keys(closer)
		d.waitScreen("help closed by "+closer, waitLong, func(s string) bool {
			return cockpitDrawn(s) && !strings.Contains(s, "pause / resume the run")
		})
	}

	// Pause needs a run in progress: the release starts after the fleet.
	d.waitText(waitLong, "RUNNING")
	d.keys("p")
	d.waitText(waitLong, "PAUSED by "+actor)

	// A step while paused is carried out once and the run stays paused
	// (issue 15, acceptance 3; that nothing moves afterwards, the
	// countdown standing still, is pinned with a clock by the engine's
	// TestStepSteppingWhilePausedStaysPaused).
	state := filepath.Join(d.dir, ".flightdeck")
	d.keys("+")
	stepped := func() (bool, []engine.Event) {
		runs, err := engine.ListRuns(state)
		if err != nil || len(runs) == 0 {
			return false, nil
		}
		evs, _ := engine.ReadJournal(state, runs[len(runs)-1].Run)
		for _, e := range evs {
			if e.Type == engine.EvCommand && e.Command == string(engine.CmdStepUp) && e.Actor == actor {
				return true, evs
			}
		}
		return false, nil
	}
	deadline := time.Now().Add(waitLong)
	for {
		ok, evs := stepped()
		if ok {
			if st := engine.Fold(evs); st.Status != engine.StatusPaused || st.PausedBy != actor {
				t.Errorf("after + while paused the run is %s (paused by %q), want paused by %s", st.Status, st.PausedBy, actor)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the journal has no step-up by %s after +", actor)
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.waitScreen("still paused after +", waitLong, func(s string) bool {
		return strings.Contains(s, "PAUSED by "+actor)
	})

	d.keys("r")
	d.waitText(waitLong, "Roll back demo-shop/demo?", "→ v1")
	d.keys("y")
	d.waitText(waitLong, "ROLLED BACK")

	var evs []engine.Event
	deadline = time.Now().Add(waitLong)
	for {
		runs, err := engine.ListRuns(state)
		if err != nil {
			t.Fatalf("journal: %v", err)
		}
		if n := len(runs); n >= 2 && runs[n-1].Outcome == engine.OutcomeRolledBack {
			if evs, err = engine.ReadJournal(state, runs[n-1].Run); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the journal has no rolled-back run: %+v", runs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var paused, rollbackBy, rolledBack bool
	for _, e := range evs {
		switch e.Type {
		case engine.EvPaused:
			paused = paused || e.Actor == actor
		case engine.EvRollbackStart:
			rollbackBy = rollbackBy || e.Actor == actor
		case engine.EvRolledBack:
			rolledBack = true
		}
	}
	if !paused || !rollbackBy || !rolledBack {
		t.Errorf("journal: paused by %s %v, rollback started by %s %v, rolled back %v", actor, paused, actor, rollbackBy, rolledBack)
	}
	if st := engine.Fold(evs); st.Report == nil || st.Report.RTO <= 0 {
		t.Errorf("the rolled-back run reports no rollback RTO: %+v", st.Report)
	}

	// The /proc scan of assertNoLeftovers sees the services while they run.
	if n := len(processesNaming("demo-service", d.dir)); n < 4 {
		t.Errorf("the /proc scan finds %d demo-service processes of a 4-host fleet, want ≥ 4", n)
	}
	if code := d.quit(); code != 0 {
		t.Errorf("the demo exited with status %d, want 0; scrollback:\n%s", code, d.history())
	}
	d.assertNoLeftovers()
}

// TestTmuxNoColor: with NO_COLOR set, the cockpit draws with no colour
// escape sequence at all (attributes such as bold or reverse remain).
func TestTmuxNoColor(t *testing.T) {
	if testing.Short() {
		t.Skip("the tmux demo is skipped in -short mode")
	}
	t.Parallel()
	d := startDemo(t, []string{"NO_COLOR=1", "FLIGHTDECK_ACTOR=mono"}, nil, "--hosts", "4")
	d.waitScreen("the cockpit", waitLong, cockpitDrawn)
	check := func(when string) {
		t.Helper()
		s := d.screen(true)
		if c := colourSequences(s); len(c) > 0 {
			t.Errorf("%s: NO_COLOR=1 still draws %d colour sequences, e.g. %v", when, len(c), c[:min(5, len(c))])
		}
	}
	check("first draw")
	d.waitText(waitLong, "RUNNING", "live v2")
	check("a host live on v2")
	d.keys("r")
	d.waitText(waitLong, "Roll back demo-shop/demo?")
	check("the rollback dialog")
	d.keys("Escape")
	d.waitScreen("the dialog closed", waitLong, func(s string) bool {
		return cockpitDrawn(s) && !strings.Contains(s, "Roll back demo-shop/demo?")
	})
	if code := d.quit(); code != 0 {
		t.Errorf("the demo exited with status %d, want 0; scrollback:\n%s", code, d.history())
	}
	d.assertNoLeftovers()
}

// plainDemoOutputOK checks the plain line output of a whole demo: event
// lines, the report, a verdict, and no escape sequence at all.
func plainDemoOutputOK(t *testing.T, out string) {
	t.Helper()
	for _, want := range []string{"[web-1] live v2", "[web-4] live v2", "── report", "verdict: "} {
		if !strings.Contains(out, want) {
			t.Errorf("the plain output lacks %q:\n%s", want, out)
		}
	}
	for _, cockpit := range []string{"─ Fleet", "─ Events", "? help"} {
		if strings.Contains(out, cockpit) {
			t.Errorf("the plain output shows the cockpit (%q):\n%s", cockpit, out)
		}
	}
}

// TestTmuxDumbTerminal: on a terminal with TERM=dumb the demo prints its
// plain lines and report instead of opening the interface.
func TestTmuxDumbTerminal(t *testing.T) {
	if testing.Short() {
		t.Skip("the tmux demo is skipped in -short mode")
	}
	t.Parallel()
	d := startDemo(t, nil, []string{"TERM=dumb"}, "--hosts", "4", "--strategy", "rolling")
	code := d.waitExit(waitLong)
	out := d.history()
	plainDemoOutputOK(t, out)
	if c := colourSequences(d.run("capture-pane", "-p", "-e", "-S", "-", "-t", "demo")); len(c) > 0 {
		t.Errorf("TERM=dumb output has colour sequences: %v", c[:min(5, len(c))])
	}
	if code != 0 && !strings.Contains(out, "verdict: NOT HITLESS: probe p99") {
		// Exit 1 is honest only when this loaded machine pushed the probe's
		// p99 past the SLO; anything else is a failure.
		t.Errorf("TERM=dumb demo exited %d:\n%s", code, out)
	}
	d.assertNoLeftovers()
}

// TestDemoWithoutTerminalPrintsLines: when stdout is not a terminal the
// demo prints plain lines (no escape sequence at all) without --headless.
func TestDemoWithoutTerminalPrintsLines(t *testing.T) {
	if testing.Short() {
		t.Skip("demo runs are skipped in -short mode")
	}
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "fleet")
	t.Cleanup(func() { chmodWritable(dir) })
	cmd := exec.Command(binary, "demo", "--dir", dir, "--hosts", "4", "--strategy", "rolling")
	cmd.Env = append(serverEnv(), "TERM=xterm-256color", "FLIGHTDECK_ACTOR=pipe")
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	plainDemoOutputOK(t, string(out))
	if i := bytes.IndexByte(out, 0x1b); i >= 0 {
		t.Errorf("output to a pipe has an escape sequence at byte %d: %q", i, out[i:min(len(out), i+20)])
	}
	if code != 0 && !strings.Contains(string(out), "verdict: NOT HITLESS: probe p99") {
		t.Errorf("demo exited %d:\n%s", code, out)
	}
	for _, p := range processesNaming("demo-service", dir) {
		t.Errorf("demo-service process left running: %s", p)
	}
}

// TestTmuxAfterARun drives the real demo binary after its release: the
// header names the scenario, the key bar says what can be done now, ?
// has the briefing and the legend, and the history overlay rolls the
// fleet back to the release before, naming both sides (--theme on the
// command line).
func TestTmuxAfterARun(t *testing.T) {
	if testing.Short() {
		t.Skip("the tmux demo is skipped in -short mode")
	}
	t.Parallel()
	d := startDemo(t, []string{"FLIGHTDECK_ACTOR=histo"}, nil, "--hosts", "4", "--strategy", "rolling", "--scenario", "good", "--theme", "high-contrast")
	// The rollback's target comes from the journal, read once the run ended.
	s := d.waitText(waitLong, "✓ SUCCEEDED", "scenario good", "r roll back to v1  d deploy")
	if bar := lastLine(s); !strings.Contains(bar, "h history") || strings.Contains(bar, "(no run)") {
		t.Errorf("the key bar after the run lists run keys: %q", bar)
	}
	d.keys("?")
	d.waitText(waitLong, "Scenario good", "3-2-1 rule")
	d.keys("?") // closes the help (escape then h would read as alt+h)
	d.waitScreen("help closed", waitLong, func(s string) bool { return cockpitDrawn(s) && !strings.Contains(s, "Scenario good") })
	d.keys("h")
	d.waitText(waitLong, "Release history", "marks the release live now (v2)")
	d.keys("j", "r")
	d.waitText(waitLong, "Roll back demo-shop/demo?", "v2 (live since", "deployed by histo", "→ v1")
	d.keys("y")
	d.waitText(waitLong, "ROLLED BACK to v1 by histo")
	if code := d.quit(); code != 0 {
		t.Errorf("the demo exited with status %d, want 0; scrollback:\n%s", code, d.history())
	}
	d.assertNoLeftovers()
}

// lastLine is a screen's last non-blank line.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n "), "\n")
	return lines[len(lines)-1]
}
