package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"flightdeck/engine"
	"flightdeck/internal/syncbuf"
	"flightdeck/targets/local"
)

// These tests pin issue 14's hardening of the state (journal, locks) and
// of the run's inputs and outputs through the real binary.
// FLIGHTDECK_TEST_BINARY runs them against another build (see TestMain).

func (p *project) stateDir() string { return filepath.Join(p.dir, ".flightdeck") }

func (p *project) lockFile() string {
	return filepath.Join(p.stateDir(), "locks", "production.lock")
}

// deadPID returns the id of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	c := exec.Command("true")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	return c.Process.Pid
}

// TestUnreadableLockIsHeldAndUnlockBreaksIt (item 7): an empty or garbage
// lock file (a crash between its creation and its write) is held by an
// unknown holder: deploy and rollback exit 3 naming the file, and
// `unlock` breaks it.
func TestUnreadableLockIsHeldAndUnlockBreaksIt(t *testing.T) {
	p := newProject(t, 1, 2, rolling2, "")
	if out, code := p.run("deploy", "--headless", "--release", "r1"); code != 0 {
		t.Fatalf("deploy r1 exit %d:\n%s", code, out)
	}
	for _, content := range []string{"", `{"owner":"al`} {
		writeFile(t, p.lockFile(), content)
		for _, args := range [][]string{{"deploy", "--headless", "--release", "r2"}, {"rollback", "--headless", "--to", "r1"}} {
			out, code := p.run(args...)
			if code != 3 || !strings.Contains(out, p.lockFile()) {
				t.Fatalf("lock file %q: %v exit %d, want 3 naming the lock file:\n%s", content, args, code, out)
			}
		}
		if out, code := p.run("unlock", "--reason", "crashed"); code != 0 {
			t.Fatalf("unlock of lock file %q: exit %d:\n%s", content, code, out)
		}
	}
	if out, code := p.run("deploy", "--headless", "--release", "r2"); code != 0 {
		t.Fatalf("deploy after unlock exit %d:\n%s", code, out)
	}
}

// TestStaleLockTakeoverHasOneWinner (item 7): deploys that reach a dead
// holder's lock together: exactly one takes it over and runs, every other
// exits 3 (never 1). Each deploy is held in its build step (before the
// lock) until all are there, so that they race for the lock; the winner is
// held in its restart until the losers have answered.
func TestStaleLockTakeoverHasOneWinner(t *testing.T) {
	gates := t.TempDir()
	built, restart, building, running := filepath.Join(gates, "built"), filepath.Join(gates, "restart"), t.TempDir(), t.TempDir()
	p := newProject(t, 1, 2, rolling2, fmt.Sprintf(
		"build:\n  - 'mktemp %s/b.XXXXXX >/dev/null; while [ ! -e %s ]; do sleep 0.002; done'\nbuild_output: .\n"+
			"restart: 'mktemp %s/r.XXXXXX >/dev/null; while [ ! -e %s ]; do sleep 0.01; done'\n", building, built, running, restart))
	count := func(dir string) int { ents, _ := os.ReadDir(dir); return len(ents) }
	reset := func() {
		for _, d := range []string{building, running} {
			os.RemoveAll(d)
			os.MkdirAll(d, 0o755)
		}
		os.Remove(built)
		os.Remove(restart)
	}
	writeFile(t, built, "")
	writeFile(t, restart, "") // the base deploy is not held
	if out, code := p.run("deploy", "--headless", "--release", "base"); code != 0 {
		t.Fatalf("base deploy exit %d:\n%s", code, out)
	}
	host, _ := os.Hostname()
	for round := range 4 {
		reset()
		b, _ := json.Marshal(engine.LockInfo{Owner: "carol", PID: deadPID(t), Host: host, Command: "deploy"})
		writeFile(t, p.lockFile(), string(b))
		const n = 6
		var mu sync.Mutex
		codes := map[int]int{}
		outs := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, code := p.run("deploy", "--headless", "--release", fmt.Sprintf("t%d-%d", round, i))
				mu.Lock()
				codes[code]++
				outs[i] = out
				mu.Unlock()
			}()
		}
		waitFor(t, func() bool { return count(building) == n })
		writeFile(t, built, "") // all race for the lock now
		waitFor(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			done := 0
			for _, c := range codes {
				done += c
			}
			return done+count(running) >= n
		})
		ran := count(running)
		writeFile(t, restart, "")
		wg.Wait()
		if ran != 1 || codes[0] != 1 || codes[3] != n-1 {
			t.Fatalf("round %d: %d deploys ran at once; exit codes %v, want one 0 and %d times 3:\n%s",
				round, ran, codes, n-1, strings.Join(outs, "\n---\n"))
		}
	}
}

