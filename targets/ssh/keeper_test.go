package ssh

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"flightdeck/engine"
	"flightdeck/internal/syncbuf"
	"flightdeck/targets/layout/layouttest"
	"flightdeck/targets/local"
	"flightdeck/targets/ssh/sshtest"
)

// controlDir returns a private directory with a short path (a Unix
// socket's path is limited to 108 bytes).
func controlDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fdk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runningKeeper is a keeper served by this test process.
type runningKeeper struct {
	dir  string
	log  *syncbuf.Buffer
	stop context.CancelFunc
	done chan error

	heldMu   sync.Mutex
	heldSeen []int // what KeeperOptions.Held was told, in order
}

func startKeeper(t *testing.T, dir string, persist time.Duration) *runningKeeper {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	k := &runningKeeper{dir: dir, log: &syncbuf.Buffer{}, stop: cancel, done: make(chan error, 1)}
	pr, pw := io.Pipe()
	go func() {
		k.done <- ServeKeeper(ctx, KeeperOptions{Dir: dir, Persist: persist, Ready: pw, Log: k.log, Held: k.noteHeld})
		pw.Close()
	}()
	if line, err := readLine(pr, 64); err != nil || line != "ready" {
		cancel()
		t.Fatalf("keeper: %q %v: %v", line, err, <-k.done)
	}
	go io.Copy(io.Discard, pr)
	t.Cleanup(func() {
		cancel()
		<-k.done
	})
	return k
}

// noteHeld records what the keeper says of the connections it holds.
func (k *runningKeeper) noteHeld(n int) {
	k.heldMu.Lock()
	defer k.heldMu.Unlock()
	k.heldSeen = append(k.heldSeen, n)
}

// held returns the counts the keeper reported so far, in order.
func (k *runningKeeper) held() []int {
	k.heldMu.Lock()
	defer k.heldMu.Unlock()
	return slices.Clone(k.heldSeen)
}

// dials counts the keeper's connections to targets so far.
func (k *runningKeeper) dials() int { return strings.Count(k.log.String(), "connected to ") }

// clients counts the connections clients made to the keeper so far.
func (k *runningKeeper) clients() int {
	return len(regexp.MustCompile(`client pid [0-9]+ connected\n`).FindAllString(k.log.String(), -1))
}

type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) add(m string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, m)
}

func (w *warnings) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.msgs, "; ")
}

