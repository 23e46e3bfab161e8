package plan

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"
)

// validator checks a decoded plan, reporting each problem at the node
// concerned (or at the nearest enclosing one for a missing key).
type validator struct {
	*decoder
	// bad holds positions that already have a decoding problem, so that a
	// value that could not be read is not reported a second time as wrong.
	bad map[[2]int]bool
}

func (d *decoder) validate(p *Plan) {
	v := &validator{decoder: d, bad: map[[2]int]bool{}}
	for _, e := range d.errs {
		v.bad[[2]int{e.Line, e.Column}] = true
	}
	v.plan(p)
}

// at returns the value node written for path, else its key, else the
// nearest enclosing node.
func (v *validator) at(p string) *yaml.Node {
	for {
		if n := v.vals[p]; n != nil {
			return n
		}
		if n := v.keys[p]; n != nil {
			return n
		}
		i := strings.LastIndex(p, pathSep)
		if i < 0 {
			return v.root
		}
		p = p[:i]
	}
}

// keyAt is like at but prefers the key node.
func (v *validator) keyAt(p string) *yaml.Node {
	if n := v.keys[p]; n != nil {
		return n
	}
	return v.at(p)
}

func (v *validator) present(p string) bool { return v.vals[p] != nil }

func (v *validator) errorf(n *yaml.Node, format string, args ...any) {
	if n != nil && v.bad[[2]int{n.Line, n.Column}] {
		return
	}
	v.decoder.errorf(n, format, args...)
}

func (v *validator) plan(p *Plan) {
	if p.App == "" && !v.present("app") {
		v.errorf(v.keyAt("app"), `missing required key "app": the application name, e.g. app: shop`)
	}
	v.source(p)
	if p.KeepReleases < 2 && v.present("keep_releases") {
		if p.KeepReleases == 1 {
			v.errorf(v.at("keep_releases"), "keep_releases: 1 would keep only the live release, leaving nothing to roll back to; use 2 or more (default %d)", DefaultKeepReleases)
		} else {
			v.errorf(v.at("keep_releases"), "keep_releases must be at least 2 so that a rollback path stays ready, got %d", p.KeepReleases)
		}
	}
	v.oneOf("", "verify_releases", p.VerifyReleases, VerifyChanged, VerifyFull)
	v.hooks(p.Hooks, "hooks")
	v.checklist(p)
	v.state(p.State)
	v.positive("", "restart_timeout", p.RestartTimeout)
	if h := p.Health; h != nil {
		if h.URL == "" {
			v.errorf(v.keyAt("health"), `health needs a url, e.g. url: "http://{{.Host}}:8080/healthz"`)
		}
		v.positive("health", "timeout", h.Timeout)
		v.positive("health", "interval", h.Interval)
	}

	switch {
	case len(p.Environments) == 0 && v.present("environments") && v.vals["environments"].Kind != yaml.MappingNode:
		// Not a mapping: already reported.
	case len(p.Environments) == 0 && v.keys["environments"] != nil:
		v.errorf(v.keyAt("environments"), "environments is empty; define at least one, e.g. production: {hosts: [...]}")
	case len(p.Environments) == 0:
		v.errorf(v.root, `missing required key "environments": at least one environment with its hosts`)
	}
	for _, name := range p.EnvOrder {
		v.environment(p, name, p.Environments[name])
	}

	seen := map[string]bool{}
	for i, name := range p.Promotion {
		at := v.at(child("promotion", i))
		switch {
		case p.Environments[name] == nil:
			v.unknownAt(at, name, "environment", "in promotion", p.EnvOrder)
		case seen[name]:
			v.errorf(at, "environment %q appears twice in promotion", name)
		}
		seen[name] = true
	}
}

func (v *validator) unknownAt(n *yaml.Node, word, kind, where string, known []string) {
	if n != nil && v.bad[[2]int{n.Line, n.Column}] {
		return
	}
	m := *n
	m.Value = word
	v.decoder.unknown(&m, kind, where, known)
}