// heldRestart is a plan's restart that, for any release but r1, waits
// until the file gate exists.
func heldRestart(gate string) string {
	return fmt.Sprintf("restart: '[ \"$RELEASE_VERSION\" = r1 ] || while [ ! -e %s ]; do sleep 0.01; done'\n", gate)
}

// killHeldDeploy starts a deploy of rel whose restart waits for gate,
// SIGKILLs it there and returns its (unfinished) run.
func (p *project) killHeldDeploy(t *testing.T, rel string) string {
	t.Helper()
	cmd := exec.Command(binary, "deploy", "--headless", "--release", rel)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), "FLIGHTDECK_ACTOR=tester")
	var out syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(out.String(), "restarting") })
	cmd.Process.Kill()
	cmd.Wait()
	// The restart hook runs in its own process group on the (local) host
	// and outlives the killed deploy, as a command on a real host would:
	// it is this test's to stop, or it waits on its gate forever.
	t.Cleanup(func() { killMentioning(t, filepath.Dir(p.dir)) })
	id, _, err := engine.UnfinishedRun(p.stateDir(), "production")
	if err != nil || id == "" {
		t.Fatalf("no unfinished run after the kill: %q %v\n%s", id, err, out.String())
	}
	return id
}

// killMentioning SIGKILLs every process whose command line mentions
// marker (a test's temporary directory).
func killMentioning(t *testing.T, marker string) {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range procs {
		b, err := os.ReadFile(path)
		if err != nil || !bytes.Contains(b, []byte(marker)) {
			continue // gone already, or not ours
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(path))); err == nil && pid != os.Getpid() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func (p *project) journalFile(run string) string {
	return filepath.Join(p.stateDir(), "journal", run+".jsonl")
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// TestTornJournalTailIsCutOnResume (item 5): a run killed with a torn last
// journal line is resumed: the tail is cut off (and the journal says so),
// so the journal reads whole afterwards and every command keeps working.
func TestTornJournalTailIsCutOnResume(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "gate")
	p := newProject(t, 1, 2, rolling2, heldRestart(gate))
	if out, code := p.run("deploy", "--headless", "--release", "r1"); code != 0 {
		t.Fatalf("deploy r1 exit %d:\n%s", code, out)
	}
	run := p.killHeldDeploy(t, "r2")
	appendFile(t, p.journalFile(run), `{"seq":9999,"time":"2026-01-01T00:00:00Z","type":"HostPh`)
	writeFile(t, gate, "")
	if out, code := p.run("resume", "--headless"); code != 0 && code != 1 {
		t.Fatalf("resume exit %d:\n%s", code, out)
	}
	evs, err := engine.ReadJournal(p.stateDir(), run)
	if err != nil {
		t.Fatalf("the resumed run's journal does not read whole: %v", err)
	}
	said := false
	for _, e := range evs {
		said = said || (e.Type == engine.EvNotice && strings.Contains(e.Message, "torn"))
	}
	if !said || engine.Fold(evs).Status != engine.StatusFinished {
		t.Errorf("the resumed run is not finished, or does not say its torn tail was cut (notice: %v)", said)
	}
	for _, args := range [][]string{{"journal"}, {"journal", "show", run}, {"deploy", "--headless", "--release", "r3"}, {"rollback", "--headless", "--to", "r1"}} {
		if out, code := p.run(args...); code != 0 {
			t.Fatalf("%v exit %d after the torn journal:\n%s", args, code, out)
		}
	}
}

// TestDamagedJournalLineNeverLocksOut (item 5): a garbage line in the
// middle of a journal (an old run's, and the unfinished run's) is named
// with its file and line, and blocks neither `journal`, nor a resume, nor
// a new deploy or a rollback.
func TestDamagedJournalLineNeverLocksOut(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "gate")
	p := newProject(t, 1, 2, rolling2, heldRestart(gate))
	if out, code := p.run("deploy", "--headless", "--release", "r1"); code != 0 {
		t.Fatalf("deploy r1 exit %d:\n%s", code, out)
	}
	runs, err := engine.ListRuns(p.stateDir())
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs %v %v", runs, err)
	}
	old := p.journalFile(runs[0].Run)
	// A garbage line in the middle of the old run's journal.
	b, _ := os.ReadFile(old)
	ls := strings.SplitAfter(string(b), "\n")
	ls = append(ls[:3], append([]string{"\x00\x00garbage{\n"}, ls[3:]...)...)
	os.WriteFile(old, []byte(strings.Join(ls, "")), 0o600)
	out, code := p.run("journal")
	if code != 0 || !strings.Contains(out, old) || !strings.Contains(out, "line 4") {
		t.Fatalf("journal exit %d, want 0 warning of %s line 4:\n%s", code, old, out)
	}
	out, code = p.run("journal", "show", runs[0].Run)
	if code != 0 || !strings.Contains(out, old+": 1 damaged line") || !strings.Contains(out, "RunFinished") && !strings.Contains(out, "finished") {
		t.Fatalf("journal show exit %d, want the events and a warning naming the file:\n%s", code, out)
	}
	// The unfinished run's journal has a damaged line too.
	run := p.killHeldDeploy(t, "r2")
	appendFile(t, p.journalFile(run), "{\"seq\": garbage}\n")
	writeFile(t, gate, "")
	if out, code := p.run("deploy", "--headless", "--release", "r3"); code != 0 {
		t.Fatalf("deploy r3 exit %d over damaged journals:\n%s", code, out)
	}
	if id, _, _ := engine.UnfinishedRun(p.stateDir(), "production"); id != "" {
		t.Fatalf("run %s left unfinished", id)
	}
	want, err := engine.DefaultRollbackTarget(p.stateDir(), "production")
	if err != nil {
		t.Fatal(err)
	}
	if out, code := p.run("rollback", "--headless"); code != 0 {
		t.Fatalf("rollback exit %d over damaged journals:\n%s", code, out)
	}
	if c := current(t, p.host(1)); c != want || c == "r3" {
		t.Fatalf("current %q after the rollback, want %s", c, want)
	}
}

