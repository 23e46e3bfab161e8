package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"flightdeck/engine"
	"flightdeck/internal/freeport"
	"flightdeck/targets/haproxy"
	"flightdeck/targets/haproxy/haproxytest"
	"flightdeck/targets/nginx/nginxtest"
)

// A server the plan names but HAProxy's backend lacks is bad input: exit
// 2 naming the host, its address and the backend, and nothing changes
// (no host switched, HAProxy's weights as configured).
func TestHAProxyServerMissingIsBadInput(t *testing.T) {
	addrs, err := freeport.Addrs(2) // distinct: the known server is not HAProxy's own address
	if err != nil {
		t.Fatal(err)
	}
	known := addrs[0]
	proc := haproxytest.Start(t, haproxy.Setup{Listen: addrs[1],
		Servers: []haproxy.SetupServer{{Name: "web1", Addr: known}}})
	router := "    router: {kind: haproxy, socket: " + proc.Setup.Socket() + ", backend: app, log_ring: flightdeck}\n"
	p := newProject(t, 2, 3, "      kind: canary\n", "")
	plan, _ := os.ReadFile(p.plan)
	src := strings.Replace(string(plan), "        local: "+p.host(1)+"\n", "        local: "+p.host(1)+"\n        backend: \""+known+"\"\n", 1)
	src = strings.Replace(src, "        local: "+p.host(2)+"\n", "        local: "+p.host(2)+"\n        backend: \"127.0.0.1:1\"\n", 1)
	src = strings.Replace(src, "    hosts:\n", router+"    hosts:\n", 1)
	writeFile(t, p.plan, src)

	out, code := p.run("deploy", "--headless", "--release", "r1")
	if code != exitBadInput {
		t.Fatalf("exit %d, want %d:\n%s", code, exitBadInput, out)
	}
	for _, want := range []string{"host web-2 names 127.0.0.1:1, which is not a server of HAProxy backend app", "web1 " + known, "nothing was changed"} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not say %q:\n%s", want, out)
		}
	}
	for i := 1; i <= 2; i++ {
		if _, err := os.Stat(filepath.Join(p.host(i), "current")); err == nil {
			t.Errorf("web-%d was switched", i)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := haproxy.NewRuntime(proc.Setup.Socket()).Do(ctx, "show servers state app")
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(strings.Split(a[0], "\n")[2]); f[6] != "0" || f[7] != "1" {
		t.Errorf("web1 has admin state %s weight %s, want the configuration's (0, 1)", f[6], f[7])
	}
}

// A Runtime API socket that is missing stops the command before any
// switch, with a message saying what to check.
func TestHAProxySocketMissingStopsBeforeAnySwitch(t *testing.T) {
	p := newProject(t, 1, 3, "      kind: canary\n", "")
	plan, _ := os.ReadFile(p.plan)
	src := strings.Replace(string(plan), "        local: "+p.host(1)+"\n", "        local: "+p.host(1)+"\n        backend: \"127.0.0.1:8081\"\n", 1)
	src = strings.Replace(src, "    hosts:\n", "    router: {kind: haproxy, socket: ./no-such.sock, backend: app, log_ring: flightdeck}\n    hosts:\n", 1)
	writeFile(t, p.plan, src)
	out, code := p.run("deploy", "--headless", "--release", "r1")
	if code != exitFailed {
		t.Fatalf("exit %d, want %d:\n%s", code, exitFailed, out)
	}
	for _, want := range []string{"Runtime API is unreachable at " + filepath.Join(p.dir, "no-such.sock"), "nothing was switched"} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not say %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(p.host(1), "current")); err == nil {
		t.Error("web-1 was switched")
	}
}

// TestDemoThroughHAProxyAndNginx is acceptance 5: `flightdeck demo
// --router haproxy` and `--router nginx` run a canary through a real
// HAProxy or nginx: the run says which traffic layer it used, the release
// goes out and no probe request fails.
func TestDemoThroughHAProxyAndNginx(t *testing.T) {
	if testing.Short() {
		t.Skip("demo runs skipped in -short mode")
	}
	lbs := []struct {
		kind    string
		require func(testing.TB)
		names   string
	}{
		{"haproxy", haproxytest.Require, "HAProxy backend app at "},
		{"nginx", nginxtest.Require, "nginx upstream app in "},
	}
	// Both demos run at the same time (each waits mostly on its gates).
	waits := make([]func(*testing.T) demoRun, len(lbs))
	for i, lb := range lbs {
		lb.require(t)
		waits[i] = startDemo(t, "--router", lb.kind, "--strategy", "canary", "--hosts", "4", "--rate", "100")
	}
	for i, lb := range lbs {
		t.Run(lb.kind, func(t *testing.T) {
			r := waits[i](t)
			if r.report.Outcome != engine.OutcomeSucceeded || r.report.Probe.Failed != 0 || r.report.Probe.Requests < 20 {
				t.Fatalf("outcome %s, %d of %d probe requests failed; want succeeded, 0 of many:\n%s",
					r.report.Outcome, r.report.Probe.Failed, r.report.Probe.Requests, r.out)
			}
			info := r.events[0].Start
			if info == nil || info.Traffic != lb.kind || !strings.HasPrefix(info.TrafficAt, lb.names) {
				t.Errorf("run info %+v; want the traffic layer %s", info, lb.kind)
			}
			if !strings.Contains(r.out, "through "+lb.kind) || !strings.Contains(r.out, "demo fleet: 4 hosts") ||
				!strings.Contains(r.out, "; traffic through "+lb.names) {
				t.Errorf("the briefing and the run's first line do not name the traffic layer:\n%s", r.out)
			}
			if r.code != 0 && !strings.HasPrefix(r.report.Verdict, "NOT HITLESS: probe p99") {
				t.Errorf("exit %d, verdict %q", r.code, r.report.Verdict)
			}
		})
	}
}