func (v *validator) source(p *Plan) {
	s := p.Source
	switch {
	case s == nil && v.present("source"):
		// Could not be read; already reported.
	case s == nil:
		v.errorf(v.keyAt("source"), `missing required key "source": a directory (source: ./build) or a git repository (source: {git: {repo: URL, ref: main}})`)
	case s.Dir != "" && s.Git != nil:
		v.errorf(v.at("source"), "source has both dir and git; choose one")
	case s.Dir == "" && s.Git == nil:
		v.errorf(v.at("source"), "source needs a directory (dir: ./build) or a git repository (git: {repo: URL, ref: main})")
	case s.Git != nil && s.Git.Repo == "":
		v.errorf(v.at(child("source", "git")), "source.git needs repo: a git URL or a path on this machine")
	}
}

func (v *validator) hooks(h Hooks, base string) {
	for _, list := range h.all() {
		for i, hk := range list.hooks {
			if strings.TrimSpace(hk.Run) == "" {
				v.errorf(v.at(child(base, list.key, i)), "a hook needs a command to run (run: ./script.sh)")
			}
			v.positive(child(base, list.key, i), "timeout", hk.Timeout)
		}
	}
}

// positive reports a duration written as 0s where it must be longer.
func (v *validator) positive(base, key string, d Duration) {
	p := child(base, key)
	if v.present(p) && d.Duration <= 0 {
		v.errorf(v.at(p), "%s must be longer than 0s", key)
	}
}

// atLeast reports an integer written below min.
func (v *validator) atLeast(base, key string, n, min int) {
	p := child(base, key)
	if v.present(p) && n < min {
		v.errorf(v.at(p), "%s must be at least %d, got %d", key, min, n)
	}
}

// oneOf reports a word that is not one of choices.
func (v *validator) oneOf(base, key, val string, choices ...string) {
	p := child(base, key)
	if val == "" && !v.present(p) {
		return
	}
	for _, c := range choices {
		if val == c {
			return
		}
	}
	v.unknownAt(v.at(p), val, key, "", choices)
}

func badName(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r) || r == '/' || r == '\\'
	})
}