// TestBrokenStdoutNeverStopsARun (item 11): `deploy --headless | head -1`:
// the reader goes away after one line; the deploy still finishes, exits
// 0, and its journal holds the whole run. The same with build steps whose
// output has nowhere to go.
func TestBrokenStdoutNeverStopsARun(t *testing.T) {
	for _, extra := range []string{"", "build:\n  - 'for i in 1 2 3 4 5 6 7 8; do echo building $i; done'\nbuild_output: .\n"} {
		t.Run(fmt.Sprint("build=", extra != ""), func(t *testing.T) { brokenStdout(t, extra) })
	}
}

func brokenStdout(t *testing.T, extra string) {
	p := newProject(t, 2, 20, rolling2, extra)
	cmd := exec.Command(binary, "deploy", "--headless", "--release", "r1")
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), "FLIGHTDECK_ACTOR=tester")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	line := make([]byte, 1)
	for line[0] != '\n' { // read the first line, as head -1 does, then go
		if _, err := r.Read(line); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	err = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("deploy with its output gone: exit %d (%v), want 0", code, err)
	}
	runs, err := engine.ListRuns(p.stateDir())
	if err != nil || len(runs) != 1 || runs[0].Status != engine.StatusFinished || runs[0].Outcome != engine.OutcomeSucceeded {
		t.Fatalf("runs %+v %v: want one that succeeded", runs, err)
	}
	for i := 1; i <= 2; i++ {
		if c := current(t, p.host(i)); c != "r1" {
			t.Fatalf("web-%d current %q", i, c)
		}
	}
}

// TestHugePlanIsRefused (item 13): an endless plan (-f /dev/zero) or one
// over the limit is refused at once, exit 2 naming the limit, instead of
// being read into memory. The process runs under a 2 GiB address-space
// limit so that a build without the bound fails quickly instead of
// taking the machine's memory.
func TestHugePlanIsRefused(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("app: shop\n# ")
	f.Truncate(5 << 20) // sparse: the rest reads as NULs
	f.Close()
	for _, plan := range []string{"/dev/zero", big} {
		for _, cmd := range []string{"deploy --headless", "check"} {
			c := exec.Command("/bin/sh", "-c", fmt.Sprintf("ulimit -v 2097152; exec %s %s -f %s", binary, cmd, plan))
			c.Dir = dir
			out, _ := c.CombinedOutput()
			if code := c.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), "larger than 4 MiB, the limit") {
				t.Fatalf("%s -f %s: exit %d, want 2 naming the limit:\n%.2000s", cmd, plan, code, out)
			}
		}
	}
}

