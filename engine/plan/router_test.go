package plan

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestRouterKinds(t *testing.T) {
	canary := "    strategy: {kind: canary}\n    hosts: [{name: a, local: /a, backend: \"127.0.0.1:8081\"}]\n"
	ab := "    strategy: {kind: ab, cohort: {header: X-Beta, value: \"1\"}}\n    hosts: [{name: a, local: /a, slots: {blue: \"127.0.0.1:8081\", green: \"127.0.0.1:8082\"}}]\n"
	env := func(router, rest string) string {
		return head + "environments:\n  p:\n    router: " + router + "\n" + rest
	}
	tests := []struct {
		name, src string
		want      []string
	}{
		{"haproxy canary", env(`{kind: haproxy, socket: /run/haproxy/admin.sock, backend: app, log_ring: fdlog}`, canary), nil},
		{"haproxy over tcp", env(`{kind: haproxy, socket: "127.0.0.1:9999", backend: app, log_ring: fdlog}`, canary), nil},
		{"haproxy with a prometheus gate needs no ring", env(`{kind: haproxy, socket: /s, backend: app}`,
			canary+"    gate: {source: prometheus, prometheus: {url: \"http://127.0.0.1:9090\"}}\n"), nil},
		{"nginx canary", env(`{kind: nginx, upstream_file: ./up.conf, upstream: shop, access_log: /var/log/nginx/fd.log}`, canary), nil},
		{"unknown kind", env(`{kind: haproxi, socket: /s, backend: app}`, canary),
			[]string{`5:20: unknown kind "haproxi" (did you mean "haproxy"?)`}},
		{"typo in an haproxy key", env(`{kind: haproxy, sockett: /s, backend: app, log_ring: r}`, canary),
			[]string{`5:5: an haproxy router needs socket`, `5:29: unknown key "sockett" in router (did you mean "socket"?)`}},
		{"key of another kind", env(`{kind: nginx, upstream_file: /u, upstream: shop, access_log: /l, socket: /s}`, canary),
			[]string{`5:78: socket is a key of a router of kind haproxy; this router is kind nginx`}},
		{"admin on an haproxy router", env(`{kind: haproxy, admin: "http://127.0.0.1:1", socket: /s, backend: app, log_ring: r}`, canary),
			[]string{`5:29: admin is a key of a router of kind flightdeck; this router is kind haproxy`}},
		{"haproxy needs backend and a ring for the gate", env(`{kind: haproxy, socket: /s}`, canary),
			[]string{`5:5: an haproxy router needs backend`, `5:5: the gate and auto_rollback measure through haproxy and need log_ring`}},
		{"haproxy bad tcp address", env(`{kind: haproxy, socket: "127.0.0.1:", backend: app, log_ring: r}`, canary),
			[]string{`5:37: socket "127.0.0.1:": expected a unix socket path or host:port`}},
		{"haproxy ab needs the cohort backend and map", env(`{kind: haproxy, socket: /s, backend: app, log_ring: r}`, ab),
			[]string{`5:5: an ab strategy through haproxy needs cohort_backend`, `5:5: an ab strategy through haproxy needs cohort_map`}},
		{"nginx needs its file, upstream and log", env(`{kind: nginx}`, canary),
			[]string{`5:5: an nginx router needs upstream_file`, `5:5: an nginx router needs upstream`, `5:5: the gate and auto_rollback measure through nginx and need access_log`}},
		{"nginx upstream name", env(`{kind: nginx, upstream_file: /u, upstream: "my shop", access_log: /l}`, canary),
			[]string{`5:56: upstream "my shop": use letters, digits and _ only`}},
		{"nginx ab needs a map file", env(`{kind: nginx, upstream_file: /u, upstream: shop, access_log: /l}`, ab),
			[]string{`5:5: an ab strategy through nginx needs map_file`}},
		{"rolling through nginx needs no log", env(`{kind: nginx, upstream_file: /u, upstream: shop}`,
			"    hosts: [{name: a, local: /a, backend: \"127.0.0.1:8081\"}]\n"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkProblems(t, tt.src, tt.want) })
	}
}

func TestRouterDefaultsAndPaths(t *testing.T) {
	p := mustParse(t, head+`environments:
  fd:
    router: {admin: "http://127.0.0.1:9901"}
    hosts: [{name: a, local: /a}]
  ha:
    router: {kind: haproxy, socket: run/admin.sock, backend: app, state_file: st.json}
    hosts: [{name: a, local: /a}]
  ng:
    router: {kind: nginx, upstream_file: nginx/up.conf, upstream: shop, access_log: log/fd.log}
    hosts: [{name: a, local: /a}]
`)
	fd, ha, ng := p.Environments["fd"].Router, p.Environments["ha"].Router, p.Environments["ng"].Router
	if fd.Kind != RouterFlightdeck || !fd.Configured() || fd.Describe() != "router at http://127.0.0.1:9901" {
		t.Errorf("flightdeck router: kind %q, described %q", fd.Kind, fd.Describe())
	}
	if ha.Socket != filepath.Join(p.Dir, "run/admin.sock") || ha.StateFile != filepath.Join(p.Dir, "st.json") {
		t.Errorf("haproxy paths not resolved against the plan's directory: %q %q", ha.Socket, ha.StateFile)
	}
	if !strings.HasPrefix(ha.Describe(), "HAProxy backend app at /") {
		t.Errorf("haproxy described %q", ha.Describe())
	}
	if ng.UpstreamFile != filepath.Join(p.Dir, "nginx/up.conf") || ng.AccessLog != filepath.Join(p.Dir, "log/fd.log") {
		t.Errorf("nginx paths not resolved: %q %q", ng.UpstreamFile, ng.AccessLog)
	}
	if ng.TestCommand != "nginx -t" || ng.ReloadCommand != "nginx -s reload" || ng.PIDFile != "/run/nginx.pid" || ng.HealthPath != "/healthz" {
		t.Errorf("nginx defaults: %+v", ng)
	}
	var none *RouterConfig
	if none.Configured() || none.KindOrDefault() != RouterFlightdeck || none.Describe() != "none" {
		t.Errorf("nil router: configured %v kind %q", none.Configured(), none.KindOrDefault())
	}
}
