package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"flightdeck/engine"
	"flightdeck/internal/syncbuf"
	"flightdeck/targets/etcdstate"
	"flightdeck/targets/etcdstate/etcdtest"
	"flightdeck/targets/local"
)

// fleet is a set of local hosts shared by several controllers, each with
// its own working directory and plan, all pointed at the same etcd.
type fleet struct {
	t      *testing.T
	hosts  string // directory of the hosts
	gates  string // restart hooks wait for files here
	n      int
	prefix string
}

// gateRestart makes each host's restart, for a release other than r1,
// wait until the test creates <gates>/<host> or <gates>/all.
func (f *fleet) gateRestart() string {
	return fmt.Sprintf(`restart: '[ "$RELEASE_VERSION" = r1 ] || while [ ! -e %s/$HOST ] && [ ! -e %s/all ]; do sleep 0.01; done'`+"\n", f.gates, f.gates)
}

func newFleet(t *testing.T, n int) *fleet {
	t.Helper()
	dir := t.TempDir()
	f := &fleet{t: t, hosts: filepath.Join(dir, "hosts"), gates: filepath.Join(dir, "gates"), n: n,
		prefix: "/t/" + strings.ReplaceAll(t.Name(), "/", "_")}
	if err := os.MkdirAll(f.gates, 0o755); err != nil {
		t.Fatal(err)
	}
	return f
}

// open lets host's gated restart go on ("all" opens every one).
func (f *fleet) open(host string) { writeFile(f.t, filepath.Join(f.gates, host), "") }

func (f *fleet) host(i int) *local.Host {
	return local.New(fmt.Sprintf("web-%d", i), filepath.Join(f.hosts, fmt.Sprintf("web-%d", i)))
}

func (f *fleet) localHosts() []*local.Host {
	hs := make([]*local.Host, f.n)
	for i := range hs {
		hs[i] = f.host(i + 1)
	}
	return hs
}

// controller is a working directory with a plan over the fleet whose
// state is in etcd at endpoints.
func (f *fleet) controller(endpoints []string, strategy string) *project {
	t := f.t
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "build")
	os.MkdirAll(src, 0o755)
	for i := range 20 {
		writeFile(t, filepath.Join(src, fmt.Sprintf("f%02d.txt", i)), fmt.Sprintf("file %d\n", i))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "app: shop\nsource: ./build\nkeep_releases: 50\n%s", f.gateRestart())
	fmt.Fprintf(&b, "state:\n  etcd:\n    endpoints: [%s]\n    prefix: %s\n    lease: 2s\n", strings.Join(endpoints, ", "), f.prefix)
	b.WriteString("environments:\n  production:\n    hosts:\n")
	for i := 1; i <= f.n; i++ {
		fmt.Fprintf(&b, "      - {name: web-%d, local: %s}\n", i, f.host(i).DeployTo())
	}
	fmt.Fprintf(&b, "    strategy: %s\n", strategy)
	p := &project{t: t, dir: dir, plan: filepath.Join(dir, "flightdeck.yaml")}
	writeFile(t, p.plan, b.String())
	return p
}

// proc is a flightdeck process started in the background.
type proc struct {
	cmd  *exec.Cmd
	out  *syncbuf.Buffer
	done chan struct{}
	code int
}

func (p *project) start(actor string, args ...string) *proc {
	p.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), "FLIGHTDECK_ACTOR="+actor, "NO_COLOR=1")
	pr := &proc{cmd: cmd, out: &syncbuf.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = pr.out, pr.out
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	go func() {
		err := cmd.Wait()
		pr.code = 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			pr.code = ee.ExitCode()
		}
		close(pr.done)
	}()
	p.t.Cleanup(func() {
		cmd.Process.Kill()
		<-pr.done
	})
	return pr
}

// wait waits for the process to exit (at most 60 s) and returns its code.
func (pr *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-pr.done:
		return pr.code
	case <-time.After(60 * time.Second):
		// SIGQUIT makes the Go runtime print every goroutine's stack:
		// the failure shows where the process hung.
		pr.cmd.Process.Signal(syscall.SIGQUIT)
		<-pr.done
		pr.cmd.Process.Kill()
		t.Fatalf("flightdeck %v did not exit:\n%s", pr.cmd.Args[1:], pr.out.String())
		return -1
	}
}