// TestActorWithNewlineIsRefused (item 18): FLIGHTDECK_ACTOR holding a
// newline (which would add a forged line to revisions.log) or spaces is
// refused, exit 2, nothing touched.
func TestActorWithNewlineIsRefused(t *testing.T) {
	p := newProject(t, 1, 2, rolling2, "")
	if out, code := p.run("deploy", "--headless", "--release", "r1"); code != 0 {
		t.Fatalf("deploy r1 exit %d:\n%s", code, out)
	}
	log := filepath.Join(p.host(1), "revisions.log")
	before, _ := os.ReadFile(log)
	for _, actor := range []string{"mallory\n2026-01-01T00:00:00Z deploy release=r9 previous=r1 actor=alice", "mallory\x1b]0;pwned\x07", "two words"} {
		for _, args := range [][]string{{"deploy", "--headless", "--release", "r2"}, {"rollback", "--headless", "--to", "r1"}} {
			cmd := exec.Command(binary, args...)
			cmd.Dir = p.dir
			cmd.Env = append(os.Environ(), "FLIGHTDECK_ACTOR="+actor, "NO_COLOR=1")
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), "FLIGHTDECK_ACTOR") {
				t.Fatalf("actor %q: %v exit %d, want 2 naming FLIGHTDECK_ACTOR:\n%s", actor, args, code, out)
			}
		}
	}
	if after, _ := os.ReadFile(log); string(after) != string(before) || current(t, p.host(1)) != "r1" {
		t.Fatalf("revisions.log or current changed:\n%s", after)
	}
}

// TestStateIsPrivate (item 18): the state directory (journals keep hook
// output) is made 0700 and its files 0600.
func TestStateIsPrivate(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "gate")
	p := newProject(t, 1, 2, rolling2, fmt.Sprintf("hooks:\n  after_switch: 'echo secret-ish hook output'\nrestart: '[ \"$RELEASE_VERSION\" = r1 ] || while [ ! -e %s ]; do sleep 0.01; done'\n", gate))
	if out, code := p.run("deploy", "--headless", "--release", "r1"); code != 0 {
		t.Fatalf("deploy r1 exit %d:\n%s", code, out)
	}
	run := p.killHeldDeploy(t, "r2") // leaves its lock file behind
	writeFile(t, gate, "")
	want := map[string]os.FileMode{
		p.stateDir(): 0o700, filepath.Join(p.stateDir(), "journal"): 0o700, filepath.Join(p.stateDir(), "locks"): 0o700,
		p.journalFile(run): 0o600, p.lockFile(): 0o600,
	}
	for path, mode := range want {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s is %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
}

// TestCheckRefusesAddressesDeployRefuses (item 18): one validation of SSH
// addresses: `check` refuses what `deploy` would (a port out of range, an
// empty host or user, a bad jump list), at file:line:column, exit 2.
func TestCheckRefusesAddressesDeployRefuses(t *testing.T) {
	for _, tt := range []struct{ ssh, jump, want string }{
		{"deploy@web-1:99999", "", `flightdeck.yaml:8:14: host "web-1": ssh: port "99999" is not a number in 1-65535`},
		{"deploy@:22", "", "empty host"},
		{"@web-1", "", "empty user"},
		{"deploy@[::1]x", "", "expected ':port'"},
		{"deploy@web-1", "bastion:0", `jump host bastion:0: port "0"`},
		{"deploy@web-1", "bastion,,other", "empty hop"},
	} {
		dir := t.TempDir()
		plan := fmt.Sprintf("app: shop\nsource: ./build\nenvironments:\n  production:\n    deploy_to: /srv/shop\n    hosts:\n      - name: web-1\n        ssh: %q\n", tt.ssh)
		if tt.jump != "" {
			plan += fmt.Sprintf("    ssh:\n      jump: %q\n", tt.jump)
		}
		os.MkdirAll(filepath.Join(dir, "build"), 0o755)
		writeFile(t, filepath.Join(dir, "flightdeck.yaml"), plan)
		p := &project{t: t, dir: dir, plan: filepath.Join(dir, "flightdeck.yaml")}
		for _, args := range [][]string{{"check"}, {"deploy", "--headless", "--release", "r1"}} {
			out, code := p.run(args...)
			if code != 2 || !strings.Contains(out, tt.want) || !strings.Contains(out, "flightdeck.yaml:") {
				t.Errorf("ssh %q jump %q: %v exit %d, want 2 with file:line:col and %q:\n%s", tt.ssh, tt.jump, args, code, tt.want, out)
			}
		}
	}
}