// TestKeeperKeepsConnectionsBetweenProcesses: pools of successive
// processes (here: successive pools) reach their hosts through the keeper,
// which dials each host once; files, commands with their output, stderr
// and exit status, and switches all go through the relay.
func TestKeeperKeepsConnectionsBetweenProcesses(t *testing.T) {
	c := sshtest.Start(t, 2)
	k := startKeeper(t, controlDir(t), time.Minute)
	a := release(t, "r1", map[string]string{"index.html": "one", "bin/run.sh": "#!/bin/sh\necho run\n"})
	for round := 1; round <= 3; round++ {
		var warned warnings
		p := NewPool(PoolOptions{Persist: time.Minute, ControlDir: k.dir, OnWarning: warned.add})
		for i, s := range c.Servers {
			h := p.Host(fmt.Sprintf("web%d", i+1), target(c, s))
			ctx := ctxT(t)
			switch round {
			case 1:
				if err := h.Prepare(ctx, a, nil); err != nil {
					t.Fatal(err)
				}
				if err := h.Switch(ctx, engine.SwitchInfo{Release: "r1", Actor: "test"}); err != nil {
					t.Fatal(err)
				}
			case 2:
				st, err := h.Inspect(ctx)
				if err != nil || st.Current != "r1" {
					t.Fatalf("round 2, %s: current %q, %v", h.Name(), st.Current, err)
				}
				if err := h.Verify(ctx, "r1"); err != nil {
					t.Fatalf("round 2, %s: verify: %v", h.Name(), err)
				}
			case 3:
				var out bytes.Buffer
				err := h.Exec(ctx, engine.ExecRequest{Command: "cat index.html; echo to-stderr >&2; exit 3",
					Env: map[string]string{"RELEASE_PATH": h.ReleasePath("r1")}, Output: &out})
				if err == nil || !strings.Contains(err.Error(), "3") {
					t.Fatalf("round 3, %s: exit 3 came back as %v", h.Name(), err)
				}
				if got := out.String(); !strings.Contains(got, "one") || !strings.Contains(got, "to-stderr") {
					t.Fatalf("round 3, %s: output %q", h.Name(), got)
				}
			}
		}
		p.Close()
		if w := warned.String(); w != "" {
			t.Fatalf("round %d did not use the keeper: %s", round, w)
		}
		if n := k.dials(); n != len(c.Servers) {
			t.Fatalf("after round %d the keeper dialled %d times, want once per host (%d):\n%s", round, n, len(c.Servers), k.log)
		}
		// One connection to the keeper per process, whatever its hosts.
		if n := k.clients(); n != round {
			t.Fatalf("after round %d the keeper had %d clients, want one per pool:\n%s", round, n, k.log)
		}
	}
	for _, s := range c.Servers {
		if got := readLink(t, filepath.Join(s.DeployTo, "current")); got != "releases/r1" {
			t.Fatalf("%s: current -> %q", s.Addr, got)
		}
	}

	// A target's connection lost under a client: the client's operation
	// is retried on a new connection, which the keeper dials anew.
	p := NewPool(PoolOptions{Persist: time.Minute, ControlDir: k.dir})
	defer p.Close()
	h := p.Host("web1", target(c, c.Servers[0]))
	if _, err := h.Inspect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	c.Servers[0].KillConnections()
	if st, err := h.Inspect(ctxT(t)); err != nil || st.Current != "r1" {
		t.Fatalf("inspect after the connection was lost: %q, %v", st.Current, err)
	}
	if n := k.dials(); n != len(c.Servers)+1 {
		t.Fatalf("the keeper dialled %d times, want %d (once more after the loss):\n%s", n, len(c.Servers)+1, k.log)
	}
	// What it holds was counted up, down at the loss, and up again.
	if got, want := k.held(), []int{1, 2, 1, 2}; !slices.Equal(got, want) {
		t.Fatalf("the keeper said it held %v connections in turn, want %v", got, want)
	}
	// Its log says which connection it lost, and why.
	if want := "connection to " + target(c, c.Servers[0]).Key() + " closed: the connection ended"; !strings.Contains(k.log.String(), want) {
		t.Fatalf("the keeper's log does not say %q:\n%s", want, k.log)
	}
}

// TestKeeperChecksHostKeys: through the keeper, a host whose key is not in
// the plan's known_hosts is refused with the dial's own error (the keeper
// never trusts a new key), and so is a changed key.
func TestKeeperChecksHostKeys(t *testing.T) {
	c := sshtest.Start(t, 1)
	k := startKeeper(t, controlDir(t), time.Minute)
	empty := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	other := sshtest.Start(t, 1) // another key, written for c's address
	wrong := filepath.Join(t.TempDir(), "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(c.Servers[0].Addr)}, other.Servers[0].HostKey)
	if err := os.WriteFile(wrong, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, known, want string
	}{
		{"unknown", empty, "is unknown"},
		{"changed", wrong, "has changed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var warned warnings
			p := NewPool(PoolOptions{Persist: time.Minute, ControlDir: k.dir, OnWarning: warned.add})
			defer p.Close()
			tg := target(c, c.Servers[0])
			tg.KnownHosts = []string{tt.known}
			_, err := p.Host("web1", tg).Inspect(ctxT(t))
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), tt.want) || !strings.Contains(err.Error(), "keeper") {
				t.Fatalf("inspect with a %s host key: %v", tt.name, err)
			}
			if w := warned.String(); w != "" {
				t.Fatalf("fell back to a direct dial: %s", w)
			}
		})
	}
	if n := k.dials(); n != 0 {
		t.Fatalf("the keeper connected %d times:\n%s", n, k.log)
	}
}