func (p *project) runAs(actor string, args ...string) (string, int) {
	p.t.Helper()
	pr := p.start(actor, args...)
	code := pr.wait(p.t)
	return pr.out.String(), code
}

// store opens the fleet's etcd state from the test, to read what the
// controllers journaled.
func (f *fleet) store(endpoints []string) *etcdstate.Store {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := etcdstate.Open(ctx, etcdstate.Config{Endpoints: endpoints, Prefix: f.prefix, RequestTimeout: 2 * time.Second})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { s.Close() })
	return s
}

// waitJournal waits until the newest run's journal in etcd has an event
// for which match holds, and returns the run id.
func waitJournal(t *testing.T, s *etcdstate.Store, match func(engine.Event) bool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run, err := s.NextRun(ctx, "production")
	if err != nil {
		t.Fatalf("no run started: %v", err)
	}
	found := errors.New("found")
	err = s.Follow(ctx, run, 0, func(evs []engine.Event) error {
		for _, e := range evs {
			if match(e) {
				return found
			}
		}
		return nil
	})
	if !errors.Is(err, found) {
		t.Fatalf("run %s: the awaited event was not journaled: %v", run, err)
	}
	return run
}

func phaseOf(host string, ph engine.Phase) func(engine.Event) bool {
	return func(e engine.Event) bool { return e.Type == engine.EvHostPhase && e.Host == host && e.Phase == ph }
}

// checkJournal reads a run from etcd and checks that its events are
// numbered 1..n without a gap or a repeat, that it finished, and that
// each host was switched to release once per switching controller.
func checkJournal(t *testing.T, s *etcdstate.Store, run string) []engine.Event {
	t.Helper()
	evs, err := s.ReadJournal(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			t.Fatalf("run %s: event %d has seq %d: lost, duplicated or out of order", run, i+1, e.Seq)
		}
	}
	if len(evs) == 0 || evs[0].Type != engine.EvRunStarted || evs[len(evs)-1].Type != engine.EvRunFinished {
		t.Fatalf("run %s is not complete in etcd (%d events)", run, len(evs))
	}
	return evs
}

// revisions returns a host's revisions.log lines.
func revisions(t *testing.T, h *local.Host) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.DeployTo(), "revisions.log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

const rollingOne = "{kind: rolling, wave_size: 1}"