// TestSymlinkedSourceIsReleased (item 2): a source that is a symlink to a
// directory (build -> dist), relative or absolute, with and without build
// steps, releases the target's files (the build runs in the isolated
// workspace, never in the real tree); a release with no files is refused
// (exit 1, no host touched) unless allow_empty says so.
func TestSymlinkedSourceIsReleased(t *testing.T) {
	for _, tt := range []struct {
		name, extra string
		abs         bool
	}{
		{"relative", "", false},
		{"absolute", "", true},
		{"absolute with build", "build:\n  - 'echo made > made.txt'\nbuild_output: .\n", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newProject(t, 1, 4, rolling2, tt.extra)
			build := filepath.Join(p.dir, "build")
			dist := filepath.Join(p.dir, "dist")
			if err := os.Rename(build, dist); err != nil {
				t.Fatal(err)
			}
			target := "dist"
			if tt.abs {
				target = dist
			}
			if err := os.Symlink(target, build); err != nil {
				t.Fatal(err)
			}
			if out, code := p.run("deploy", "--headless", "--release", "r1"); code != 0 {
				t.Fatalf("deploy exit %d:\n%s", code, out)
			}
			for _, f := range []string{"file0000.txt", "static/file0001.txt"} {
				if _, err := os.Stat(filepath.Join(p.host(1), "current", f)); err != nil {
					t.Errorf("the release lacks %s: %v", f, err)
				}
			}
			if _, err := os.Stat(filepath.Join(dist, "made.txt")); err == nil {
				t.Error("the build ran inside the real source tree")
			}
		})
	}
	t.Run("empty", func(t *testing.T) {
		p := newProject(t, 1, 0, rolling2, "")
		os.RemoveAll(filepath.Join(p.dir, "build", "static"))
		out, code := p.run("deploy", "--headless", "--release", "r1")
		if code != 1 || !strings.Contains(out, "no files") || !strings.Contains(out, "allow_empty") {
			t.Fatalf("empty release: exit %d, want 1 saying it holds no files:\n%s", code, out)
		}
		if _, err := os.Stat(p.host(1)); !os.IsNotExist(err) {
			t.Fatalf("a host was touched for an empty release: %v", err)
		}
		b, _ := os.ReadFile(p.plan)
		writeFile(t, p.plan, "allow_empty: true\n"+string(b))
		if out, code := p.run("deploy", "--headless", "--release", "r1"); code != 0 {
			t.Fatalf("allowed empty release: exit %d:\n%s", code, out)
		}
	})
}

// TestJournalFullAtTheEndIsNoSuccess (item 6): the state directory fills
// up (RLIMIT_FSIZE, set with prlimit, makes writes past a size fail as a
// full disk does) while the run finishes: the run must not report success
// (exit 1, saying the journal could not be written), and a resume once
// there is room finishes it with a journal that reads whole.
func TestJournalFullAtTheEndIsNoSuccess(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("prlimit is missing (apt-get install util-linux)")
	}
	p := newProject(t, 1, 3, rolling2, "")
	for _, rel := range []string{"r1", "r2"} {
		if out, code := p.run("deploy", "--headless", "--release", rel); code != 0 {
			t.Fatalf("deploy %s exit %d:\n%s", rel, code, out)
		}
	}
	// r3's journal has r2's shape: its last line (RunFinished, ~150
	// bytes) is where the limit falls.
	runs, _ := engine.ListRuns(p.stateDir())
	fi, err := os.Stat(p.journalFile(runs[len(runs)-1].Run))
	if err != nil {
		t.Fatal(err)
	}
	limit := fi.Size() - 75
	cmd := exec.Command(prlimit, fmt.Sprintf("--fsize=%d:%d", limit, limit), binary, "deploy", "--headless", "--release", "r3")
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), "FLIGHTDECK_ACTOR=tester", "NO_COLOR=1")
	out, _ := cmd.CombinedOutput()
	code := cmd.ProcessState.ExitCode()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	if code == 0 || strings.Contains(last, "SUCCEEDED") || !strings.Contains(string(out), "journal could not be written") {
		t.Fatalf("deploy with a full state directory: exit %d, want 1 saying the journal could not be written:\n%s", code, out)
	}
	if out, code := p.run("resume", "--headless"); code != 0 {
		t.Fatalf("resume once there is room: exit %d:\n%s", code, out)
	}
	runs, err = engine.ListRuns(p.stateDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		if r.Status != engine.StatusFinished || r.Damage != "" {
			t.Errorf("run %s: %s %s", r.Run, r.Status, r.Damage)
		}
	}
	if c := current(t, p.host(1)); c != "r3" {
		t.Errorf("current %q after the resume, want r3", c)
	}
}

