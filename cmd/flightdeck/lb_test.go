package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"flightdeck/targets/haproxy"
	"flightdeck/targets/haproxy/haproxytest"
)

func freeTCPAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// A server the plan names but HAProxy's backend lacks is bad input: exit
// 2 naming the host, its address and the backend, and nothing changes
// (no host switched, HAProxy's weights as configured).
func TestHAProxyServerMissingIsBadInput(t *testing.T) {
	known := freeTCPAddr(t)
	proc := haproxytest.Start(t, haproxy.Setup{Listen: freeTCPAddr(t),
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