// TestEtcdTwoControllersOneLock: two controllers in separate directories
// start a deploy of the same environment at once, 20 times: each time one
// runs and the other exits 3 naming the holder (user, machine, run, age).
func TestEtcdTwoControllersOneLock(t *testing.T) {
	c := etcdtest.Start(t, 3)
	f := newFleet(t, 2)
	a, b := f.controller(c.Endpoints(), rollingOne), f.controller(c.Endpoints(), rollingOne)
	machine, _ := os.Hostname()
	wins := map[string]int{}
	for i := range 20 {
		rel := fmt.Sprintf("r%02d", i+2)
		pa := a.start("alice", "deploy", "--headless", "--release", rel)
		pb := b.start("bob", "deploy", "--headless", "--release", rel)
		// The winner waits at its first restart until the gate opens, so
		// the loser meets a held lock.
		var loser, winner *proc
		var loserName, winnerName string
		select {
		case <-pa.done:
			loser, winner, loserName, winnerName = pa, pb, "alice", "bob"
		case <-pb.done:
			loser, winner, loserName, winnerName = pb, pa, "bob", "alice"
		case <-time.After(60 * time.Second):
			t.Fatalf("round %d: neither controller stopped", i)
		}
		if loser.code != 3 {
			t.Fatalf("round %d: %s exit %d, want 3 (locked):\n%s", i, loserName, loser.code, loser.out.String())
		}
		msg := loser.out.String()
		for _, want := range []string{"locked by " + winnerName, "on " + machine, "run production-", "for "} {
			if !strings.Contains(msg, want) {
				t.Fatalf("round %d: the refusal does not name %q:\n%s", i, want, msg)
			}
		}
		f.open("web-1")
		f.open("web-2")
		if code := winner.wait(t); code != 0 {
			t.Fatalf("round %d: %s exit %d:\n%s", i, winnerName, code, winner.out.String())
		}
		os.Remove(filepath.Join(f.gates, "web-1"))
		os.Remove(filepath.Join(f.gates, "web-2"))
		wins[winnerName]++
		for _, h := range f.localHosts() {
			if cur := current(t, h.DeployTo()); cur != rel {
				t.Fatalf("round %d: %s is on %q, want %s", i, h.Name(), cur, rel)
			}
		}
	}
	t.Logf("wins: %v", wins)
	s := f.store(c.Endpoints())
	runs, err := s.ListRuns(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 20 {
		t.Errorf("%d runs journaled in etcd, want 20 (one per round)", len(runs))
	}
	for _, r := range runs {
		if r.Outcome != engine.OutcomeSucceeded {
			t.Errorf("run %s: %s %s", r.Run, r.Status, r.Outcome)
		}
	}
}

// TestEtcdResumeFromAnotherMachineAfterSIGKILL kills a controller mid-run
// with SIGKILL: the lock stays held until its lease expires, then a
// controller in another directory resumes the run to its end.
func TestEtcdResumeFromAnotherMachineAfterSIGKILL(t *testing.T) {
	c := etcdtest.Start(t, 3)
	f := newFleet(t, 4)
	a, b := f.controller(c.Endpoints(), rollingOne), f.controller(c.Endpoints(), rollingOne)
	s := f.store(c.Endpoints())
	if out, code := a.runAs("alice", "deploy", "--headless", "--release", "r1"); code != 0 {
		t.Fatalf("base deploy exit %d:\n%s", code, out)
	}
	f.open("web-1")
	pa := a.start("alice", "deploy", "--headless", "--release", "r2")
	run := waitJournal(t, s, phaseOf("web-2", engine.PhaseRestart))
	pa.cmd.Process.Signal(syscall.SIGKILL)
	pa.wait(t)
	// The dead controller's lease still holds the lock.
	out, code := b.runAs("bob", "resume", "--headless")
	if code != 3 || !strings.Contains(out, "locked by alice") || !strings.Contains(out, run) {
		t.Fatalf("resume while the lease lives: exit %d, want 3 naming alice and run %s:\n%s", code, run, out)
	}
	waitLockFree(t, s)
	f.open("all")
	out, code = b.runAs("bob", "resume", "--headless")
	if code != 0 && code != 1 {
		t.Fatalf("resume exit %d:\n%s", code, out)
	}
	assertFleetConsistent(t, f.localHosts())
	evs := checkJournal(t, s, run)
	resumed := false
	for _, e := range evs {
		resumed = resumed || (e.Type == engine.EvRunResumed && e.Actor == "bob")
	}
	if !resumed {
		t.Error("the journal does not say bob resumed the run")
	}
}

// waitLockFree waits until production's lock is free (its lease expired).
func waitLockFree(t *testing.T, s *etcdstate.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.WaitFree(ctx, "production"); err != nil {
		t.Fatalf("the lock was not freed: %v", err)
	}
}

// TestEtcdLeaderKillAndQuorumLoss kills the etcd leader mid-run (the run
// goes on, nothing lost or duplicated), then stops two of the three
// members: the run waits before its next switch and says so, and goes on
// when they are back.
func TestEtcdLeaderKillAndQuorumLoss(t *testing.T) {
	c := etcdtest.Start(t, 3)
	f := newFleet(t, 4)
	a := f.controller(c.Endpoints(), rollingOne)
	s := f.store(c.Endpoints())
	if out, code := a.runAs("alice", "deploy", "--headless", "--release", "r1"); code != 0 {
		t.Fatalf("base deploy exit %d:\n%s", code, out)
	}
	pa := a.start("alice", "deploy", "--headless", "--release", "r2")
	run := waitJournal(t, s, phaseOf("web-1", engine.PhaseRestart))
	leader := c.Leader(t)
	c.Members[leader].Kill()
	t.Logf("killed the leader %s", c.Members[leader].Name)
	f.open("web-1")
	waitJournal(t, s, phaseOf("web-2", engine.PhaseRestart))
	// Two of three members stop: no quorum.
	var stopped []*etcdtest.Member
	for _, m := range c.Members {
		if m.Running() {
			m.Stop()
			stopped = append(stopped, m)
			break
		}
	}
	stopped = append(stopped, c.Members[leader])
	f.open("web-2")
	waitFor(t, func() bool { return strings.Contains(pa.out.String(), "waiting for etcd") })
	web3 := f.host(3)
	// Longer than the lock's lease: the run must still not switch web-3.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if cur := current(t, web3.DeployTo()); cur != "r1" {
			t.Fatalf("web-3 was switched to %s while etcd had no quorum", cur)
		}
		time.Sleep(50 * time.Millisecond) // polls the host's link
	}
	for _, m := range stopped {
		m.Restart(t)
	}
	f.open("all")
	if code := pa.wait(t); code != 0 {
		t.Fatalf("deploy exit %d:\n%s", code, pa.out.String())
	}
	if !strings.Contains(pa.out.String(), "etcd did not answer for") {
		t.Errorf("the end of the wait was not reported:\n%s", pa.out.String())
	}
	assertFleetConsistent(t, f.localHosts())
	evs := checkJournal(t, s, run)
	switches := map[string]int{}
	waited := false
	for _, e := range evs {
		if e.Type == engine.EvHostPhase && e.Phase == engine.PhaseSwitching {
			switches[e.Host]++
		}
		waited = waited || (e.Type == engine.EvNotice && strings.Contains(e.Message, "etcd did not answer for"))
	}
	if !waited {
		t.Error("the journal does not say the run waited for etcd")
	}
	for _, h := range f.localHosts() {
		if switches[h.Name()] != 1 {
			t.Errorf("%s has %d switching records, want 1", h.Name(), switches[h.Name()])
		}
	}
}