func (v *validator) environment(p *Plan, name string, e *Environment) {
	ep := child("environments", name)
	if name == "" {
		v.errorf(v.keyAt(ep), "an environment needs a name, e.g. production:")
	} else if badName(name) {
		v.errorf(v.keyAt(ep), "environment name %q must not contain spaces, slashes or control characters", name)
	}
	if e == nil {
		return
	}
	s := e.Strategy
	sp := child(ep, "strategy")
	kind := s.Kind
	if kind == "" {
		kind = Rolling
	} else if !isKind(kind) {
		v.unknownAt(v.at(child(sp, "kind")), string(kind), "strategy", "", validKinds())
	}
	v.oneOf(sp, "on_failure", s.OnFailure, "rollback", "halt")
	v.steps(sp, s.Steps)
	if e.DeployTo != "" && !path.IsAbs(e.DeployTo) {
		v.errorf(v.at(child(ep, "deploy_to")), "deploy_to must be an absolute path on the server, like /srv/%s", orDefault(p.App, "app"))
	}
	v.atLeast(ep, "parallel", e.Parallel, 1)
	for i, a := range e.RequireApproval {
		if a != "promote" {
			v.unknownAt(v.at(child(ep, "require_approval", i)), a, "approval", "in require_approval", []string{"promote"})
		}
	}

	needsRouter := kind == Canary || kind == BlueGreen || kind == AB
	// A haproxy or nginx router missing its address is reported by v.router.
	if needsRouter && !e.Router.Configured() && e.Router.KindOrDefault() == RouterFlightdeck {
		v.errorf(v.keyAt(sp), "strategy %s moves traffic through a router: add %s to environment %q", kind, routerExample(e.Router.KindOrDefault()), name)
	}
	if kind == AB {
		v.cohort(sp, s.Cohort)
	}

	v.hosts(p, name, e, kind)
	v.gate(ep, e.Gate)
	v.router(ep, e, kind)
	if c := e.SSH; c != nil {
		base := child(ep, "ssh")
		v.positive(base, "connect_timeout", c.ConnectTimeout)
		v.positive(base, "command_timeout", c.CommandTimeout)
		v.atLeast(base, "max_parallel_dials", c.MaxParallelDials, 1)
		if p := child(base, "persist"); v.present(p) && (c.Persist.Duration < 0 || c.Persist.Duration > 24*time.Hour) {
			v.errorf(v.at(p), "persist must be between 0s (off) and 24h")
		}
		if d := c.ControlDir; d != "" && !filepath.IsAbs(d) && d != "~" && !strings.HasPrefix(d, "~/") {
			v.errorf(v.at(child(base, "control_dir")), "control_dir must be an absolute path or start with ~/: %q", d)
		}
		if c.Jump != "" {
			if _, err := SplitJumpList(c.Jump); err != nil {
				v.errorf(v.at(child(base, "jump")), "%v", err)
			}
		}
	}
	if a := e.AutoRollback; a != nil {
		base := child(ep, "auto_rollback")
		if !v.present(child(base, "error_rate")) && !v.present(child(base, "p99")) {
			v.errorf(v.keyAt(base), "auto_rollback needs a trigger: error_rate (e.g. \"1%%\") and/or p99 (e.g. 500ms)")
		}
		v.positive(base, "p99", a.P99)
		v.positive(base, "for", a.For)
	}
	if pr := e.Probe; pr != nil {
		base := child(ep, "probe")
		if pr.URL == "" {
			v.errorf(v.keyAt(base), "probe needs a url to send requests to")
		} else {
			v.httpURL(child(base, "url"), pr.URL)
		}
		v.atLeast(base, "rate", pr.Rate, 1)
		v.positive(base, "timeout", pr.Timeout)
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (v *validator) steps(sp string, steps []int) {
	last := 0
	for i, st := range steps {
		at := v.at(child(sp, "steps", i))
		switch {
		case st < 1 || st > 100:
			v.errorf(at, "a canary step is a percentage of traffic from 1 to 100, got %d", st)
			continue
		case st <= last:
			v.errorf(at, "canary steps must increase, but %d comes after %d", st, last)
		}
		last = max(last, st)
	}
	if len(steps) > 0 && steps[len(steps)-1] != 100 {
		v.errorf(v.at(child(sp, "steps")), "canary steps must end at 100 so that the release takes all traffic, e.g. [1, 5, 25, 100]")
	}
}

func (v *validator) cohort(sp string, c *Cohort) {
	cp := child(sp, "cohort")
	if c == nil {
		v.errorf(v.keyAt(sp), "an ab strategy needs a cohort: {header: X-Beta, value: \"1\"}, {cookie: beta, value: yes} or {header: X-User-Id, percent: 10}")
		return
	}
	switch {
	case c.Header != "" && c.Cookie != "":
		v.errorf(v.at(cp), "a cohort matches a header or a cookie, not both")
	case c.Header == "" && c.Cookie == "":
		v.errorf(v.at(cp), "a cohort needs a header or a cookie to match (or to hash, with percent)")
	}
	switch {
	case v.present(child(cp, "percent")) && (c.Percent < 1 || c.Percent > 100):
		v.errorf(v.at(child(cp, "percent")), "percent must be from 1 to 100, got %d", c.Percent)
	case c.Percent > 0 && c.Value != "":
		v.errorf(v.at(cp), "a cohort uses either value (exact match) or percent (hash of the user key), not both")
	case c.Percent == 0 && c.Value == "" && !v.present(child(cp, "percent")):
		v.errorf(v.at(cp), "a cohort needs value (users whose header or cookie equals it) or percent (a stable share of users)")
	}
}

func (v *validator) hosts(p *Plan, env string, e *Environment, kind StrategyKind) {
	ep := child("environments", env)
	if len(e.Hosts) == 0 {
		if v.present(child(ep, "hosts")) {
			v.errorf(v.at(child(ep, "hosts")), "environment %q has no hosts; list at least one", env)
		} else {
			v.errorf(v.keyAt(ep), "environment %q has no hosts: add hosts: with at least one host, e.g. - {name: web-1, local: /srv/web-1}", env)
		}
		return
	}
	first := map[string]*yaml.Node{}
	for i, h := range e.Hosts {
		hp := child(ep, "hosts", i)
		at := v.at(hp)
		if h == nil {
			v.errorf(at, "this host entry is empty; write {name: web-1, local: /srv/web-1} or {name: web-1, ssh: deploy@web-1}")
			continue
		}
		label := "this host"
		switch np := child(hp, "name"); {
		case h.Name == "":
			v.errorf(at, "a host needs a name, e.g. name: web-1")
		case badName(h.Name):
			v.errorf(v.at(np), "host name %q must not contain spaces, slashes or control characters", h.Name)
		case first[h.Name] != nil:
			v.errorf(v.at(np), "host name %q is used twice in environment %q (first on line %d)", h.Name, env, first[h.Name].Line)
		default:
			first[h.Name] = v.at(np)
		}
		if h.Name != "" {
			label = fmt.Sprintf("host %q", h.Name)
		}
		if h.SSH != "" {
			if _, _, _, err := SplitSSHAddress(h.SSH); err != nil {
				v.errorf(v.at(child(hp, "ssh")), "%s: ssh: %v", label, err)
			}
		}
		switch {
		case h.Local != "" && h.SSH != "":
			v.errorf(at, "%s has both local and ssh; a host is either a directory on this machine or a server, choose one", label)
		case h.Local == "" && h.SSH == "":
			v.errorf(at, "%s needs local: (a directory on this machine) or ssh: (user@address)", label)
		case h.Local != "":
			if h.DeployTo != "" {
				v.errorf(v.at(child(hp, "deploy_to")), "%s is local: its directory is its deploy_to; remove deploy_to", label)
			}
		case h.DeployTo == "" && e.DeployTo == "":
			v.errorf(at, "%s is reached over ssh and needs deploy_to (on the host or on environment %q), e.g. deploy_to: /srv/%s", label, env, orDefault(p.App, "app"))
		case h.DeployTo != "" && !path.IsAbs(h.DeployTo):
			v.errorf(v.at(child(hp, "deploy_to")), "deploy_to must be an absolute path on the server, like /srv/%s", orDefault(p.App, "app"))
		}
		switch kind {
		case BlueGreen, AB:
			// The new release runs in each host's idle slot.
			v.slots(hp, label, h.Slots, kind)
		case Canary:
			if h.Backend == "" {
				v.errorf(at, "%s needs backend: the address (host:port) the router sends its traffic to, for a %s release", label, kind)
			}
		}
	}
}

func (v *validator) slots(hp, label string, slots map[string]string, kind StrategyKind) {
	sp := child(hp, "slots")
	if slots == nil {
		v.errorf(v.at(hp), "%s needs slots: {blue: ADDRESS, green: ADDRESS} for a %s release (the new release runs in the idle slot)", label, kind)
		return
	}
	for _, name := range v.order[sp] {
		if name != "blue" && name != "green" {
			v.unknownAt(v.keyAt(child(sp, name)), name, "slot", "", []string{"blue", "green"})
		}
	}
	for _, c := range []string{"blue", "green"} {
		if slots[c] == "" {
			v.errorf(v.at(sp), "%s needs an address for the %s slot (host:port)", label, c)
		}
	}
	if slots["blue"] != "" && slots["blue"] == slots["green"] {
		v.errorf(v.at(sp), "%s: the blue and green slots must be different addresses", label)
	}
}

func (v *validator) gate(ep string, g *Gate) {
	if g == nil {
		return
	}
	gp := child(ep, "gate")
	v.oneOf(gp, "source", g.Source, "router", "prometheus")
	v.oneOf(gp, "no_data", g.NoData, "hold", "fail", "pass")
	if g.Source == "prometheus" {
		switch {
		case g.Prometheus == nil:
			v.errorf(v.at(child(gp, "source")), "a prometheus gate needs prometheus: {url: http://127.0.0.1:9090}")
		case g.Prometheus.URL == "":
			v.errorf(v.keyAt(child(gp, "prometheus")), "prometheus needs a url, e.g. url: http://127.0.0.1:9090")
		}
	}
	if g.Prometheus != nil && g.Prometheus.URL != "" {
		v.httpURL(child(gp, "prometheus", "url"), g.Prometheus.URL)
	}
	v.positive(gp, "p99", g.P99)
	v.positive(gp, "interval", g.Interval)
	v.atLeast(gp, "count", g.Count, 1)
	v.atLeast(gp, "failure_limit", g.FailureLimit, 1)
	v.atLeast(gp, "min_requests", g.MinRequests, 0)
	count, limit := orInt(g.Count, DefaultGateCount), orInt(g.FailureLimit, DefaultFailureLimit)
	if count >= 1 && limit > count {
		v.errorf(v.at(child(gp, "failure_limit")), "failure_limit (%d) is larger than count (%d), so the gate could never fail", limit, count)
	}
}

func orInt(n, def int) int {
	if n == 0 {
		return def
	}
	return n
}

// routerKeys are the keys of each router kind (kind, listen and drain
// belong to all).
var routerKeys = map[string][]string{
	RouterFlightdeck: {"admin", "token_file"},
	RouterHAProxy:    {"socket", "backend", "cohort_backend", "cohort_map", "log_ring", "state_file"},
	RouterNginx:      {"upstream_file", "upstream", "map_file", "test_command", "reload_command", "pid_file", "access_log", "health_path"},
}

// routerExample is what to add for a router of kind k.
func routerExample(k string) string {
	switch k {
	case RouterHAProxy:
		return "router: {kind: haproxy, socket: /run/haproxy/admin.sock, backend: app}"
	case RouterNginx:
		return "router: {kind: nginx, upstream_file: /etc/nginx/flightdeck/app.conf, upstream: app}"
	}
	return "router: {admin: http://127.0.0.1:9901, token_file: ...}"
}

func (v *validator) router(ep string, e *Environment, strategy StrategyKind) {
	r := e.Router
	if r == nil {
		return
	}
	rp := child(ep, "router")
	v.oneOf(rp, "kind", r.Kind, RouterFlightdeck, RouterHAProxy, RouterNginx)
	kind := r.KindOrDefault()
	if _, known := routerKeys[kind]; !known {
		return // reported above
	}
	for k, keys := range routerKeys {
		if k == kind {
			continue
		}
		for _, key := range keys {
			if v.present(child(rp, key)) {
				v.errorf(v.keyAt(child(rp, key)), "%s is a key of a router of kind %s; this router is kind %s (%s)", key, k, kind, strings.Join(routerKeys[kind], ", "))
			}
		}
	}
	v.positive(rp, "drain", r.Drain)
	// Latency and error rates come from the traffic layer itself unless
	// the gate reads Prometheus.
	measured := (e.Gate != nil && e.Gate.Source != "prometheus") || (e.Gate == nil && (strategy == Canary || strategy == AB))
	if e.AutoRollback != nil && (e.Gate == nil || e.Gate.Source != "prometheus") {
		measured = true
	}
	switch kind {
	case RouterFlightdeck:
		if r.Admin != "" {
			v.httpURL(child(rp, "admin"), r.Admin)
		}
	case RouterHAProxy:
		if r.Socket == "" {
			v.errorf(v.keyAt(rp), "an haproxy router needs socket: its Runtime API, a unix socket path (/run/haproxy/admin.sock) or host:port (stats socket ... level admin)")
		} else if strings.Contains(r.Socket, ":") && !strings.HasPrefix(r.Socket, "/") {
			if _, port, err := net.SplitHostPort(r.Socket); err != nil || port == "" {
				v.errorf(v.at(child(rp, "socket")), "socket %q: expected a unix socket path or host:port", r.Socket)
			}
		}
		if r.Backend == "" {
			v.errorf(v.keyAt(rp), "an haproxy router needs backend: the HAProxy backend whose servers are the hosts' backends and slots")
		}
		if strategy == AB {
			if r.CohortBackend == "" {
				v.errorf(v.keyAt(rp), "an ab strategy through haproxy needs cohort_backend: a backend with the same servers, where the cohort map sends the cohort")
			}
			if r.CohortMap == "" {
				v.errorf(v.keyAt(rp), "an ab strategy through haproxy needs cohort_map: the map file (as HAProxy loads it) from the cohort's header or cookie value to a backend")
			}
		}
		if r.CohortBackend != "" && r.CohortBackend == r.Backend {
			v.errorf(v.at(child(rp, "cohort_backend")), "cohort_backend must differ from backend %q", r.Backend)
		}
		if measured && r.LogRing == "" {
			v.errorf(v.keyAt(rp), "the gate and auto_rollback measure through haproxy and need log_ring: the ring its request log goes to (HAProxy keeps no latency percentiles); or set gate.source: prometheus")
		}
	case RouterNginx:
		if r.UpstreamFile == "" {
			v.errorf(v.keyAt(rp), "an nginx router needs upstream_file: the file flightdeck writes and your nginx.conf includes")
		}
		switch {
		case r.Upstream == "":
			v.errorf(v.keyAt(rp), "an nginx router needs upstream: the name of the upstream block (proxy_pass http://NAME)")
		case !identifier(r.Upstream):
			v.errorf(v.at(child(rp, "upstream")), "upstream %q: use letters, digits and _ only (it also names an nginx variable)", r.Upstream)
		}
		if strategy == AB && r.MapFile == "" {
			v.errorf(v.keyAt(rp), "an ab strategy through nginx needs map_file: the map include flightdeck writes for the cohort")
		}
		if r.MapFile != "" && r.MapFile == r.UpstreamFile {
			v.errorf(v.at(child(rp, "map_file")), "map_file must differ from upstream_file")
		}
		if measured && r.AccessLog == "" {
			v.errorf(v.keyAt(rp), "the gate and auto_rollback measure through nginx and need access_log: the log written with flightdeck's log_format (see REFERENCE.md); or set gate.source: prometheus")
		}
		if r.HealthPath != "" && !strings.HasPrefix(r.HealthPath, "/") {
			v.errorf(v.at(child(rp, "health_path")), "health_path must start with /, got %q", r.HealthPath)
		}
	}
}

func identifier(s string) bool {
	for _, c := range s {
		if !(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
			return false
		}
	}
	return s != ""
}

// httpURL reports a value that is not an http(s) URL.
func (v *validator) httpURL(p, s string) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.errorf(v.at(p), "expected an http:// or https:// URL, got %q", s)
	}
}