// TestKeeperUnusableFallsBackToDirect: a control directory others can use
// is refused (and said once), a missing keeper with nothing to start one
// too; the pool then dials directly, and works.
func TestKeeperUnusableFallsBackToDirect(t *testing.T) {
	c := sshtest.Start(t, 1)
	open := controlDir(t)
	if err := os.Chmod(open, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, dir, want string
	}{
		{"directory others can use", open, "must be 0700"},
		{"no keeper", controlDir(t), "no connection keeper"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var warned warnings
			p := NewPool(PoolOptions{Persist: time.Minute, ControlDir: tt.dir, OnWarning: warned.add})
			defer p.Close()
			h := p.Host("web1", target(c, c.Servers[0]))
			for range 2 {
				if _, err := h.Inspect(ctxT(t)); err != nil {
					t.Fatal(err)
				}
				h.Close()
			}
			if w := warned.String(); !strings.Contains(w, tt.want) || strings.Count(w, "connecting directly") != 1 {
				t.Fatalf("warnings: %q, want one naming %q", w, tt.want)
			}
		})
	}
}

// TestKeeperExitsWhenIdle: once its last client is gone the keeper waits
// its persist time and exits, removing its socket; a second keeper for the
// same directory is refused while the first runs.
func TestKeeperExitsWhenIdle(t *testing.T) {
	c := sshtest.Start(t, 1)
	dir := controlDir(t)
	k := startKeeper(t, dir, 2*time.Second)
	if err := ServeKeeper(context.Background(), KeeperOptions{Dir: dir, Persist: time.Minute}); !errors.Is(err, ErrKeeperRunning) {
		t.Fatalf("a second keeper: %v", err)
	}
	p := NewPool(PoolOptions{Persist: time.Minute, ControlDir: dir})
	if _, err := p.Host("web1", target(c, c.Servers[0])).Inspect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// While a client is connected the keeper stays, whatever its persist.
	select {
	case err := <-k.done:
		t.Fatalf("the keeper exited with a client connected: %v", err)
	default:
	}
	p.Close()
	select {
	case err := <-k.done:
		k.done <- err // for the cleanup
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the keeper did not exit after its persist time")
	}
	if _, err := os.Stat(filepath.Join(dir, keeperSocket)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket after exit: %v", err)
	}
	if !strings.Contains(k.log.String(), "exits: no client for 2s") {
		t.Fatalf("the keeper's log does not say why it exited:\n%s", k.log)
	}
}