// TestEtcdPartitionedControllerStopsSwitching cuts a controller's traffic
// to etcd mid-run: once its lease expires another controller takes the
// run over, and the cut-off one switches no further host.
func TestEtcdPartitionedControllerStopsSwitching(t *testing.T) {
	c := etcdtest.Start(t, 3)
	f := newFleet(t, 4)
	var proxies []*etcdtest.Proxy
	var via []string
	for _, ep := range c.Endpoints() {
		p := etcdtest.NewProxy(t, ep)
		proxies = append(proxies, p)
		via = append(via, p.Addr)
	}
	a, b := f.controller(via, rollingOne), f.controller(c.Endpoints(), rollingOne)
	s := f.store(c.Endpoints())
	if out, code := b.runAs("bob", "deploy", "--headless", "--release", "r1"); code != 0 {
		t.Fatalf("base deploy exit %d:\n%s", code, out)
	}
	pa := a.start("alice", "deploy", "--headless", "--release", "r2")
	run := waitJournal(t, s, phaseOf("web-1", engine.PhaseRestart))
	for _, p := range proxies {
		p.Cut()
	}
	f.open("web-1")
	waitLockFree(t, s)
	f.open("all")
	out, code := b.runAs("bob", "resume", "--headless")
	if code != 0 && code != 1 {
		t.Fatalf("takeover exit %d:\n%s", code, out)
	}
	for _, h := range f.localHosts()[1:] {
		for _, line := range revisions(t, h) {
			if strings.Contains(line, "actor=alice") {
				t.Errorf("%s was switched by the cut-off controller: %s", h.Name(), line)
			}
		}
	}
	assertFleetConsistent(t, f.localHosts())
	checkJournal(t, s, run)
	for _, p := range proxies {
		p.Heal()
	}
	if code := pa.wait(t); code == 0 {
		t.Errorf("the cut-off controller exited 0:\n%s", pa.out.String())
	}
	if !strings.Contains(pa.out.String(), "no longer held") {
		t.Errorf("the cut-off controller did not say it lost the lock:\n%s", pa.out.String())
	}
}

