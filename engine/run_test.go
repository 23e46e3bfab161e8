package engine_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"flightdeck/engine"
	"flightdeck/engine/plan"
	"flightdeck/targets/local"
)

// fleet is a plan of local hosts under a temp dir, with a built source.
type fleet struct {
	t        testing.TB
	dir      string
	plan     *plan.Plan
	env      *plan.Environment
	hosts    []engine.Host
	stateDir string
	hub      *engine.Hub
}

func newFleet(t testing.TB, n int, extra string) *fleet {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "build")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		writeFile(t, filepath.Join(src, "f"+string(rune('a'+i))+".txt"), "v1 "+string(rune('a'+i)))
	}
	var b strings.Builder
	b.WriteString("app: shop\nsource: ./build\nkeep_releases: 3\n" + extra + "environments:\n  prod:\n    hosts:\n")
	for i := range n {
		name := string(rune('a' + i))
		b.WriteString("      - {name: " + name + ", local: " + filepath.Join(dir, "hosts", name) + "}\n")
	}
	b.WriteString("    strategy: {kind: rolling, wave_size: 2}\n")
	pf := filepath.Join(dir, "flightdeck.yaml")
	writeFile(t, pf, b.String())
	p, err := plan.Load(pf)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	env, err := p.Env("")
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, dir: dir, plan: p, env: env, stateDir: filepath.Join(dir, ".flightdeck"), hub: engine.NewHub()}
	for _, h := range env.Hosts {
		f.hosts = append(f.hosts, local.New(h.Name, h.Local))
	}
	return f
}

func writeFile(t testing.TB, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f *fleet) engine() *engine.Engine {
	return &engine.Engine{Plan: f.plan, Env: f.env, Hosts: f.hosts, StateDir: f.stateDir, Hub: f.hub}
}

func (f *fleet) build(id string) *engine.Artifact {
	f.t.Helper()
	a, cleanup, err := engine.Build(context.Background(), f.plan, id, nil)
	if err != nil {
		f.t.Fatalf("build %s: %v", id, err)
	}
	f.t.Cleanup(cleanup)
	return a
}

func (f *fleet) deploy(id string) *engine.State {
	f.t.Helper()
	st, err := f.engine().Deploy(context.Background(), owner, f.build(id), "test")
	if err != nil {
		f.t.Fatalf("deploy %s: %v", id, err)
	}
	return st
}