// TestKeeperRelaysQuickCommands: a command that ends before the relay has
// passed on the answer to its exec request still reports success to the
// client (the keeper closed such channels first, and the client saw EOF
// instead of the answer: 15–39 of 5,000 commands on 100 hosts).
func TestKeeperRelaysQuickCommands(t *testing.T) {
	c := sshtest.Start(t, 4)
	k := startKeeper(t, controlDir(t), time.Minute)
	p := NewPool(PoolOptions{Persist: time.Minute, ControlDir: k.dir})
	defer p.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for i, s := range c.Servers {
		h := p.Host(fmt.Sprintf("web%d", i+1), target(c, s))
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 25 {
					var out bytes.Buffer
					if err := h.Exec(ctxT(t), engine.ExecRequest{Command: "echo ok", Dir: "/", Output: &out}); err != nil {
						errs <- err
					} else if out.String() != "ok\n" {
						errs <- fmt.Errorf("%s: output %q", h.Name(), out.String())
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 3 {
			t.Error(err)
		}
	}
	if n > 0 {
		t.Fatalf("%d of %d commands failed through the keeper", n, 4*4*25)
	}
}

// TestKeeperRefusesWhatItDoesNotRelay: a client of the former protocol
// (one socket connection per target) is answered with a line that makes
// it dial directly; on a connection, sessions on targets not attached,
// channels of other types and malformed targets are refused.
func TestKeeperRefusesWhatItDoesNotRelay(t *testing.T) {
	c := sshtest.Start(t, 1)
	k := startKeeper(t, controlDir(t), time.Minute)
	kc := &keeperClient{dir: k.dir}

	nc, _, err := kc.dial(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	old, _ := json.Marshal(map[string]any{"target": target(c, c.Servers[0])})
	if _, err := nc.Write(append(old, '\n')); err != nil {
		t.Fatal(err)
	}
	if answer, err := readLine(nc, 1024); err != nil || !strings.HasPrefix(answer, "unsupported: ") {
		t.Fatalf("a protocol 1 request was answered %q, %v", answer, err)
	}

	m, err := kc.mux(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.close()
	good, _ := json.Marshal(target(c, c.Servers[0]))
	vt, err := m.attach(ctxT(t), string(good), "u")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, typ string
		data      []byte
		want      string
	}{
		{"session on a target never attached", sessionChannel, gossh.Marshal(keeperSession{ID: vt.id + 1}), "no such target"},
		{"session without a target", sessionChannel, nil, "bad session request"},
		{"port forwarding", "direct-tcpip", nil, "session channels only"},
		{"plain session", "session", nil, "session channels only"},
		{"target that is not JSON", targetChannel, gossh.Marshal(keeperAttach{ID: 7, Target: "{"}), "bad target request"},
		{"target number in use", targetChannel, gossh.Marshal(keeperAttach{ID: vt.id, Target: string(good)}), "in use"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ch, _, err := m.client.OpenChannel(tt.typ, tt.data)
			if err == nil {
				ch.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("refused with %v, want %q", err, tt.want)
			}
		})
	}
	// The attached target still serves sessions.
	ch, _, err := vt.OpenChannel("session", nil)
	if err != nil {
		t.Fatalf("session on the attached target: %v", err)
	}
	ch.Close()
	// Once detached, its number serves no session.
	vt.Close()
	if _, _, err := vt.OpenChannel("session", nil); err == nil {
		t.Fatal("a session opened on a closed target")
	}
}

// TestKeeperHandsOverWarmSessions: once a process is done with a host, the
// keeper starts an SFTP session there, keeps the command shell the process
// parked, and hands both to the next process, which uses them as new ones
// (files read and written, links made by the shell's cp, the switch made;
// its commands run in the same shell); a warm session whose connection
// was lost is not handed over.
func TestKeeperHandsOverWarmSessions(t *testing.T) {
	c := sshtest.Start(t, 1)
	events := make(chan string, 16)
	dir := controlDir(t)
	log := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	pr, pw := io.Pipe()
	go func() {
		done <- ServeKeeper(ctx, KeeperOptions{Dir: dir, Persist: time.Minute, Ready: pw, Log: log,
			onWarm: func(e string) { events <- e }})
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	if line, err := readLine(pr, 64); err != nil || line != "ready" {
		t.Fatalf("keeper: %q %v", line, err)
	}
	go io.Copy(io.Discard, pr)
	// await returns the events up to the one that completes want.
	await := func(want ...string) []string {
		t.Helper()
		var seen []string
		for missing := len(want); missing > 0; {
			select {
			case e := <-events:
				seen = append(seen, e)
				if slices.Contains(want, e) {
					missing--
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("keeper's warm sessions: %q, want %q", seen, want)
			}
		}
		return seen
	}
	// use deploys release through the keeper and returns the process id
	// of the shell its commands ran in.
	use := func(release string) (shellPID string) {
		t.Helper()
		p := NewPool(PoolOptions{Persist: time.Minute, ControlDir: dir})
		defer p.Close()
		h := p.Host("web1", target(c, c.Servers[0]))
		onHost(t, h, func(r *remote) error {
			out, err := r.output("echo $$")
			shellPID = strings.TrimSpace(string(out))
			return err
		})
		a := releaseOf(t, release)
		if err := h.Prepare(ctxT(t), a, nil); err != nil {
			t.Fatal(err)
		}
		if err := h.Switch(ctxT(t), engine.SwitchInfo{Release: release, Actor: "test"}); err != nil {
			t.Fatal(err)
		}
		if st, err := h.Inspect(ctxT(t)); err != nil || st.Current != release {
			t.Fatalf("after the switch: current %q, %v", st.Current, err)
		}
		// Verify lists the release with find, in a command shell.
		if err := h.Verify(ctxT(t), release); err != nil {
			t.Fatal(err)
		}
		return shellPID
	}
	first := use("r1")
	await("ready sftp", "parked shell") // once the first process's sessions ended
	if pid := use("r2"); pid != first {
		t.Errorf("the second process's commands ran in shell %s, the first's in %s: want the parked one", pid, first)
	}
	await("used sftp", "used shell", "ready sftp", "parked shell")
	// Handing warm sessions over leaves nothing behind: the goroutines of
	// this process (keeper and clients) do not grow with the commands.
	before := runtime.NumGoroutine()
	for _, id := range []string{"r3", "r4", "r5", "r6", "r7"} {
		if pid := use(id); pid != first {
			t.Errorf("%s: commands ran in shell %s, want the parked %s", id, pid, first)
		}
		await("used sftp", "used shell", "ready sftp", "parked shell")
	}
	for deadline := time.Now().Add(20 * time.Second); runtime.NumGoroutine() > before+2; {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d before five more commands, %d after", before, runtime.NumGoroutine())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := readLink(t, filepath.Join(c.Servers[0].DeployTo, "current")); got != "releases/r7" {
		t.Fatalf("current -> %q", got)
	}
	// A process that only checks a release (a rollback's first step)
	// lists it with one find in the warm shell, not directory by
	// directory over SFTP.
	func() {
		p := NewPool(PoolOptions{Persist: time.Minute, ControlDir: dir})
		defer p.Close()
		if err := p.Host("web1", target(c, c.Servers[0])).Check(ctxT(t), "r6"); err != nil {
			t.Fatal(err)
		}
	}()
	await("used sftp", "used shell", "ready sftp", "parked shell")
	// A shell that prints while parked (a command left something running
	// in the background) is not idle: it is dropped, and the next process
	// gets a new one, without that output.
	fifo := mkfifo(t, "late")
	func() {
		p := NewPool(PoolOptions{Persist: time.Minute, ControlDir: dir})
		defer p.Close()
		onHost(t, p.Host("web1", target(c, c.Servers[0])), func(r *remote) error {
			_, err := r.output("cat " + Quote(fifo) + " >&2 &")
			return err
		})
	}()
	await("ready sftp", "parked shell")
	// Non-blocking: the background cat has it open for reading, or this
	// fails at once.
	w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteString("late output\n"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	await("dropped shell")
	if pid := use("r7"); pid == first {
		t.Errorf("the shell that printed while parked (%s) was handed over", pid)
	}
	await("used sftp", "ready sftp", "parked shell")
	// A shell whose command was still running when its process closed
	// (killed mid-command, say) is not kept: the next process does not
	// get it.
	busyPID := filepath.Join(t.TempDir(), "busy.pid")
	hold := mkfifo(t, "hold")
	func() {
		p := NewPool(PoolOptions{Persist: time.Minute, ControlDir: dir})
		defer p.Close()
		h := p.Host("web1", target(c, c.Servers[0]))
		go func() {
			_ = h.run(ctxT(t), "test", func(_ context.Context, r *remote) error {
				_, err := r.output("echo $$ >" + Quote(busyPID) + "; cat " + Quote(hold))
				return err
			})
		}()
		for {
			if b, err := os.ReadFile(busyPID); err == nil && len(b) > 0 && b[len(b)-1] == '\n' {
				break
			}
			runtime.Gosched()
		}
	}()
	// Its shell (the one parked before) is closed, and a new one started.
	await("ready sftp", "ready shell")
	busy, err := os.ReadFile(busyPID)
	if err != nil {
		t.Fatal(err)
	}
	if pid := use("r7"); pid == strings.TrimSpace(string(busy)) {
		t.Errorf("the shell closed mid-command (%s) was handed over", pid)
	}
	if w, err := os.OpenFile(hold, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		w.Close() // the cat, if still there, ends
	}
	await("used sftp", "used shell", "ready sftp", "parked shell")
	// Its connection lost (and seen so by the keeper), the warm session
	// goes with it: the next process starts a new one.
	c.Servers[0].KillConnections()
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(log.String(), " closed: "); {
		if time.Now().After(deadline) {
			t.Fatalf("the keeper did not see its connection end:\n%s", log)
		}
		time.Sleep(10 * time.Millisecond)
	}
	use("r8")
	if seen := await("ready sftp", "parked shell"); slices.Contains(seen, "used sftp") || slices.Contains(seen, "used shell") {
		t.Fatalf("warm sessions of a lost connection were handed over: %q", seen)
	}
}

// mkfifo makes a named pipe in a directory of the test's.
func mkfifo(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func releaseOf(t *testing.T, id string) *engine.Artifact {
	t.Helper()
	return release(t, id, map[string]string{"index.html": "page of " + id})
}

// TestKeeperCheckWhereCommandsDoNotRun: on an account whose sshd forces its
// SFTP server on every session, no command runs, and its session ends
// without the command shell's end-of-command line. Through the keeper a
// Check lists the release with find first; that failure must not read as
// a listing: the Check lists over SFTP instead, passes for a complete
// release, and names the file missing from another.
func TestKeeperCheckWhereCommandsDoNotRun(t *testing.T) {
	c := sshtest.StartWith(t, 1, sshtest.Options{ForceCommand: "internal-sftp"})
	s := c.Servers[0]
	// The releases are written here, as a deploy would have left them.
	lh := local.New("web1", s.DeployTo)
	for _, id := range []string{"r1", "r2"} {
		if err := lh.Prepare(ctxT(t), release(t, id, layouttest.ManyFiles(6)), nil); err != nil {
			t.Fatal(err)
		}
	}
	victim := filepath.Join(s.DeployTo, "releases", "r2", "d03", "f0003.txt")
	if err := os.Chmod(filepath.Dir(victim), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(victim); err != nil {
		t.Fatal(err)
	}
	k := startKeeper(t, controlDir(t), time.Minute)
	p := NewPool(PoolOptions{Persist: time.Minute, ControlDir: k.dir})
	defer p.Close()
	h := p.Host("web1", target(c, s))
	if err := h.Check(ctxT(t), "r1"); err != nil {
		t.Fatalf("check of a complete release: %v", err)
	}
	if err := h.Check(ctxT(t), "r2"); err == nil || !strings.Contains(err.Error(), "d03/f0003.txt: missing") {
		t.Fatalf("check of a release missing a file: %v", err)
	}
	// A prepare's mkdir and cp -l commands fail there too: its
	// directories and links are made over SFTP.
	if err := h.Prepare(ctxT(t), release(t, "r3", layouttest.ManyFiles(6)), nil); err != nil {
		t.Fatalf("prepare: %v", err)
	}
	if err := h.Check(ctxT(t), "r3"); err != nil {
		t.Fatalf("check of the release prepared: %v", err)
	}
	// A survey's listing command fails: it reads over SFTP.
	if st, check, err := h.Survey(ctxT(t), "r2"); err != nil || !slices.Equal(st.Releases, []string{"r1", "r2", "r3"}) ||
		check == nil || !strings.Contains(check.Error(), "d03/f0003.txt: missing") {
		t.Fatalf("survey: %+v, check %v, %v", st, check, err)
	}
	if n := k.dials(); n != 1 {
		t.Fatalf("the keeper dialled %d times, want once (the checks went through it):\n%s", n, k.log)
	}
}