// TestEtcdWatchFollowsRun: `flightdeck watch` in another directory follows
// a run through etcd as it happens and ends on the same final state.
func TestEtcdWatchFollowsRun(t *testing.T) {
	c := etcdtest.Start(t, 3)
	f := newFleet(t, 3)
	a, b := f.controller(c.Endpoints(), rollingOne), f.controller(c.Endpoints(), rollingOne)
	s := f.store(c.Endpoints())
	if out, code := a.runAs("alice", "deploy", "--headless", "--release", "r1"); code != 0 {
		t.Fatalf("base deploy exit %d:\n%s", code, out)
	}
	w := b.start("bob", "watch", "--headless", "--json")
	waitFor(t, func() bool { return strings.Contains(w.out.String(), "waiting for a run") })
	pa := a.start("alice", "deploy", "--headless", "--release", "r2")
	run := waitJournal(t, s, phaseOf("web-1", engine.PhaseRestart))
	// The watcher shows the run while it is still going.
	waitFor(t, func() bool { return strings.Contains(w.out.String(), `"phase":"restarting"`) })
	f.open("all")
	if code := pa.wait(t); code != 0 {
		t.Fatalf("deploy exit %d:\n%s", code, pa.out.String())
	}
	if code := w.wait(t); code != 0 {
		t.Fatalf("watch exit %d:\n%s", code, w.out.String())
	}
	var seen []engine.Event
	for _, line := range strings.Split(w.out.String(), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var e engine.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("watch printed %q: %v", line, err)
		}
		seen = append(seen, e)
	}
	evs := checkJournal(t, s, run)
	if len(seen) != len(evs) {
		t.Fatalf("watch showed %d events, the journal has %d", len(seen), len(evs))
	}
	got, want := engine.Fold(seen), engine.Fold(evs)
	if got.Outcome != want.Outcome || got.Outcome != engine.OutcomeSucceeded || len(got.Hosts) != len(want.Hosts) {
		t.Fatalf("watch ended on %s, the run on %s", got.Outcome, want.Outcome)
	}
	for i, h := range got.Hosts {
		if h.Current != want.Hosts[i].Current || h.Phase != want.Hosts[i].Phase || h.Current != "r2" {
			t.Errorf("watch shows %s on %s (%s); the run left it on %s (%s)", h.Name, h.Current, h.Phase, want.Hosts[i].Current, want.Hosts[i].Phase)
		}
	}
}

// TestEtcdBadStateTouchesNothing: an unreachable etcd or wrong
// credentials exit 2 naming the endpoints, before anything is touched.
func TestEtcdBadStateTouchesNothing(t *testing.T) {
	ln := etcdtest.NewProxy(t, "127.0.0.1:1") // an address that answers nothing useful
	ln.Cut()
	dead := ln.Addr
	c := etcdtest.Start(t, 1)
	c.EnableAuth(t, "rootpw", "deployer", "s3cret")
	for _, tt := range []struct {
		name, endpoint, env, want string
	}{
		{"unreachable", dead, "", "etcd unreachable at " + dead},
		{"no credentials", c.Endpoints()[0], "", "refused access"},
		{"wrong password", c.Endpoints()[0], "FLIGHTDECK_ETCD_PASSWORD=wrong", "refused access as user deployer"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t, 2)
			p := f.controller([]string{tt.endpoint}, rollingOne)
			if tt.env != "" {
				b, _ := os.ReadFile(p.plan)
				writeFile(t, p.plan, strings.Replace(string(b), "    lease: 2s\n", "    lease: 2s\n    username: deployer\n", 1))
				t.Setenv("FLIGHTDECK_ETCD_PASSWORD", strings.TrimPrefix(tt.env, "FLIGHTDECK_ETCD_PASSWORD="))
			}
			cmds := [][]string{{"deploy", "--headless", "--release", "r1"}, {"rollback", "--headless", "--to", "r1"}, {"resume", "--headless"}, {"journal"}, {"unlock"}, {"watch", "--headless"}}
			if tt.name == "unreachable" {
				cmds = cmds[:1] // each waits out the dial timeout
			}
			for _, args := range cmds {
				out, code := p.run(args...)
				if code != 2 || !strings.Contains(out, tt.want) || !strings.Contains(out, tt.endpoint) {
					t.Fatalf("%v: exit %d, want 2 naming %s:\n%s", args, code, tt.endpoint, out)
				}
			}
			if _, err := os.Stat(f.hosts); !os.IsNotExist(err) {
				t.Error("a host was touched")
			}
			if _, err := os.Stat(filepath.Join(p.dir, ".flightdeck")); !os.IsNotExist(err) {
				t.Error("a state directory was created")
			}
		})
	}
}