// currents returns each host's current release as the host reports it.
func (f *fleet) currents() map[string]string {
	f.t.Helper()
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

func (f *fleet) assertAllOn(rel string) {
	f.t.Helper()
	for name, cur := range f.currents() {
		if cur != rel {
			f.t.Errorf("host %s is on %q, want %q", name, cur, rel)
		}
	}
	for _, h := range f.hosts {
		if err := h.Verify(context.Background(), rel); err != nil {
			f.t.Errorf("host %s: release %s not intact: %v", h.Name(), rel, err)
		}
	}
}

var (
	owner  = engine.Actor{Name: "olivia", Role: engine.RoleOwner, Via: "test"}
	op     = engine.Actor{Name: "alice", Role: engine.RoleOperator, Via: "test"}
	viewer = engine.Actor{Name: "vic", Role: engine.RoleViewer, Via: "test"}
)

func TestDeployRollingAndRollback(t *testing.T) {
	f := newFleet(t, 4, "")
	st := f.deploy("r1")
	if st.Outcome != engine.OutcomeSucceeded {
		t.Fatalf("r1: %s %s", st.Outcome, st.Err)
	}
	f.assertAllOn("r1")
	writeFile(t, filepath.Join(f.dir, "build", "fa.txt"), "v2")
	st = f.deploy("r2")
	if st.Outcome != engine.OutcomeSucceeded || st.Info.Previous != "r1" {
		t.Fatalf("r2: %s %s previous %q", st.Outcome, st.Err, st.Info.Previous)
	}
	f.assertAllOn("r2")
	evs, err := engine.ReadJournal(f.stateDir, st.Run)
	if err != nil {
		t.Fatal(err)
	}
	var waves []int
	for _, e := range evs {
		if e.Type == engine.EvWaveStarted {
			waves = append(waves, e.Wave)
		}
	}
	if len(waves) != 2 {
		t.Fatalf("waves started: %v, want 2 waves of 2 hosts", waves)
	}
	target, err := engine.DefaultRollbackTarget(f.stateDir, "prod")
	if err != nil || target != "r1" {
		t.Fatalf("default rollback target = %q, %v; want r1", target, err)
	}
	st, err = f.engine().Rollback(context.Background(), op, "", "test")
	if err != nil || st.Outcome != engine.OutcomeSucceeded {
		t.Fatalf("rollback: %v %+v", err, st)
	}
	f.assertAllOn("r1")
}

// inspectCounter is a local host that counts its Inspect calls (its
// Survey, promoted from local.Host, is not counted).
type inspectCounter struct {
	*local.Host
	mu       sync.Mutex
	inspects int
}

func (c *inspectCounter) Inspect(ctx context.Context) (engine.HostStatus, error) {
	c.mu.Lock()
	c.inspects++
	c.mu.Unlock()
	return c.Host.Inspect(ctx)
}

// A rollback run reads each host once, at its start (the survey that also
// checks the target): the reverts take what it found instead of inspecting
// every host again, a host already on the target included.
func TestRollbackRunInspectsHostsOnlyAtItsStart(t *testing.T) {
	f := newFleet(t, 4, "")
	f.deploy("r1")
	writeFile(t, filepath.Join(f.dir, "build", "fa.txt"), "v2")
	f.deploy("r2")
	counters := make([]*inspectCounter, len(f.hosts))
	for i, h := range f.hosts {
		counters[i] = &inspectCounter{Host: h.(*local.Host)}
		f.hosts[i] = counters[i]
	}
	// Host a went back to r1 by other means.
	if err := f.hosts[0].Switch(context.Background(), engine.SwitchInfo{Release: "r1", Actor: "elsewhere", Action: engine.SwitchRollback}); err != nil {
		t.Fatal(err)
	}
	logOf := func(name string) string {
		b, err := os.ReadFile(filepath.Join(f.dir, "hosts", name, engine.RevisionsLog))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	before := logOf("a")
	st, err := f.engine().Rollback(context.Background(), op, "r1", "test")
	if err != nil || st.Outcome != engine.OutcomeSucceeded {
		t.Fatalf("rollback: %v %+v", err, st)
	}
	for _, c := range counters {
		c.mu.Lock()
		n := c.inspects
		c.mu.Unlock()
		if n != 0 {
			t.Errorf("host %s inspected %d times after the run's survey, want 0", c.Name(), n)
		}
	}
	f.assertAllOn("r1")
	if after := logOf("a"); after != before {
		t.Errorf("host a, already on r1, was switched again: revisions.log gained %q", strings.TrimPrefix(after, before))
	}
	for _, name := range []string{"b", "c", "d"} {
		lines := strings.Split(strings.TrimSpace(logOf(name)), "\n")
		if last := lines[len(lines)-1]; !strings.Contains(last, "rollback release=r1 previous=r2") {
			t.Errorf("host %s: last revisions.log line %q, want the rollback from r2 to r1", name, last)
		}
	}
}

func TestFailedWaveRevertsSwitchedHosts(t *testing.T) {
	f := newFleet(t, 6, "") // waves {a,b} {c,d} {e,f}
	f.deploy("r1")
	// The restart fails on host c (wave 2), after a and b were switched.
	f.plan.Restart = `test "$HOST/$RELEASE_VERSION" != c/r2 || { echo "c refuses $RELEASE_VERSION"; exit 7; }`
	st := f.deploy("r2")
	if st.Outcome != engine.OutcomeRolledBack {
		t.Fatalf("outcome %s, want rolled_back (err %q)", st.Outcome, st.Err)
	}
	if !strings.Contains(st.Err, "host c failed") || !strings.Contains(st.Err, "c refuses r2") {
		t.Errorf("reason %q should name the host and show its output", st.Err)
	}
	f.assertAllOn("r1")
	for _, name := range []string{"e", "f"} {
		if h := st.Host(name); h.Touched {
			t.Errorf("host %s (wave 3, after the failed wave) should not have been switched", name)
		}
	}
	if h := st.Host("a"); !h.Reverted {
		t.Errorf("host a (wave 1) should have been reverted")
	}
}

func TestPauseHoldsTheNextWave(t *testing.T) {
	f := newFleet(t, 4, "")
	// Wave 1's restart blocks until the test opens the gate.
	ctx, eng, sub, open, done := deployHeldAtRestart(t, f)
	if err := eng.Send(ctx, engine.Command{Kind: engine.CmdPause, Actor: viewer}); !errors.Is(err, engine.ErrNotAllowed) {
		t.Fatalf("viewer pause: %v, want ErrNotAllowed", err)
	}
	if err := eng.Send(ctx, engine.Command{Kind: engine.CmdPause, Actor: op}); err != nil {
		t.Fatalf("pause: %v", err)
	}
	open()
	live := 0
	waitEvent(ctx, t, sub, func(e engine.Event) bool {
		if e.Type == engine.EvHostPhase && e.Phase == engine.PhaseLive {
			live++
		}
		return live == 2
	})
	snap := eng.Active()
	if snap == nil {
		t.Fatal("run ended while paused")
	}
	if err := eng.Send(ctx, engine.Command{Kind: engine.CmdResume, Actor: op}); err != nil {
		t.Fatalf("resume: %v", err)
	}
	st := <-done
	if st.Outcome != engine.OutcomeSucceeded {
		t.Fatalf("outcome %s: %s", st.Outcome, st.Err)
	}
	evs, _ := engine.ReadJournal(f.stateDir, st.Run)
	var paused, resumed, wave2 uint64
	var refused bool
	for _, e := range evs {
		switch {
		case e.Type == engine.EvPaused:
			paused = e.Seq
			if e.Actor != "alice" {
				t.Errorf("paused by %q, want alice", e.Actor)
			}
		case e.Type == engine.EvResumed:
			resumed = e.Seq
		case e.Type == engine.EvWaveStarted && e.Wave == 2:
			wave2 = e.Seq
		case e.Type == engine.EvCommandRefused && e.Actor == "vic":
			refused = true
		}
	}
	if !(paused > 0 && paused < resumed && resumed < wave2) {
		t.Fatalf("journal order paused=%d resumed=%d wave2=%d: wave 2 must start only after resume", paused, resumed, wave2)
	}
	if !refused {
		t.Error("the viewer's refused pause is not in the journal")
	}
}

// TestRollbackToReleaseMissingOnAHostTouchesNothing: the target is
// checked on every host before the first switch (present and complete),
// so a rollback never splits the fleet between releases.
func TestRollbackToReleaseMissingOnAHostTouchesNothing(t *testing.T) {
	f := newFleet(t, 4, "")
	f.deploy("r1")
	f.deploy("r2")
	// Host b lost r1 (e.g. it was rebuilt and missed the deploy).
	p := filepath.Join(f.dir, "hosts", "b", "releases", "r1")
	if err := os.Chmod(p, 0o755); err != nil {
		t.Fatal(err)
	}
	chmodTree(t, p)
	if err := os.RemoveAll(p); err != nil {
		t.Fatal(err)
	}
	// Host d's r1 lost a file.
	if err := os.Chmod(filepath.Join(f.dir, "hosts", "d", "releases", "r1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(f.dir, "hosts", "d", "releases", "r1", "fa.txt")); err != nil {
		t.Fatal(err)
	}
	runs, _ := engine.ListRuns(f.stateDir)
	_, err := f.engine().Rollback(context.Background(), op, "r1", "test")
	var tm *engine.TargetMissingError
	if !errors.As(err, &tm) || len(tm.Hosts) != 2 || !strings.HasPrefix(tm.Hosts[0], "b: ") ||
		!strings.HasPrefix(tm.Hosts[1], "d: ") || !strings.Contains(tm.Hosts[1], "fa.txt") {
		t.Fatalf("err = %v, want a TargetMissingError naming host b and host d's missing file", err)
	}
	cur := f.currents()
	if cur["a"] != "r2" || cur["c"] != "r2" || cur["b"] != "r2" || cur["d"] != "r2" {
		t.Fatalf("currents %v: want every host left on r2", cur)
	}
	if after, _ := engine.ListRuns(f.stateDir); len(after) != len(runs) {
		t.Errorf("a refused rollback started a run (%d runs, was %d)", len(after), len(runs))
	}
}

func TestInterruptedRunIsResumed(t *testing.T) {
	f := newFleet(t, 4, "")
	f.deploy("r1")
	gate := filepath.Join(f.dir, "gate")
	f.plan.Restart = `while [ ! -e ` + gate + ` ]; do sleep 0.01; done`
	eng := f.engine()
	sub := f.hub.Subscribe(4096)
	defer sub.Close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := eng.Deploy(ctx, owner, f.build("r2"), "test")
		errc <- err
	}()
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	waitEvent(wctx, t, sub, func(e engine.Event) bool { return e.Type == engine.EvHostPhase && e.Phase == engine.PhaseRestart })
	cancel() // like Ctrl-C: in-flight work finishes, nothing new starts
	writeFile(t, gate, "")
	if err := <-errc; !errors.Is(err, engine.ErrInterrupted) {
		t.Fatalf("interrupted deploy returned %v", err)
	}
	id, _, err := engine.UnfinishedRun(f.stateDir, "prod")
	if err != nil || id == "" {
		t.Fatalf("no unfinished run recorded: %q %v", id, err)
	}
	st, err := f.engine().Resume(context.Background(), op, "test")
	if err != nil {
		t.Fatal(err)
	}
	if st.Outcome != engine.OutcomeSucceeded {
		t.Fatalf("resumed outcome %s: %s", st.Outcome, st.Err)
	}
	f.assertAllOn("r2")
	if id, _, _ := engine.UnfinishedRun(f.stateDir, "prod"); id != "" {
		t.Fatalf("run %s still unfinished after resume", id)
	}
}

func chmodTree(t *testing.T, root string) {
	t.Helper()
	_ = filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err == nil {
			_ = os.Chmod(p, info.Mode().Perm()|0o700)
		}
		return nil
	})
}