// runBounded runs flightdeck with a deadline: a command that hangs fails
// the test instead of the suite.
func (p *project) runBounded(d time.Duration, args ...string) (string, int) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), "FLIGHTDECK_ACTOR=tester", "NO_COLOR=1")
	out, _ := cmd.CombinedOutput()
	if ctx.Err() != nil {
		p.t.Fatalf("%v hung (killed after %s):\n%s", args, d, out)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

// TestResumeWithAHostGoneFromThePlan (item 8): the unfinished run names a
// host the plan no longer has: resume, deploy and rollback refuse at once
// (exit 2, naming it) instead of waiting for it; with the host back in
// the plan, resume finishes the run.
func TestResumeWithAHostGoneFromThePlan(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "gate")
	p := newProject(t, 2, 2, rolling2, heldRestart(gate))
	if out, code := p.run("deploy", "--headless", "--release", "r1"); code != 0 {
		t.Fatalf("deploy r1 exit %d:\n%s", code, out)
	}
	p.killHeldDeploy(t, "r2")
	writeFile(t, gate, "")
	full, _ := os.ReadFile(p.plan)
	i := strings.Index(string(full), "      - name: web-2")
	j := strings.Index(string(full), "    strategy:")
	writeFile(t, p.plan, string(full[:i])+string(full[j:]))
	for _, args := range [][]string{{"resume", "--headless"}, {"deploy", "--headless", "--release", "r3"}, {"rollback", "--headless", "--to", "r1"}} {
		out, code := p.runBounded(30*time.Second, args...)
		if code != 2 || !strings.Contains(out, "web-2") {
			t.Fatalf("%v exit %d, want 2 naming web-2:\n%s", args, code, out)
		}
	}
	writeFile(t, p.plan, string(full))
	if out, code := p.runBounded(30*time.Second, "resume", "--headless"); code != 0 && code != 1 {
		t.Fatalf("resume with web-2 back: exit %d:\n%s", code, out)
	}
	assertFleetConsistent(t, []*local.Host{local.New("web-1", p.host(1)), local.New("web-2", p.host(2))})
}

// TestDeletedJournalOfASplitFleet (item 9): the journal of an unfinished
// run is deleted while the fleet is split: resume does not say "nothing
// to resume" (exit 1, naming each host's release), and a deploy warns
// (journaled) and puts every host on one release.
func TestDeletedJournalOfASplitFleet(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "gate")
	p := newProject(t, 2, 2, "      kind: rolling\n      wave_size: 1\n      pause: 0s\n",
		fmt.Sprintf("restart: '[ \"$RELEASE_VERSION\" = r1 ] || [ \"$HOST\" = web-2 ] || while [ ! -e %s ]; do sleep 0.01; done'\n", gate))
	if out, code := p.run("deploy", "--headless", "--release", "r1"); code != 0 {
		t.Fatalf("deploy r1 exit %d:\n%s", code, out)
	}
	run := p.killHeldDeploy(t, "r2") // web-1 switched, web-2 not
	writeFile(t, gate, "")
	if err := os.Remove(p.journalFile(run)); err != nil {
		t.Fatal(err)
	}
	os.Remove(p.lockFile())
	if a, b := current(t, p.host(1)), current(t, p.host(2)); a != "r2" || b != "r1" {
		t.Fatalf("fleet after the kill: web-1 %s, web-2 %s; want r2 and r1", a, b)
	}
	out, code := p.run("resume", "--headless")
	if code != 1 || !strings.Contains(out, "web-1 on r2, web-2 on r1") || strings.Contains(out, "nothing to resume in") {
		t.Fatalf("resume over a split fleet without its journal: exit %d, want 1 naming each host's release:\n%s", code, out)
	}
	out, code = p.run("deploy", "--headless", "--release", "r3")
	if code != 0 || !strings.Contains(out, "web-1 on r2, web-2 on r1") {
		t.Fatalf("deploy over the split fleet: exit %d, want 0 with a warning naming the split:\n%s", code, out)
	}
	for i := 1; i <= 2; i++ {
		if c := current(t, p.host(i)); c != "r3" {
			t.Fatalf("web-%d on %q after the deploy", i, c)
		}
	}
}

