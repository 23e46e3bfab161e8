package teatest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	xt "github.com/charmbracelet/x/exp/teatest/v2"

	"flightdeck/engine"
	"flightdeck/engine/plan"
	"flightdeck/targets/local"
	"flightdeck/themes"
	"flightdeck/tui"
)

var operator = engine.Actor{Name: "alice", Role: engine.RoleOwner, Via: "tui"}

// fleet is a plan of local hosts under a temp dir with a built source.
type fleet struct {
	t        *testing.T
	dir      string
	plan     *plan.Plan
	env      *plan.Environment
	hosts    []engine.Host
	stateDir string
	hub      *engine.Hub
	gate     string
	next     int // the last release number built (r1 by deployR1)
}

func newFleet(t *testing.T, n int) *fleet {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "build")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		write(t, filepath.Join(src, fmt.Sprintf("f%d.txt", i)), fmt.Sprintf("v1 %d", i))
	}
	var b strings.Builder
	b.WriteString("app: shop\nsource: ./build\nkeep_releases: 3\nenvironments:\n  prod:\n    hosts:\n")
	for i := range n {
		fmt.Fprintf(&b, "      - {name: web-%d, local: %s}\n", i+1, filepath.Join(dir, "hosts", fmt.Sprint(i+1)))
	}
	b.WriteString("    strategy: {kind: rolling, wave_size: 2}\n")
	pf := filepath.Join(dir, "flightdeck.yaml")
	write(t, pf, b.String())
	p, err := plan.Load(pf)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	env, err := p.Env("")
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, dir: dir, plan: p, env: env, stateDir: filepath.Join(dir, ".flightdeck"), hub: engine.NewHub(),
		gate: filepath.Join(dir, "gate")}
	for _, h := range env.Hosts {
		f.hosts = append(f.hosts, local.New(h.Name, h.Local))
	}
	return f
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f *fleet) engine() *engine.Engine {
	return &engine.Engine{Plan: f.plan, Env: f.env, Hosts: f.hosts, StateDir: f.stateDir, Hub: f.hub}
}

// deployR1 puts the fleet on r1, then makes every later restart block
// until the gate file exists, so that a run stays in progress.
func (f *fleet) deployR1() {
	f.t.Helper()
	a, cleanup, err := engine.Build(context.Background(), f.plan, "r1", nil)
	if err != nil {
		f.t.Fatal(err)
	}
	defer cleanup()
	st, err := f.engine().Deploy(context.Background(), operator, a, "test")
	if err != nil || st.Outcome != engine.OutcomeSucceeded {
		f.t.Fatalf("deploy r1: %v %+v", err, st)
	}
	f.next = 1
	write(f.t, filepath.Join(f.dir, "build", "f0.txt"), "v2")
	f.plan.Restart = `while [ ! -e ` + f.gate + ` ]; do sleep 0.01; done`
}

func (f *fleet) openGate() { write(f.t, f.gate, "") }

func (f *fleet) currents() map[string]string {
	out := map[string]string{}
	for _, h := range f.hosts {
		st, err := h.Inspect(context.Background())
		if err != nil {
			f.t.Fatal(err)
		}
		out[h.Name()] = st.Current
	}
	return out
}

// backend is the real EngineBackend; it also lets the test wait until the
// deploys and rollbacks the cockpit started have returned.
type backend struct {
	*tui.EngineBackend
	wg sync.WaitGroup
}

func (b *backend) Deploy(ctx context.Context, a engine.Actor) error {
	b.wg.Add(1)
	defer b.wg.Done()
	return b.EngineBackend.Deploy(ctx, a)
}

func (b *backend) Rollback(ctx context.Context, a engine.Actor, to string) error {
	b.wg.Add(1)
	defer b.wg.Done()
	return b.EngineBackend.Rollback(ctx, a, to)
}

func (f *fleet) backend() *backend {
	return &backend{EngineBackend: &tui.EngineBackend{
		Engine:  f.engine(),
		Command: "teatest",
		Build: func(ctx context.Context) (*engine.Artifact, func(), error) {
			f.next++
			return engine.Build(ctx, f.plan, fmt.Sprintf("r%d", f.next), nil)
		},
	}}
}

// framed wraps the cockpit and keeps the last frame it drew. The terminal
// output is a stream of diffs (only changed cells are written), so the
// tests read whole frames instead; the program still renders every frame
// to its output as it would on a terminal.
type framed struct {
	*tui.Model
	frames
}

func (f *framed) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	_, cmd := f.Model.Update(msg)
	return f, cmd
}

func (f *framed) View() tea.View { return f.keep(f.Model.View()) }

// frames keeps the last frame a program drew, as plain text.
type frames struct {
	mu    sync.Mutex
	frame string
}

func (f *frames) keep(v tea.View) tea.View {
	f.mu.Lock()
	f.frame = ansi.Strip(v.Content)
	f.mu.Unlock()
	return v
}

func (f *frames) last() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.frame
}

type screen struct {
	tm      *xt.TestModel
	m       *framed
	written int // bytes the program wrote to its terminal
}

// cockpit starts the cockpit on a test terminal.
func cockpit(t *testing.T, b *backend) *screen {
	m := &framed{Model: tui.New(b, tui.Options{Actor: operator, Theme: themes.NoColor(), Location: time.UTC})}
	t.Cleanup(m.Close)
	return &screen{tm: xt.NewTestModel(t, m, xt.WithInitialTermSize(120, 40)), m: m}
}

