package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"flightdeck/engine"
	"flightdeck/internal/syncbuf"
	"flightdeck/targets/ssh/sshtest"
)

// sshProject is a plan whose hosts are real sshd servers on 127.0.0.1.
func sshProject(t *testing.T, c *sshtest.Cluster, knownHosts, extra string) *project {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "build")
	os.MkdirAll(src, 0o755)
	for i := range 50 {
		writeFile(t, filepath.Join(src, fmt.Sprintf("f%02d.txt", i)), fmt.Sprintf("file %d\n", i))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "app: shop\nsource: ./build\nkeep_releases: 5\n%senvironments:\n  production:\n    hosts:\n", extra)
	for i, s := range c.Servers {
		fmt.Fprintf(&b, "      - {name: web-%d, ssh: '%s@%s', deploy_to: '%s'}\n", i+1, c.User, s.Addr, s.DeployTo)
	}
	fmt.Fprintf(&b, "    strategy: {kind: rolling, wave_size: 1}\n    ssh:\n      identity_file: '%s'\n      known_hosts: '%s'\n      connect_timeout: 5s\n      command_timeout: 20s\n", c.ClientKey, knownHosts)
	p := &project{t: t, dir: dir, plan: filepath.Join(dir, "flightdeck.yaml")}
	writeFile(t, p.plan, b.String())
	return p
}

func remoteCurrent(t *testing.T, s *sshtest.Server) string {
	t.Helper()
	return current(t, s.DeployTo)
}

// TestSSHDeployRollback: deploy r1, deploy r2 (only the changed file is
// sent), rollback --to r1, over three real sshd hosts.
func TestSSHDeployRollback(t *testing.T) {
	c := sshtest.Start(t, 3)
	p := sshProject(t, c, c.KnownHosts, "")
	if out, code := p.run("deploy", "--headless", "--release", "r1"); code != 0 {
		t.Fatalf("deploy r1 exit %d:\n%s", code, out)
	}
	writeFile(t, filepath.Join(p.dir, "build", "f00.txt"), "changed content\n")
	out, code := p.run("deploy", "--headless", "--json", "--release", "r2")
	if code != 0 {
		t.Fatalf("deploy r2 exit %d:\n%s", code, out)
	}
	sent := map[string]int64{}
	for _, line := range strings.Split(out, "\n") {
		var e engine.Event
		if json.Unmarshal([]byte(line), &e) == nil && e.Type == engine.EvHostPhase && e.Phase == engine.PhasePrepared && e.Progress != nil {
			sent[e.Host] = e.Progress.BytesSent
		}
	}
	for i := range c.Servers {
		name := fmt.Sprintf("web-%d", i+1)
		if got, want := sent[name], int64(len("changed content\n")); got != want {
			t.Errorf("%s: %d bytes sent for r2, want only the changed file's %d", name, got, want)
		}
	}
	if out, code := p.run("rollback", "--headless", "--to", "r1"); code != 0 {
		t.Fatalf("rollback exit %d:\n%s", code, out)
	}
	for i, s := range c.Servers {
		if cur := remoteCurrent(t, s); cur != "r1" {
			t.Errorf("web-%d current %q, want r1", i+1, cur)
		}
		log, _ := os.ReadFile(filepath.Join(s.DeployTo, "revisions.log"))
		lines := strings.Split(strings.TrimSpace(string(log)), "\n")
		if len(lines) != 3 || !strings.Contains(lines[0], "deploy release=r1 previous=-") ||
			!strings.Contains(lines[1], "deploy release=r2 previous=r1") || !strings.Contains(lines[2], "rollback release=r1 previous=r2") {
			t.Errorf("web-%d revisions.log:\n%s", i+1, log)
		}
	}
	out, code = p.run("releases", "--json")
	if code != 0 || !strings.Contains(out, `"current": "r1"`) {
		t.Fatalf("releases over ssh exit %d:\n%s", code, out)
	}
}

