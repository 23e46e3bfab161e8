package serve

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"flightdeck/engine"
)

// needTools skips (or fails under CI=true) when a Debian package's binary is missing.
func needTools(t *testing.T, tools map[string]string) {
	t.Helper()
	for bin, pkg := range tools {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not found: install the Debian package %s", bin, pkg)
			}
			t.Skipf("%s not found: install the Debian package %s to run this test", bin, pkg)
		}
	}
}

// tmux drives the real OpenSSH client in tmux sessions on a private socket.
type tmux struct {
	t    *testing.T
	sock string
}

func (x *tmux) cmd(args ...string) string {
	x.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", x.sock}, args...)...).CombinedOutput()
	if err != nil {
		x.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (x *tmux) capture(name string) string { return x.cmd("capture-pane", "-p", "-t", name) }

// waitPane polls a pane until it shows want; it returns how long that took.
func (x *tmux) waitPane(name, want string, timeout time.Duration) time.Duration {
	x.t.Helper()
	start := time.Now()
	for {
		s := x.capture(name)
		if strings.Contains(s, want) {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			x.t.Fatalf("pane %s never showed %q within %s:\n%s", name, want, timeout, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOpenSSHClientsPair: two operators with the real ssh client in tmux;
// one pauses, the other's screen says who paused.
func TestOpenSSHClientsPair(t *testing.T) {
	needTools(t, map[string]string{"ssh": "openssh-client", "tmux": "tmux"})
	alice := newUser(t, "alice", engine.RoleOperator)
	bob := newUser(t, "bob", engine.RoleOperator)
	b := startFleet(t, false)
	ts := startServer(t, Options{Keys: keysFor(t, alice, bob), Backend: b})
	dir := t.TempDir()
	_, port, _ := net.SplitHostPort(ts.addr)
	known := filepath.Join(dir, "known_hosts")
	line := fmt.Sprintf("[127.0.0.1]:%s %s", port, bytes.TrimSpace(gossh.MarshalAuthorizedKey(ts.hostKey)))
	if err := os.WriteFile(known, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	x := &tmux{t: t, sock: filepath.Join(dir, "tmux.sock")}
	t.Cleanup(func() { _ = exec.Command("tmux", "-S", x.sock, "kill-server").Run() })
	for _, u := range []*user{alice, bob} {
		ssh := fmt.Sprintf("ssh -tt -F /dev/null -i %s -p %s -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=%s %s@127.0.0.1",
			u.keyFile(), port, known, u.name)
		x.cmd("new-session", "-d", "-s", u.name, "-x", "160", "-y", "40", "-e", "TERM=xterm-256color", ssh)
	}
	x.waitPane("alice", "bob(operator)", 15*time.Second)
	x.waitPane("bob", "alice(operator)", 15*time.Second)

	go func() {
		_, _ = b.fleet.Deploy(b.ctx, engine.Actor{Name: "release-bot", Role: engine.RoleOwner, Via: "test"}, false)
	}()
	for attempt := 0; ; attempt++ {
		waitState(t, b.fleet.Hub, 30*time.Second, "the run to be running", func(s *engine.State) bool {
			return s.Status == engine.StatusRunning && s.Step >= 1
		})
		x.waitPane("alice", "RUNNING", 10*time.Second)
		x.cmd("send-keys", "-t", "alice", "p")
		st := waitState(t, b.fleet.Hub, 10*time.Second, "a pause", func(s *engine.State) bool { return s.Status == engine.StatusPaused })
		if st.PausedBy == "alice" {
			break
		}
		// The gate paused the run first (inconclusive) and alice's p
		// resumed it: try again.
		if attempt == 3 {
			t.Fatalf("paused by %s, never by alice", st.PausedBy)
		}
	}
	took := x.waitPane("bob", "PAUSED by alice", 5*time.Second)
	t.Logf("bob's screen showed PAUSED by alice %s after the engine paused (goal 200ms)", took.Round(time.Millisecond))

	// Quitting one client leaves the other and the run alone.
	x.cmd("send-keys", "-t", "alice", "q")
	x.waitPane("alice", "Quit the cockpit?", 5*time.Second)
	x.cmd("send-keys", "-t", "alice", "y")
	x.waitPane("bob", "on: bob(operator)", 10*time.Second)
	if st := b.fleet.Hub.Snapshot(); st.Status != engine.StatusPaused {
		t.Fatalf("the run changed when a client quit: %s", st.Status)
	}
}