func (v *validator) state(st *State) {
	if st == nil {
		return
	}
	if st.Etcd == nil {
		if v.keys["state"] != nil {
			v.errorf(v.keyAt("state"), "state names no backend; write state: {etcd: {endpoints: [host:2379, ...]}}, or leave it out to keep the state in .flightdeck/")
		}
		return
	}
	e := st.Etcd
	ep := child("state", "etcd")
	if len(e.Endpoints) == 0 {
		v.errorf(v.keyAt(child(ep, "endpoints")), "state.etcd needs endpoints, e.g. endpoints: [10.0.0.1:2379, 10.0.0.2:2379, 10.0.0.3:2379]")
	}
	for i, s := range e.Endpoints {
		if err := checkEndpoint(s); err != nil {
			v.errorf(v.at(child(ep, "endpoints", i)), "%v", err)
		}
	}
	if e.Prefix != "" && (!strings.HasPrefix(e.Prefix, "/") || strings.HasSuffix(e.Prefix, "/")) {
		v.errorf(v.at(child(ep, "prefix")), "prefix must start with / and not end with /, e.g. /flightdeck")
	}
	if e.Password != "" || v.present(child(ep, "password")) {
		v.errorf(v.keyAt(child(ep, "password")), "a password in the plan ends up in version control: write it to a file only you can read and name it with password_file, or set FLIGHTDECK_ETCD_PASSWORD")
	}
	if e.PasswordFile != "" && e.Username == "" {
		v.errorf(v.at(child(ep, "password_file")), "password_file needs a username")
	}
	if d := e.Lease.Duration; v.present(child(ep, "lease")) && (d < 2*time.Second || d%time.Second != 0) {
		v.errorf(v.at(child(ep, "lease")), "lease must be whole seconds, at least 2s (etcd lengthens shorter leases), got %s", d)
	}
	if t := e.TLS; t != nil && (t.Cert == "") != (t.Key == "") {
		v.errorf(v.at(child(ep, "tls")), "a client certificate needs both cert and key")
	}
}

// checkEndpoint accepts host:port or an http(s) URL with a host and port.
func checkEndpoint(s string) error {
	hostport := s
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("expected host:port or http(s)://host:port, got %q", s)
		}
		hostport = u.Host
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || host == "" || port == "" {
		return fmt.Errorf("expected host:port (e.g. 10.0.0.1:2379), got %q", s)
	}
	return nil
}