func waitEvent(ctx context.Context, t *testing.T, sub *engine.Sub, match func(engine.Event) bool) {
	t.Helper()
	for {
		evs, _, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for an event: %v", err)
		}
		for _, e := range evs {
			if match(e) {
				return
			}
		}
	}
}

func TestCommandsDuringSettleAreAnsweredAtOnce(t *testing.T) {
	f := newFleet(t, 2, "")
	f.deploy("r1")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	// A settle far longer than the test: it must end on the interrupt.
	f.env.Probe = &plan.Probe{URL: srv.URL, Rate: 20, Timeout: plan.Duration{Duration: time.Second},
		Settle: plan.Duration{Duration: 10 * time.Minute}}
	eng := f.engine()
	sub := f.hub.Subscribe(4096)
	defer sub.Close()
	runCtx, interrupt := context.WithCancel(context.Background())
	defer interrupt()
	type result struct {
		st  *engine.State
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := eng.Deploy(runCtx, owner, f.build("r2"), "test")
		done <- result{st, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	waitEvent(ctx, t, sub, func(e engine.Event) bool {
		return e.Type == engine.EvSettling && strings.HasPrefix(e.Message, "probing 10m0s more")
	})
	err := eng.Send(ctx, engine.Command{Kind: engine.CmdPause, Actor: op})
	if !errors.Is(err, engine.ErrRunFinishing) {
		t.Fatalf("pause during settle: %v, want ErrRunFinishing", err)
	}
	select {
	case r := <-done:
		t.Fatalf("the run ended before the interrupt: %v", r.err)
	default:
	}
	interrupt()
	r := <-done
	if r.err != nil || r.st.Outcome != engine.OutcomeSucceeded {
		t.Fatalf("run after the interrupt during settle: %v %v", r.st.Outcome, r.err)
	}
	f.assertAllOn("r2")
	evs, _ := engine.ReadJournal(f.stateDir, r.st.Run)
	refused := false
	for _, e := range evs {
		if e.Type == engine.EvCommandRefused && e.Actor == "alice" && e.Command == string(engine.CmdPause) {
			refused = strings.Contains(e.Error, "run is finishing")
		}
	}
	if !refused {
		t.Error("the refused pause is not in the journal")
	}
}
