package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"

	"flightdeck/engine"
	"flightdeck/engine/plan"
	"flightdeck/targets/lab"
	"flightdeck/targets/lab/labtest"
)

// runIn runs flightdeck in dir with FLIGHTDECK_LABS=labs and returns its
// combined output and exit code (bounded: a hang fails the test).
func runIn(t *testing.T, dir, labs string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "FLIGHTDECK_LABS="+labs, "FLIGHTDECK_ACTOR=trainee")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("flightdeck %s did not finish within 5 minutes:\n%s", strings.Join(args, " "), out)
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// TestLabAcceptance (acceptance 1): `lab up --hosts 4`, then deploy with
// the printed plan snippet over SSH with host keys verified, releases and
// rollback, bad input, and `lab down` leaving no labelled object.
func TestLabAcceptance(t *testing.T) {
	d := labtest.Require(t)
	labs, dir := t.TempDir(), t.TempDir()
	name := labtest.Name("acc")
	labtest.Down(t, d, name, labs)
	var said strings.Builder // everything the commands printed
	run := func(args ...string) (string, int) {
		t.Helper()
		out, code := runIn(t, dir, labs, args...)
		said.WriteString(out)
		return out, code
	}

	out, code := run("lab", "up", "--hosts", "4", "--name", name)
	if code != 0 {
		t.Fatalf("lab up: exit %d:\n%s", code, out)
	}
	i := strings.Index(out, "# flightdeck lab "+name)
	if i < 0 {
		t.Fatalf("lab up printed no plan snippet:\n%s", out)
	}
	snippet := out[i:]
	if saved, _ := os.ReadFile(filepath.Join(labs, name, "plan.yaml")); string(saved) != snippet {
		t.Errorf("the snippet written to plan.yaml differs from the one printed:\n%s\n---\n%s", saved, snippet)
	}
	addrs := regexp.MustCompile(`ssh: root@([0-9.]+), backend: '([0-9.:]+)'`).FindAllStringSubmatch(snippet, -1)
	if len(addrs) != 4 {
		t.Fatalf("snippet names %d hosts, want 4:\n%s", len(addrs), snippet)
	}

	src := filepath.Join(dir, "build")
	os.MkdirAll(src, 0o755)
	writeFile(t, filepath.Join(src, "index.html"), "r1\n")
	// The health check makes each deploy wait until every host serves
	// (the lab's hosts start their service once a first release is there).
	writeFile(t, filepath.Join(dir, "flightdeck.yaml"), "app: shop\nsource: ./build\nkeep_releases: 5\n"+
		"health: {url: \"http://{backend}/healthz\", timeout: 30s}\n"+snippet)
	if out, code := run("deploy", "--headless", "--release", "r1"); code != 0 {
		t.Fatalf("deploy r1: exit %d:\n%s", code, out)
	}
	writeFile(t, filepath.Join(src, "index.html"), "r2\n")
	if out, code := run("deploy", "--headless", "--release", "r2"); code != 0 {
		t.Fatalf("deploy r2: exit %d:\n%s", code, out)
	}
	assertReleases := func(want string) {
		t.Helper()
		out, code := run("releases", "--json")
		if code != 0 {
			t.Fatalf("releases: exit %d:\n%s", code, out)
		}
		var hs []hostReleases
		if err := json.Unmarshal([]byte(out), &hs); err != nil {
			t.Fatalf("releases --json: %v\n%s", err, out)
		}
		if len(hs) != 4 {
			t.Fatalf("releases lists %d hosts, want 4", len(hs))
		}
		for _, h := range hs {
			if h.Current != want || !slices.Contains(h.Releases, "r1") || !slices.Contains(h.Releases, "r2") {
				t.Errorf("%s: current %s, releases %v; want current %s with r1 and r2 kept", h.Host, h.Current, h.Releases, want)
			}
		}
		// Each host serves the release current points to.
		for _, a := range addrs {
			resp, err := http.Get("http://" + a[2] + "/")
			if err != nil {
				t.Errorf("GET %s: %v", a[2], err)
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(body), `"release":"`+want+`"`) {
				t.Errorf("%s serves %s, want release %s", a[2], body, want)
			}
		}
	}
	assertReleases("r2")
	if out, code := run("rollback", "--headless"); code != 0 {
		t.Fatalf("rollback: exit %d:\n%s", code, out)
	}
	assertReleases("r1")

	// Host keys are verified: with a known_hosts that does not list the
	// lab's hosts, nothing is sent.
	empty := filepath.Join(dir, "empty_known_hosts")
	writeFile(t, empty, "")
	writeFile(t, filepath.Join(dir, "other.yaml"), "app: shop\nsource: ./build\n"+
		strings.Replace(snippet, filepath.Join(labs, name, "known_hosts"), empty, 1))
	out, code = run("deploy", "-f", "other.yaml", "--headless", "--release", "r3")
	if code == 0 || !strings.Contains(out, "is unknown") {
		t.Errorf("deploy with an empty known_hosts: exit %d, want a refusal naming the unknown host key:\n%s", code, out)
	}

	out, code = run("lab", "status", "--name", name)
	if code != 0 || strings.Count(out, " up ") != 4 {
		t.Errorf("lab status: exit %d, want 4 hosts up:\n%s", code, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"lab", "up", "--hosts", "1", "--name", name}, "already exists"},
		{[]string{"lab", "fault", "web-9", "kill", "--name", name}, "web-1, web-2, web-3, web-4"},
		{[]string{"lab", "fault", "web-1", "explode", "--name", name}, "unknown fault"},
		{[]string{"lab", "status", "--name", labtest.Name("none")}, "no lab named"},
		{[]string{"lab", "up", "--name", "Bad_Name"}, "lab name"},
	} {
		before := labtest.Objects(t, d, name)
		out, code := run(tc.args...)
		if code != 2 || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d, want 2 with %q:\n%s", tc.args, code, tc.want, out)
		}
		if after := labtest.Objects(t, d, name); after != before {
			t.Errorf("%v changed the lab's objects: %d, then %d", tc.args, before, after)
		}
	}

	// A fault through the command: the host shows it, the lab's fault log
	// records it with who caused it, heal undoes it.
	if out, code := run("lab", "fault", "web-4", "pause", "--name", name); code != 0 {
		t.Fatalf("lab fault: exit %d:\n%s", code, out)
	}
	if out, _ := run("lab", "status", "--name", name); !regexp.MustCompile(`web-4 .* paused +pause by trainee`).MatchString(out) {
		t.Errorf("lab status does not show web-4 paused by trainee:\n%s", out)
	}
	if out, code := run("lab", "heal", "web-4", "--name", name); code != 0 || !strings.Contains(out, "answers SSH") {
		t.Fatalf("lab heal: exit %d, want 0 and web-4 answering SSH:\n%s", code, out)
	}
	flog, _ := os.ReadFile(filepath.Join(labs, name, "faults.log"))
	if !regexp.MustCompile(`"host":"web-4","action":"pause","actor":"trainee"[^\n]*\n[^\n]*"host":"web-4","action":"heal","actor":"trainee"`).Match(flog) {
		t.Errorf("the lab's fault log does not record the pause and the heal by trainee:\n%s", flog)
	}

	assertNoKeyLeaked(t, d, name, filepath.Join(labs, name), said.String(), filepath.Join(dir, ".flightdeck"))

	if out, code := run("lab", "down", "--name", name); code != 0 {
		t.Fatalf("lab down: exit %d:\n%s", code, out)
	}
	if n := labtest.Objects(t, d, name); n != 0 {
		t.Errorf("%d containers, volumes or networks labelled %s=%s left after lab down", n, lab.LabelLab, name)
	}
	if _, err := os.Stat(filepath.Join(labs, name)); !os.IsNotExist(err) {
		t.Errorf("the lab's directory (its key) is left after lab down: %v", err)
	}
	if out, code := run("lab", "down", "--name", name); code != 0 || !strings.Contains(out, "nothing to remove") {
		t.Errorf("lab down again: exit %d, want 0 saying there is nothing to remove:\n%s", code, out)
	}
}