// TestSSHUnknownHostKey: an unknown key is refused before anything is
// sent, with its fingerprint; --accept-new-host-keys proceeds and the
// journal records it.
func TestSSHUnknownHostKey(t *testing.T) {
	c := sshtest.Start(t, 1)
	empty := filepath.Join(t.TempDir(), "known_hosts")
	writeFile(t, empty, "")
	p := sshProject(t, c, empty, "")
	out, code := p.run("deploy", "--headless", "--release", "r1")
	if code == 0 || !strings.Contains(out, "SHA256:") {
		t.Fatalf("unknown host key: exit %d, want a refusal naming the fingerprint:\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(c.Servers[0].DeployTo, "releases")); !os.IsNotExist(err) {
		t.Fatal("something was written on a host whose key was refused")
	}
	out, code = p.run("deploy", "--headless", "--release", "r1", "--accept-new-host-keys")
	if code != 0 || !strings.Contains(out, "trusted the new host key") {
		t.Fatalf("--accept-new-host-keys: exit %d:\n%s", code, out)
	}
	kh, _ := os.ReadFile(empty)
	if !bytes.Contains(kh, []byte(strings.Fields(c.Servers[0].KnownHostsLine)[2])) {
		t.Fatalf("the accepted key was not recorded:\n%s", kh)
	}
}

// TestSSHHostDiesMidRun: one host's sshd is killed in the middle of a
// rolling run: the run stops, the switched hosts go back, exit 1, and the
// journal names the host.
func TestSSHHostDiesMidRun(t *testing.T) {
	c := sshtest.Start(t, 3)
	gate := filepath.Join(t.TempDir(), "gate")
	p := sshProject(t, c, c.KnownHosts, fmt.Sprintf("restart: 'test \"$RELEASE_VERSION\" = r1 || while [ ! -e %s ]; do sleep 0.01; done'\n", gate))
	if out, code := p.run("deploy", "--headless", "--release", "r1"); code != 0 {
		t.Fatalf("deploy r1 exit %d:\n%s", code, out)
	}
	writeFile(t, filepath.Join(p.dir, "build", "f00.txt"), "r2\n")
	cmd := exec.Command(binary, "deploy", "--headless", "--release", "r2")
	cmd.Dir = p.dir
	var out syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// web-1 (wave 1) is restarting: kill web-3's sshd, then let web-1 finish.
	waitFor(t, func() bool { return strings.Contains(out.String(), "[web-1] restarting") })
	if err := c.Servers[2].Kill(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, gate, "")
	err := cmd.Wait()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("deploy with a dead host: %v, want exit 1:\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "[web-3] failed") || !strings.Contains(out.String(), "host web-3 failed") {
		t.Fatalf("the output does not name the dead host:\n%s", out.String())
	}
	for i, s := range c.Servers[:2] {
		if cur := remoteCurrent(t, s); cur != "r1" {
			t.Errorf("web-%d is on %q after the rollback, want r1", i+1, cur)
		}
	}
	runs, _ := engine.ListRuns(filepath.Join(p.dir, ".flightdeck"))
	last := runs[len(runs)-1]
	// web-3 is unreachable, so whether its link moved cannot be checked:
	// the run ends failed (not "rolled back") and says so.
	if last.Outcome != engine.OutcomeRolledBack && last.Outcome != engine.OutcomeFailed {
		t.Fatalf("journal outcome %s", last.Outcome)
	}
	evs, _ := engine.ReadJournal(filepath.Join(p.dir, ".flightdeck"), last.Run)
	st := engine.Fold(evs)
	if st.Report == nil || !strings.Contains(strings.Join(st.Report.Failed, ","), "web-3") || !strings.Contains(st.Host("web-3").Err, "web-3") && st.Host("web-3").Err == "" {
		t.Fatalf("the journal's report does not name web-3 and its error: %+v", st.Report)
	}
}

// TestSSHPersistKeepsConnections: with `ssh: {persist: …}` the first
// command starts a connection keeper and the commands that follow reach
// the hosts through its connections: three commands, one dial per host.
// With no command left, the keeper exits after the persist time.
func TestSSHPersistKeepsConnections(t *testing.T) {
	c := sshtest.Start(t, 2)
	ctl, err := os.MkdirTemp("", "fdk") // short: a socket path is at most 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(ctl) })
	p := sshProject(t, c, c.KnownHosts, "")
	plan, _ := os.ReadFile(p.plan)
	writeFile(t, p.plan, strings.Replace(string(plan), "      command_timeout: 20s\n",
		fmt.Sprintf("      command_timeout: 20s\n      persist: 5s\n      control_dir: '%s'\n", ctl), 1))

	var pid int
	for i, args := range [][]string{
		{"deploy", "--headless", "--release", "r1"},
		{"deploy", "--headless", "--release", "r2"},
		{"rollback", "--headless"},
	} {
		out, code := p.run(args...)
		if code != 0 || strings.Contains(out, "connecting directly") {
			t.Fatalf("%v: exit %d:\n%s", args, code, out)
		}
		b, err := os.ReadFile(filepath.Join(ctl, "keeper.pid"))
		if err != nil {
			t.Fatalf("after %v: no keeper: %v", args, err)
		}
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if i > 0 && n != pid {
			t.Fatalf("after %v the keeper is %d, was %d: it did not persist", args, n, pid)
		}
		pid = n
	}
	log, _ := os.ReadFile(filepath.Join(ctl, "keeper.log"))
	if n := strings.Count(string(log), "connected to "); n != len(c.Servers) {
		t.Fatalf("the keeper dialled %d times for 3 commands, want once per host (%d):\n%s", n, len(c.Servers), log)
	}
	for i, s := range c.Servers {
		if cur := remoteCurrent(t, s); cur != "r1" {
			t.Errorf("web-%d current %q, want r1", i+1, cur)
		}
	}
	// Idle: it exits on its own, and removes its socket.
	running := func() bool { // a zombie has exited (its reaper may be slow)
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		i := bytes.LastIndexByte(b, ')')
		return err == nil && i > 0 && i+2 < len(b) && b[i+2] != 'Z'
	}
	deadline := time.Now().Add(60 * time.Second)
	for running() {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGTERM)
			t.Fatalf("the keeper %d did not exit 5s after the last command", pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(ctl, "keeper.sock")); !os.IsNotExist(err) {
		t.Fatalf("keeper socket after exit: %v", err)
	}
}