// TestEtcdStatePushAndUnlock moves a local journal into etcd (twice: the
// second push copies nothing), reads it back with `journal`, and breaks
// a dead controller's lock with `unlock`, recorded with who broke it.
func TestEtcdStatePushAndUnlock(t *testing.T) {
	c := etcdtest.Start(t, 3)
	f := newFleet(t, 2)
	p := f.controller(c.Endpoints(), rollingOne)
	plan, _ := os.ReadFile(p.plan)
	// Deploy with the local files first.
	i := strings.Index(string(plan), "state:\n")
	j := strings.Index(string(plan), "environments:\n")
	writeFile(t, p.plan, string(plan[:i])+string(plan[j:]))
	f.open("all")
	for _, rel := range []string{"r1", "r2"} {
		if out, code := p.run("deploy", "--headless", "--release", rel); code != 0 {
			t.Fatalf("local deploy exit %d:\n%s", code, out)
		}
	}
	localList, _ := p.run("journal", "--json")
	writeFile(t, p.plan, string(plan))
	out, code := p.run("state", "push")
	if code != 0 || !strings.Contains(out, "of 2 runs") {
		t.Fatalf("state push exit %d:\n%s", code, out)
	}
	out, code = p.run("state", "push")
	if code != 0 || !strings.Contains(out, "pushed 0 events") || !strings.Contains(out, "2 runs were already there") {
		t.Fatalf("second push exit %d:\n%s", code, out)
	}
	etcdList, code := p.run("journal", "--json")
	if code != 0 || etcdList != localList {
		t.Fatalf("journal in etcd differs from the local one:\n%s\n--- local:\n%s", etcdList, localList)
	}
	// Rollback reads its target from the journal in etcd.
	if out, code := p.run("rollback", "--headless"); code != 0 || current(t, f.host(1).DeployTo()) != "r1" {
		t.Fatalf("rollback from etcd's journal exit %d:\n%s", code, out)
	}
	// A controller dies holding the lock; unlock breaks it and says whose.
	os.Remove(filepath.Join(f.gates, "all"))
	pa := p.start("alice", "deploy", "--headless", "--release", "r3")
	waitJournal(t, f.store(c.Endpoints()), phaseOf("web-1", engine.PhaseRestart))
	pa.cmd.Process.Signal(syscall.SIGKILL)
	pa.wait(t)
	out, code = p.runAs("carol", "unlock", "--reason", "alice's laptop died")
	if code != 0 || !strings.Contains(out, "broke the lock of alice") || !strings.Contains(out, "/unlocks/production/") {
		t.Fatalf("unlock exit %d:\n%s", code, out)
	}
	ul, err := f.store(c.Endpoints()).Unlocks(context.Background(), "production")
	if err != nil || len(ul) != 1 || ul[0].By != "carol" || ul[0].Held.Owner != "alice" || ul[0].Reason != "alice's laptop died" {
		t.Fatalf("unlock record: %+v, %v", ul, err)
	}
	f.open("all")
	if out, code := p.runAs("bob", "resume", "--headless"); code != 0 && code != 1 {
		t.Fatalf("resume after unlock exit %d:\n%s", code, out)
	}
	assertFleetConsistent(t, f.localHosts())
}