// assertNoKeyLeaked: no private key of the lab (its SSH key, each host's
// key) appears in what the commands printed, in the journal, in the lab's
// fault log or in its containers' logs.
func assertNoKeyLeaked(t *testing.T, d *lab.Docker, name, labDir, printed, stateDir string) {
	t.Helper()
	keys, _ := filepath.Glob(filepath.Join(labDir, "hosts", "*", "ssh_host_ed25519_key"))
	keys = append(keys, filepath.Join(labDir, "id_ed25519"))
	var secrets []string // the lines of each key's body but the first (a header every such key shares)
	for _, k := range keys {
		b, err := os.ReadFile(k)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) < 4 {
			t.Fatalf("%s: %d lines, not an OpenSSH private key", k, len(lines))
		}
		secrets = append(secrets, lines[2:len(lines)-1]...)
	}
	places := map[string]string{"the commands' output": printed}
	journals, _ := filepath.Glob(filepath.Join(stateDir, "journal", "*.jsonl"))
	if len(journals) == 0 {
		t.Fatalf("no journal under %s", stateDir)
	}
	for _, f := range append(journals, filepath.Join(labDir, "faults.log")) {
		b, _ := os.ReadFile(f)
		places[f] = string(b)
	}
	ctx := context.Background()
	list, err := d.Client().ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", lab.LabelLab+"="+name)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list.Items {
		rc, err := d.Client().ContainerLogs(ctx, c.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		places["the logs of "+c.Names[0]] = string(b)
	}
	if len(list.Items) == 0 {
		t.Fatal("no container of the lab to read the logs of")
	}
	for where, text := range places {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("a private key of the lab is in %s", where)
				break
			}
		}
	}
}