// TestHungRestartTimesOutAndInterruptsAnswer (item 10): restart_timeout
// bounds a hung restart (the host fails and the run rolls back); without
// it, a first SIGINT is answered at once (the run stops once the work in
// flight is done) and a second one aborts the hung restart and rolls the
// switched hosts back within the same run, so the deploy exits on the
// previous release instead of waiting out the default 5 minutes.
func TestHungRestartTimesOutAndInterruptsAnswer(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "gate")
	hung := heldRestart(gate)
	t.Run("restart_timeout", func(t *testing.T) {
		p := newProject(t, 1, 2, rolling2, hung+"restart_timeout: 1s\n")
		if out, code := p.run("deploy", "--headless", "--release", "r1"); code != 0 {
			t.Fatalf("deploy r1 exit %d:\n%s", code, out)
		}
		out, code := p.runBounded(60*time.Second, "deploy", "--headless", "--release", "r2")
		if code != 1 || !strings.Contains(out, "timed out after 1s") {
			t.Fatalf("deploy with a hung restart: exit %d, want 1 with the restart timed out after 1s:\n%s", code, out)
		}
		if c := current(t, p.host(1)); c != "r1" {
			t.Fatalf("current %q, want r1 (rolled back)", c)
		}
	})
	t.Run("interrupts", func(t *testing.T) {
		// web-1 switches and goes live on r2; web-2's restart hangs.
		p := newProject(t, 2, 2, rolling2,
			fmt.Sprintf("restart: '[ \"$RELEASE_VERSION\" = r1 ] || [ \"$HOST\" = web-1 ] || while [ ! -e %s ]; do sleep 0.01; done'\n", gate))
		if out, code := p.run("deploy", "--headless", "--release", "r1"); code != 0 {
			t.Fatalf("deploy r1 exit %d:\n%s", code, out)
		}
		cmd := exec.Command(binary, "deploy", "--headless", "--release", "r2")
		cmd.Dir = p.dir
		cmd.Env = append(os.Environ(), "FLIGHTDECK_ACTOR=tester", "NO_COLOR=1")
		var out syncbuf.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		defer func() { cmd.Process.Kill(); <-exited }()
		waitFor(t, func() bool { return strings.Contains(out.String(), "restarting") })
		cmd.Process.Signal(os.Interrupt)
		waitFor(t, func() bool { return strings.Contains(out.String(), "stopping once the work in flight is done") })
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			t.Fatalf("the deploy did not exit after a second interrupt:\n%s", out.String())
		}
		if code := cmd.ProcessState.ExitCode(); code != 1 {
			t.Fatalf("interrupted deploy exit %d, want 1:\n%s", code, out.String())
		}
		// Rolled back by the aborted run itself: no resume needed.
		for i := 1; i <= 2; i++ {
			if c := current(t, p.host(i)); c != "r1" {
				t.Fatalf("web-%d on %q after the abort, want r1 (rolled back by the aborted run):\n%s", i, c, out.String())
			}
		}
		if !strings.Contains(out.String(), "aborted by a second interrupt") {
			t.Fatalf("the output does not say the run was aborted by the second interrupt:\n%s", out.String())
		}
		js, code := p.run("journal", "show", "last", "--json")
		if code != 0 || !strings.Contains(js, `"outcome":"aborted"`) {
			t.Fatalf("journal of the aborted run (exit %d) has no aborted outcome:\n%s", code, js)
		}
		if out, code := p.run("resume", "--headless"); code != 0 || !strings.Contains(out, "nothing to resume") {
			t.Fatalf("resume after the aborted run: exit %d, want 0 with nothing to resume:\n%s", code, out)
		}
		assertFleetConsistent(t, []*local.Host{local.New("web-1", p.host(1)), local.New("web-2", p.host(2))})
	})
}