// waitFor waits until the cockpit's frame shows every word, and checks
// that the program is writing frames to its terminal.
func (s *screen) waitFor(t *testing.T, words ...string) {
	t.Helper()
	xt.WaitFor(t, s.tm.Output(), func(b []byte) bool {
		s.written += len(b)
		if s.written == 0 {
			return false // the frame is drawn, not yet written to the terminal
		}
		frame := s.m.last()
		for _, w := range words {
			if !strings.Contains(frame, w) {
				return false
			}
		}
		return true
	}, xt.WithDuration(30*time.Second), xt.WithCheckInterval(20*time.Millisecond))
	if s.written == 0 {
		t.Fatal("the program drew frames but wrote nothing to its terminal")
	}
}

func (s *screen) press(keys string) { s.tm.Type(keys) }

func journal(t *testing.T, f *fleet) []engine.Event {
	t.Helper()
	runs, err := engine.ListRuns(f.stateDir)
	if err != nil || len(runs) == 0 {
		t.Fatalf("runs: %v %v", runs, err)
	}
	evs, err := engine.ReadJournal(f.stateDir, runs[len(runs)-1].Run)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestPauseResumeFromTheCockpit(t *testing.T) {
	f := newFleet(t, 4)
	f.deployR1()
	b := f.backend()
	s := cockpit(t, b)

	s.press("d") // a new deploy, started from the cockpit, after a confirmation
	s.waitFor(t, "Deploy a new release of shop/prod?", "Live now: r1")
	s.press("y")
	s.waitFor(t, "▶ RUNNING", "↻ restarting") // in the fleet: the snapshot has the switched hosts
	s.press("+")                              // rolling has no traffic steps: the key says why, in the engine's words
	s.waitFor(t, "step: step-up needs a traffic strategy")
	s.press("p")
	s.waitFor(t, "‖ PAUSED by alice") // the header (the snapshot), not only the event line
	var paused bool
	for _, e := range journal(t, f) {
		if e.Type == engine.EvPaused && e.Actor == "alice" {
			paused = true
		}
	}
	if !paused {
		t.Fatal("the journal has no Paused event by alice")
	}
	f.openGate()
	s.press("p")
	s.waitFor(t, "✓ SUCCEEDED")
	b.wg.Wait()
	for h, cur := range f.currents() {
		if cur != "r2" {
			t.Errorf("host %s on %q, want r2", h, cur)
		}
	}
	s.press("q") // no run in progress: quits at once
	s.tm.WaitFinished(t, xt.WithFinalTimeout(10*time.Second))
}

func TestRollbackFromTheCockpit(t *testing.T) {
	f := newFleet(t, 4)
	f.deployR1()
	b := f.backend()
	s := cockpit(t, b)

	s.press("dy")
	s.waitFor(t, "▶ RUNNING", "↻ restarting") // in the fleet: the snapshot has the switched hosts
	s.press("r")
	s.waitFor(t, "Roll back shop/prod?", "r2 (being deployed by run", "→ r1", "Hosts affected: 2 of 4: web-1, web-2")
	s.press("y")
	s.waitFor(t, "ROLLING BACK by alice")
	f.openGate()
	s.waitFor(t, "ROLLED BACK by alice", "rollback finished: every host back on r1 in")
	b.wg.Wait()
	for h, cur := range f.currents() {
		if cur != "r1" {
			t.Errorf("host %s on %q after the rollback, want r1", h, cur)
		}
	}
	var started bool
	for _, e := range journal(t, f) {
		if e.Type == engine.EvRollbackStart && e.Actor == "alice" {
			started = true
		}
	}
	if !started {
		t.Error("the journal has no RollbackStarted by alice")
	}
	s.press("q")
	s.tm.WaitFinished(t, xt.WithFinalTimeout(10*time.Second))
}

func TestQuitDuringARunAsks(t *testing.T) {
	f := newFleet(t, 2)
	f.deployR1()
	b := f.backend()
	s := cockpit(t, b)
	s.press("dy")
	s.waitFor(t, "RUNNING")
	s.press("q")
	s.waitFor(t, "Quit the cockpit?", "The run continues without the cockpit")
	s.press("n")
	f.openGate()
	s.waitFor(t, "✓ SUCCEEDED")
	b.wg.Wait()
	s.press("q")
	s.tm.WaitFinished(t, xt.WithFinalTimeout(10*time.Second))
}

// TestRollbackFromHistoryTwoBack is issue 15's acceptance 4: the history
// overlay lists the releases with the live one marked, and rolling back
// from it to the release two back puts every host on it, after a dialog
// that names both sides.
func TestRollbackFromHistoryTwoBack(t *testing.T) {
	f := newFleet(t, 3)
	f.deployR1()
	f.openGate() // restarts do not wait: every deploy runs through
	b := f.backend()
	s := cockpit(t, b)
	for _, step := range []string{"r1 → r2", "r2 → r3"} {
		s.press("d")
		s.waitFor(t, "Deploy a new release of shop/prod?")
		s.press("y")
		s.waitFor(t, "✓ SUCCEEDED · rolling · "+step) // the header: the events pane has older runs' lines
		b.wg.Wait()
	}
	s.press("h")
	s.waitFor(t, "Release history", "r3", "r2", "r1", "✓ marks the release live now (r3)")
	s.press("jj") // newest first: r3, r2, r1
	s.press("r")
	s.waitFor(t, "Roll back shop/prod?", "r3 (live since", "deployed by alice) → r1", "Hosts affected: 3 of 3")
	s.press("y")
	s.waitFor(t, "ROLLED BACK to r1 by alice")
	b.wg.Wait()
	for h, cur := range f.currents() {
		if cur != "r1" {
			t.Errorf("host %s on %q after the rollback from the history, want r1", h, cur)
		}
	}
	s.press("h")
	s.waitFor(t, "✓ marks the release live now (r1)")
	s.press("q")
	s.press("q")
	s.tm.WaitFinished(t, xt.WithFinalTimeout(10*time.Second))
}