// TestNoDaemonIsBadInput: without an engine, lab up exits 2 naming what
// it tried and how to start one.
func TestNoDaemonIsBadInput(t *testing.T) {
	labs := t.TempDir()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	t.Setenv("DOCKER_HOST", "unix://"+sock)
	for _, args := range [][]string{{"lab", "up"}, {"demo", "--lab", "--headless"}} {
		out, code := runIn(t, t.TempDir(), labs, args...)
		if code != 2 || !strings.Contains(out, "DOCKER_HOST=unix://"+sock) || !strings.Contains(out, "systemctl start docker") {
			t.Errorf("%v without an engine: exit %d, want 2 naming DOCKER_HOST and how to start one:\n%s", args, code, out)
		}
	}
	if entries, _ := os.ReadDir(labs); len(entries) != 0 {
		t.Errorf("lab up without an engine created %v", entries)
	}
}

// labCurrents reads each lab host's current release of the demo fleet in
// dir, through the engine's exec (the host may be off the network).
func labCurrents(t *testing.T, l *lab.Lab, dir string) map[string]string {
	t.Helper()
	p, err := plan.Load(filepath.Join(dir, "flightdeck.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	env, _ := p.Env("demo")
	out := map[string]string{}
	for _, h := range env.Hosts {
		cur := filepath.Join(h.DeployTo, engine.CurrentLink)
		s, code, err := l.Exec(context.Background(), h.Name, []string{"/bin/sh", "-c",
			"t=$(readlink " + cur + ") && test -f " + filepath.Dir(cur) + "/$t/.flightdeck-manifest.json && basename $t"})
		if err != nil || code != 0 {
			t.Errorf("%s: read %s: exit %d %v: %s", h.Name, cur, code, err, s)
			continue
		}
		out[h.Name] = strings.TrimSpace(s)
	}
	return out
}

// TestDemoOnLab runs `demo --lab-name` on one shared lab: acceptance 2
// (good is HITLESS for each strategy), 3 (partition and hung-host end in
// bounded time naming the host, every reachable host on one release) and
// 4 (host-dies really kills the container).
func TestDemoOnLab(t *testing.T) {
	if testing.Short() {
		t.Skip("demo runs skipped in -short mode")
	}
	d := labtest.Require(t)
	l := labtest.Up(t, d, 4, binary)

	t.Run("good", func(t *testing.T) {
		for _, strategy := range []string{"symlink", "rolling", "canary", "bluegreen", "ab"} {
			t.Run(strategy, func(t *testing.T) {
				r := runDemo(t, "--lab-name", l.Name, "--strategy", strategy, "--scenario", "good")
				// HITLESS is 0 failed requests and the probe's p99 within the
				// SLO (200 ms). The p99 the probe sees on a machine loaded by
				// other work is that machine's business (the release's own
				// latency is judged by the gates, which must pass): then the
				// verdict says so and the demo exits 1, and the test says so.
				p99Only := r.report.Outcome == engine.OutcomeSucceeded && strings.HasPrefix(r.report.Verdict, "NOT HITLESS: probe p99")
				if p99Only {
					t.Logf("verdict %q: the machine is loaded", r.report.Verdict)
				} else if r.code != 0 || !strings.Contains(r.out, "verdict: HITLESS") {
					t.Fatalf("exit %d, want 0 and HITLESS:\n%s", r.code, r.out)
				}
				if p := r.report.Probe; p.Failed != 0 || p.Requests < 100 {
					t.Errorf("%d of %d probe requests failed; want 0 of many", p.Failed, p.Requests)
				}
				if !strings.Contains(r.out, "on lab "+l.Name) || !strings.Contains(r.out, "over SSH") {
					t.Errorf("the demo did not say it runs on lab %s over SSH:\n%s", l.Name, r.out)
				}
				for h, cur := range labCurrents(t, l, r.dir) {
					if cur != "v2" {
						t.Errorf("%s is on %q, want v2", h, cur)
					}
				}
			})
		}
	})

	// The faults run side by side, each on a lab of its own (3 hosts:
	// rolling waves of 2 put web-3 alone in the second wave, so the fault,
	// on web-3's turn, lands mid-release): most of their time is waiting
	// for SSH timeouts. Their probe traffic is light (the verdict is not
	// what they check), so that they leave the machine's cores alone.
	faults := []struct{ scenario, fault, says string }{
		{"partition", "partition", ""},
		{"hung-host", "pause", "no answer from the host within 10s (command_timeout)"},
		{"host-dies", "kill", "container killed"},
	}
	labs := labtest.UpMany(t, d, len(faults), 3, binary)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dies := watchDies(ctx, d, labs[2].Name) // before the demo that kills web-3
	waits := make([]func(*testing.T) demoRun, len(faults))
	for i, tc := range faults {
		waits[i] = startDemo(t, "--lab-name", labs[i].Name, "--strategy", "rolling", "--scenario", tc.scenario, "--rate", "50")
	}
	// The bound: an operation on the unreachable host gives up after the
	// plan's command_timeout (10 s), a new connection after connect_timeout
	// (5 s); reverting the rest is quick. The whole release run stays well
	// within a minute even on a loaded machine; 120 s is the limit here.
	const bound = 120 * time.Second
	for i, tc := range faults {
		t.Run(tc.scenario, func(t *testing.T) {
			l, r := labs[i], waits[i](t)
			if r.code != 1 {
				t.Fatalf("exit %d, want 1:\n%s", r.code, r.out)
			}
			if r.report.Duration > bound {
				t.Errorf("the run took %s, more than %s", r.report.Duration, bound)
			}
			t.Logf("%s: the release run took %s", tc.scenario, r.report.Duration.Round(time.Millisecond))
			if !slices.Contains(r.report.Failed, "web-3") || !strings.Contains(r.out, "failed hosts: web-3") {
				t.Errorf("the report names %v, want web-3:\n%s", r.report.Failed, r.out)
			}
			if tc.says != "" && !strings.Contains(r.out, tc.says) {
				t.Errorf("the output does not say %q:\n%s", tc.says, r.out)
			}
			assertJournaled(t, r.events, "lab: "+tc.fault+" web-3")
			named := false
			for _, e := range r.events {
				if e.Host == "web-3" && e.Phase == engine.PhaseFailed && e.Error != "" {
					named = true
				}
			}
			if !named {
				t.Error("the journal has no failure of web-3 with its error")
			}
			if tc.fault == "kill" {
				// The engine's API says the container died of SIGKILL.
				cancel()
				if got := dies(); !slices.Contains(got, "fdlab-"+l.Name+"-web-3 137") {
					t.Errorf("container deaths seen: %v, want web-3's with exit code 137", got)
				}
			}
			// Every host it could reach is on one complete release.
			curs := labCurrents(t, l, r.dir)
			delete(curs, "web-3")
			var rels []string
			for _, c := range curs {
				rels = append(rels, c)
			}
			slices.Sort(rels)
			if len(curs) != 2 || len(slices.Compact(rels)) != 1 {
				t.Errorf("reachable hosts are on %v, want one release", curs)
			}
			assertHealed(t, l)
		})
	}
}

func assertJournaled(t *testing.T, evs []engine.Event, prefix string) {
	t.Helper()
	for _, e := range evs {
		if e.Type == engine.EvNotice && strings.HasPrefix(e.Message, prefix) && e.Actor == "lab" {
			return
		}
	}
	t.Errorf("the journal has no notice %q by actor lab", prefix)
}

// assertHealed: a demo on a kept lab heals what it broke.
func assertHealed(t *testing.T, l *lab.Lab) {
	t.Helper()
	c := l.Clone()
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, h := range c.Hosts {
		if h.Condition() != "up" {
			t.Errorf("after the demo %s is %s, want up (the demo heals the faults it caused)", h.Name, h.Condition())
		}
	}
}

// watchDies records the lab's container deaths (name and exit code) from
// the engine's event stream until ctx ends; the returned func waits for
// the stream to end and lists them.
func watchDies(ctx context.Context, d *lab.Docker, name string) func() []string {
	res := d.Client().Events(ctx, client.EventsListOptions{Filters: make(client.Filters).
		Add("label", lab.LabelLab+"="+name).Add("type", string(events.ContainerEventType)).Add("event", "die")})
	var mu sync.Mutex
	var dies []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case m := <-res.Messages:
				mu.Lock()
				dies = append(dies, m.Actor.Attributes["name"]+" "+m.Actor.Attributes["exitCode"])
				mu.Unlock()
			case <-res.Err:
				return
			}
		}
	}()
	return func() []string {
		<-done
		mu.Lock()
		defer mu.Unlock()
		return dies
	}
}

// interruptAt starts cmd (stdout and stderr together), reads its output
// (each line to onLine) until a line contains marker, calls beforeSignal,
// sends SIGINT (Ctrl-C) and waits at most 2 minutes for it to exit. It
// returns the output lines.
func interruptAt(t *testing.T, cmd *exec.Cmd, marker string, onLine func(string), beforeSignal func()) []string {
	t.Helper()
	return signalAt(t, cmd, syscall.SIGINT, marker, onLine, beforeSignal)
}

// signalAt is interruptAt with another signal (SIGHUP: the terminal closed).
func signalAt(t *testing.T, cmd *exec.Cmd, sig syscall.Signal, marker string, onLine func(string), beforeSignal func()) []string {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	defer func() { // a failed test must not leave the command running
		if !exited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	sc := bufio.NewScanner(stdout)
	var lines []string
	seen := false
	for !seen && sc.Scan() {
		lines = append(lines, sc.Text())
		if onLine != nil {
			onLine(sc.Text())
		}
		seen = strings.Contains(sc.Text(), marker)
	}
	if !seen {
		t.Fatalf("the command never printed %q:\n%s", marker, strings.Join(lines, "\n"))
	}
	if beforeSignal != nil {
		beforeSignal()
	}
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	rest := make(chan []string, 1)
	go func() {
		var more []string
		for sc.Scan() {
			more = append(more, sc.Text())
		}
		rest <- more
	}()
	select {
	case more := <-rest: // the output ends when the command exits
		lines = append(lines, more...)
	case <-time.After(2 * time.Minute):
		t.Fatal("the command did not stop within 2 minutes of Ctrl-C")
	}
	cmd.Wait()
	exited = true
	return lines
}

// TestDemoLabCtrlCLeavesNothing (acceptance 5): Ctrl-C while the lab
// starts, mid-release, and while a host hangs leaves no container,
// volume, network or process of the demo's lab.
func TestDemoLabCtrlCLeavesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("demo runs skipped in -short mode")
	}
	d := labtest.Require(t)
	// The three moments are three demos on labs of their own, side by side
	// (go test runs two at a time on two cores: the longest goes first).
	for _, tc := range []struct {
		when, scenario string
		sig            syscall.Signal
	}{
		{"lab: pause web-3", "hung-host", syscall.SIGINT}, // SSH operations hang on a paused host (a switch gives up after 10 s)
		{" started (", "good", syscall.SIGINT},            // lab up: a host has started, others are being created
		{"preparing v2", "good", syscall.SIGINT},          // the release is on its way
		{"preparing v2", "good", syscall.SIGHUP},          // the same when the terminal is closed
	} {
		t.Run(tc.scenario+"/"+strings.TrimSpace(tc.when)+"/"+tc.sig.String(), func(t *testing.T) {
			t.Parallel()
			labs := t.TempDir()
			// Rolling waves of 2: web-3's turn (and the hung-host fault)
			// comes with the second wave, a second or so into the release.
			cmd := exec.Command(binary, "demo", "--lab", "--headless", "--hosts", "3", "--scenario", tc.scenario,
				"--strategy", "rolling", "--rate", "50")
			cmd.Env = append(os.Environ(), "FLIGHTDECK_LABS="+labs)
			name := ""
			lines := signalAt(t, cmd, tc.sig, tc.when, func(line string) {
				if m := regexp.MustCompile(`lab (demo-[0-9a-f]+)`).FindStringSubmatch(line); m != nil && name == "" {
					name = m[1]
				}
			}, func() {
				if name == "" {
					t.Fatal("the demo did not name its lab")
				}
				labtest.Down(t, d, name, labs) // in case the test fails
			})
			if name == "" {
				t.Fatalf("the demo did not name its lab:\n%s", strings.Join(lines, "\n"))
			}
			if n := labtest.Objects(t, d, name); n != 0 {
				t.Errorf("%d containers, volumes or networks of lab %s left after Ctrl-C", n, name)
			}
			if p := labtest.Processes(name); len(p) > 0 {
				t.Errorf("processes of lab %s left after Ctrl-C: %v", name, p)
			}
			if entries, _ := os.ReadDir(labs); len(entries) != 0 {
				t.Errorf("files of the lab left after Ctrl-C: %v", entries)
			}
		})
	}
}
