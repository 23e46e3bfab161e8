package haproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"flightdeck/engine"
	"flightdeck/targets/pools"
	"flightdeck/targets/reqlog"
	"flightdeck/targets/router"
)

// MaxWeight is HAProxy's largest server weight.
const MaxWeight = 256

// Config configures an adapter.
type Config struct {
	// Socket is the Runtime API: a unix socket path or host:port.
	Socket string
	// Backend holds a server for every address the plan names.
	Backend string
	// CohortBackend (A/B) holds the same servers; CohortMap is the map file
	// (as HAProxy loaded it) from cohort key to backend name.
	CohortBackend string
	CohortMap     string
	// LogRing is the ring HAProxy sends its request log to, with the
	// log-format "%b/%s %ST %Tr" (latency measurements).
	LogRing string
	// StateFile keeps pools, route, cohorts and drains between runs.
	StateFile string
	// PollInterval paces drain, health and reload checks (default 20 ms).
	PollInterval time.Duration
}

// Router drives one HAProxy backend. It implements engine.Router and
// engine.RouterWatcher. Create it with New; Close stops its log stream.
type Router struct {
	cfg Config
	rt  *Runtime

	mu      sync.Mutex // serialises changes; guards st, applied, names, notices
	st      *pools.State
	applied Identity
	// names maps an address to the server's name in each backend.
	names   map[string]map[string]string
	notices []string
	// unusable are the routed releases the last apply found with no
	// server up: their share went to the other side.
	unusable []string
	// cohortHeld: the last apply left the cohort map without the cohort's
	// entries because no server of the cohort's release was up in the
	// cohort backend yet (the cohort stays on the main backend meanwhile).
	cohortHeld bool

	tally   *reqlog.Tally
	ringMu  sync.Mutex
	ringOn  bool
	ringCtx context.Context
	stop    context.CancelFunc
	ringWG  sync.WaitGroup
}

var (
	_ engine.Router        = (*Router)(nil)
	_ engine.RouterWatcher = (*Router)(nil)
)

// saved is the state file: the routing state and the HAProxy process it
// was last applied to.
type saved struct {
	pools.State
	AppliedTo Identity `json:"applied_to"`
}

// New loads the state file. It does not contact HAProxy: Check does.
func New(cfg Config) (*Router, error) {
	if cfg.Socket == "" || cfg.Backend == "" {
		return nil, errors.New("haproxy: socket and backend are required")
	}
	if cfg.StateFile == "" {
		return nil, errors.New("haproxy: a state file is required")
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 20 * time.Millisecond
	}
	s := saved{State: pools.State{Pools: map[string][]string{}}}
	data, err := os.ReadFile(cfg.StateFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("haproxy: reading %s: %w", cfg.StateFile, err)
	default:
		if err := json.Unmarshal(data, &s); err != nil {
			return nil, fmt.Errorf("haproxy: state file %s: %w", cfg.StateFile, err)
		}
		if s.Pools == nil {
			s.Pools = map[string][]string{}
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Router{cfg: cfg, rt: NewRuntime(cfg.Socket), st: &s.State, applied: s.AppliedTo,
		tally: reqlog.New(), ringCtx: ctx, stop: stop}, nil
}

// Runtime returns the adapter's Runtime API client.
func (r *Router) Runtime() *Runtime { return r.rt }

// Close stops the log stream.
func (r *Router) Close() error {
	r.stop()
	r.ringWG.Wait()
	return nil
}

func (r *Router) backends() []string {
	if r.cfg.CohortBackend != "" {
		return []string{r.cfg.Backend, r.cfg.CohortBackend}
	}
	return []string{r.cfg.Backend}
}

// ConfigError lists what the plan names that HAProxy's configuration
// lacks. Nothing was changed.
type ConfigError struct{ Problems []string }

func (e *ConfigError) Error() string {
	return "haproxy configuration does not match the plan:\n  " + strings.Join(e.Problems, "\n  ")
}

// Check verifies, before anything changes, that HAProxy has what the plan
// names: addrs maps each backend address to who names it ("host web-1",
// "host web-1 slot blue"). Mismatches come back as a *ConfigError; a
// socket that is missing or refusing as an error wrapping ErrUnreachable.
func (r *Router) Check(ctx context.Context, addrs map[string]string) error {
	cmds := []string{"show info"}
	for _, b := range r.backends() {
		cmds = append(cmds, "show servers state "+Quote(b), "show stat "+Quote(b)+" 2 -1")
	}
	if r.cfg.CohortMap != "" {
		cmds = append(cmds, "show map")
	}
	answers, err := r.rt.Do(ctx, cmds...)
	if err != nil {
		return err
	}
	var problems []string
	for i, b := range r.backends() {
		ss, err := parseServersState(answers[1+2*i])
		if err != nil {
			problems = append(problems, fmt.Sprintf("backend %s: %s", b, strings.TrimSpace(answers[1+2*i])))
			continue
		}
		_, bs, err := parseStat(answers[2+2*i])
		if err == nil && len(bs) == 1 && bs[0].Algo == "static-rr" {
			problems = append(problems, fmt.Sprintf("backend %s balances with static-rr, which ignores weights set at run time: use roundrobin, leastconn or random", b))
		}
		byAddr := map[string]ServerState{}
		var have []string
		for _, s := range ss {
			for _, a := range s.Addrs() {
				byAddr[a] = s
			}
			have = append(have, s.Name+" "+s.Addrs()[0])
		}
		for _, a := range slices.Sorted(maps.Keys(addrs)) {
			s, ok := byAddr[a]
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("%s names %s, which is not a server of HAProxy backend %s (it has: %s)", addrs[a], a, b, orNone(have)))
			case !s.Checked():
				problems = append(problems, fmt.Sprintf("server %s/%s (%s, %s) has no health check: add \"check\" so that it joins rotation only once healthy", b, s.Name, a, addrs[a]))
			}
		}
	}
	if r.cfg.CohortMap != "" && !strings.Contains(answers[len(answers)-1], "("+r.cfg.CohortMap+")") {
		problems = append(problems, fmt.Sprintf("cohort_map %s is not a map HAProxy loaded (show map lists: %s)", r.cfg.CohortMap, strings.TrimSpace(answers[len(answers)-1])))
	}
	if r.cfg.LogRing != "" {
		a, err := r.rt.Do(ctx, "show events "+Quote(r.cfg.LogRing)+" -n")
		if err != nil {
			return err
		}
		if strings.TrimSpace(a[0]) != "" {
			problems = append(problems, fmt.Sprintf("log_ring %s: %s (declare it with a ring section and log ring@%s in the frontend)", r.cfg.LogRing, strings.TrimSpace(a[0]), r.cfg.LogRing))
		}
	}
	if len(problems) > 0 {
		return &ConfigError{Problems: problems}
	}
	return nil
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "no servers"
	}
	return strings.Join(s, ", ")
}

// server is one server of one backend as HAProxy reports it now.
type server struct {
	backend string
	ServerState
}

// snap is what HAProxy reports before a change: the process, the
// servers of every backend (by address), the addresses failing their
// health check in the main backend, those in rotation and passing it in
// the cohort backend, and the cohort map's entries.
type snap struct {
	id       Identity
	servers  map[string][]server
	down     map[string]bool
	cohortUp map[string]bool
	cohorts  string // "show map" of the cohort map ("" without one)
}

// snapshot reads, in one connection, what a change is decided on.
func (r *Router) snapshot(ctx context.Context) (snap, error) {
	cmds := []string{"show info", "show stat " + Quote(r.cfg.Backend) + " 4 -1"}
	if r.cfg.CohortBackend != "" {
		cmds = append(cmds, "show stat "+Quote(r.cfg.CohortBackend)+" 4 -1")
	}
	first := len(cmds) // the first "show servers state"
	for _, b := range r.backends() {
		cmds = append(cmds, "show servers state "+Quote(b))
	}
	if r.cfg.CohortMap != "" {
		cmds = append(cmds, "show map "+Quote(r.cfg.CohortMap))
	}
	answers, err := r.rt.Do(ctx, cmds...)
	if err != nil {
		return snap{}, err
	}
	sn := snap{servers: map[string][]server{}, down: map[string]bool{}, cohortUp: map[string]bool{}}
	if sn.id, err = parseInfo(answers[0]); err != nil {
		return sn, err
	}
	stats, _, err := parseStat(answers[1])
	if err != nil {
		return sn, fmt.Errorf("backend %s: %w", r.cfg.Backend, err)
	}
	upByName := map[string]bool{}
	for _, st := range stats {
		upByName[st.Name] = st.Up()
	}
	inCohort := map[string]bool{}
	if r.cfg.CohortBackend != "" {
		cstats, _, err := parseStat(answers[2])
		if err != nil {
			return sn, fmt.Errorf("backend %s: %w", r.cfg.CohortBackend, err)
		}
		for _, st := range cstats {
			inCohort[st.Name] = st.Up() && st.Status != "MAINT" && st.Status != "DRAIN"
		}
	}
	for i, b := range r.backends() {
		ss, err := parseServersState(answers[first+i])
		if err != nil {
			return sn, fmt.Errorf("backend %s: %w", b, err)
		}
		for _, s := range ss {
			for _, a := range s.Addrs() {
				sn.servers[a] = append(sn.servers[a], server{backend: b, ServerState: s})
				if b == r.cfg.Backend && !upByName[s.Name] {
					sn.down[a] = true
				}
				if b == r.cfg.CohortBackend && inCohort[s.Name] {
					sn.cohortUp[a] = true
				}
			}
		}
	}
	if r.cfg.CohortMap != "" {
		sn.cohorts = answers[len(answers)-1]
	}
	return sn, nil
}

// namesOf maps each address to its server's name in each backend.
func namesOf(byAddr map[string][]server) map[string]map[string]string {
	names := map[string]map[string]string{}
	for a, ss := range byAddr {
		names[a] = map[string]string{}
		for _, s := range ss {
			names[a][s.backend] = s.Name
		}
	}
	return names
}

// apply makes HAProxy match the routing state. recheck names addresses
// that must pass a fresh health check before they take traffic (back
// from a drain). r.mu must be held.
func (r *Router) apply(ctx context.Context, recheck ...string) error {
	if err := r.save(); err != nil {
		return err
	}
	sn, err := r.snapshot(ctx)
	if err != nil {
		return err
	}
	id, cur, down := sn.id, sn.servers, sn.down
	r.names = namesOf(cur)
	// A server forced down for a fresh check is down once the batch ran.
	for _, a := range recheck {
		down[a] = true
	}
	reloaded := r.applied != (Identity{}) && id != r.applied
	for _, a := range r.st.Addrs() {
		if len(cur[a]) == 0 {
			return fmt.Errorf("%s is in %s's pool but is not a server of HAProxy backend %s", a, r.st.ReleaseOf(a), r.cfg.Backend)
		}
	}
	var enable, raise, lower, disable []string
	for _, b := range r.backends() {
		targets := r.st.Targets(nil, b == r.cfg.CohortBackend, down)
		weights := pools.Scale(targets, MaxWeight)
		for _, a := range slices.Sorted(maps.Keys(cur)) {
			for _, s := range cur[a] {
				if s.backend != b {
					continue
				}
				t, known := targets[a]
				if !known {
					t = pools.Target{Placement: pools.Out}
				}
				e, rs, l, d := transition(b, s.ServerState, t.Placement, weights[a], slices.Contains(recheck, a))
				enable, raise, lower, disable = append(enable, e...), append(raise, rs...), append(lower, l...), append(disable, d...)
			}
		}
	}
	// A map entry sends its cohort to the cohort backend, which answers
	// 503 while none of the cohort's servers there passed a health check
	// (they leave maintenance only in this batch): until one has, the
	// map holds no entry and the cohort stays on the main backend.
	r.cohortHeld = r.holdsCohort(sn)
	mapCmds, err := r.mapCommands(sn.cohorts, r.cohortHeld)
	if err != nil {
		return err
	}
	cmds := slices.Concat(enable, raise, mapCmds, lower, disable)
	if len(cmds) > 0 {
		if err := r.rt.Set(ctx, cmds...); err != nil {
			return err
		}
	}
	unusable := r.st.Unusable(down)
	if !slices.Equal(unusable, r.unusable) {
		switch {
		case len(unusable) > 0:
			r.notices = append(r.notices, fmt.Sprintf("HAProxy: no server of %s is in rotation and passing its health check: the other side of the route takes its traffic", strings.Join(unusable, ", ")))
		case len(r.unusable) > 0:
			r.notices = append(r.notices, fmt.Sprintf("HAProxy: %s has servers passing their health checks again: %s", strings.Join(r.unusable, ", "), r.describe()))
		}
		r.unusable = unusable
	}
	if reloaded {
		r.notices = append(r.notices, fmt.Sprintf("HAProxy at %s restarted or reloaded (%s → %s) and forgot its runtime changes: re-applied %s",
			r.cfg.Socket, r.applied, id, r.describe()))
	}
	if id != r.applied {
		r.applied = id
		return r.save()
	}
	return nil
}

// holdsCohort reports whether the cohort rules in force have no server of
// their release in rotation and passing its check in the cohort backend.
func (r *Router) holdsCohort(sn snap) bool {
	rel := r.st.CohortRelease()
	if rel == "" || r.cfg.CohortBackend == "" {
		return false
	}
	return !slices.ContainsFunc(r.st.Pools[rel], func(a string) bool { return sn.cohortUp[a] })
}

// describe says what the routing state is, for notices.
func (r *Router) describe() string {
	rt := r.st.Route
	var b strings.Builder
	fmt.Fprintf(&b, "route %s", orDash(rt.Stable))
	if rt.Candidate != "" {
		fmt.Fprintf(&b, " + %s at %g%%", rt.Candidate, rt.Weight)
	}
	for _, rel := range slices.Sorted(maps.Keys(r.st.Pools)) {
		fmt.Fprintf(&b, "; %s: %d servers", rel, len(r.st.Pools[rel]))
	}
	if len(r.st.Drained) > 0 {
		fmt.Fprintf(&b, "; drained %s", strings.Join(r.st.Drained, ", "))
	}
	if rel := r.st.CohortRelease(); rel != "" {
		fmt.Fprintf(&b, "; cohort → %s", rel)
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// transition returns the commands that take server s of backend b to
// placement p with weight w, split by phase: enabling, raising weights,
// lowering weights, disabling.
func transition(b string, s ServerState, p pools.Placement, w int, recheck bool) (enable, raise, lower, disable []string) {
	name := Quote(b) + "/" + Quote(s.Name)
	set := func(what string) string { return "set server " + name + " " + what }
	weight := s.UWeight
	setWeight := func(to int) {
		switch {
		case to > weight:
			raise = append(raise, set("weight "+strconv.Itoa(to)))
		case to < weight:
			lower = append(lower, set("weight "+strconv.Itoa(to)))
		}
	}
	switch p {
	case pools.Serving, pools.Warm:
		switch {
		case s.Maint():
			// Leaving maintenance counts as up at once: hold the weight at
			// 0 until a fresh check has passed.
			if weight != 0 {
				enable = append(enable, set("weight 0"))
				weight = 0
			}
			enable = append(enable, set("state ready"))
			if s.Checked() {
				enable = append(enable, set("health down"))
			}
		case s.Drain():
			if s.Checked() && recheck {
				enable = append(enable, set("health down"))
			}
			enable = append(enable, set("state ready"))
		}
		setWeight(w)
	case pools.Drained:
		setWeight(0)
		if !s.Drain() {
			disable = append(disable, set("state drain"))
		}
	case pools.Out:
		if !s.Maint() {
			disable = append(disable, set("state maint"))
		}
	}
	return enable, raise, lower, disable
}

// mapCommands returns the map changes that make the cohort map hold the
// cohort rules' entries (add and set before del).
func (r *Router) mapCommands(answer string, held bool) ([]string, error) {
	if r.cfg.CohortMap == "" {
		if len(r.st.Cohorts) > 0 {
			return nil, errors.New("cohort rules need cohort_backend and cohort_map in the plan's router")
		}
		return nil, nil
	}
	want := map[string]string{}
	for _, c := range r.st.Cohorts {
		if held {
			break
		}
		if c.Value != "" {
			want[c.Value] = r.cfg.CohortBackend
			continue
		}
		for i := range int(c.Percent) {
			want[strconv.Itoa(i)] = r.cfg.CohortBackend
		}
	}
	have := map[string]string{}
	for _, l := range strings.Split(answer, "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && strings.HasPrefix(f[0], "0x") {
			have[f[1]] = f[2]
		} else if strings.TrimSpace(l) != "" {
			return nil, fmt.Errorf("cohort map %s: %s", r.cfg.CohortMap, strings.TrimSpace(answer))
		}
	}
	m := Quote(r.cfg.CohortMap)
	var add, del []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		switch v, ok := have[k]; {
		case !ok:
			add = append(add, fmt.Sprintf("add map %s %s %s", m, Quote(k), Quote(want[k])))
		case v != want[k]:
			add = append(add, fmt.Sprintf("set map %s %s %s", m, Quote(k), Quote(want[k])))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(have)) {
		if _, ok := want[k]; !ok {
			del = append(del, fmt.Sprintf("del map %s %s", m, Quote(k)))
		}
	}
	return append(add, del...), nil
}

func (r *Router) save() error {
	data, err := json.MarshalIndent(saved{State: *r.st, AppliedTo: r.applied}, "", "  ")
	if err != nil {
		return err
	}
	if err := pools.WriteFile(r.cfg.StateFile, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("haproxy: saving routing state: %w", err)
	}
	return nil
}

// change applies fn to a copy of the routing state, then makes HAProxy
// match it; when that fails, the previous state is kept (and re-applied,
// so that a half-sent batch is undone).
func (r *Router) change(ctx context.Context, fn func(*pools.State) error, recheck ...string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := r.st.Clone()
	next := r.st.Clone()
	if err := fn(next); err != nil {
		return err
	}
	r.st = next
	if err := r.apply(ctx, recheck...); err != nil {
		r.st = prev
		if errors.Is(err, ErrUnreachable) {
			_ = r.save()
			return err
		}
		if uerr := r.apply(ctx); uerr != nil {
			return fmt.Errorf("%w (and restoring the previous state: %v)", err, uerr)
		}
		return err
	}
	return nil
}

// State returns the routing state with each backend's health and
// in-flight requests as HAProxy reports them.
func (r *Router) State(ctx context.Context) (engine.RouterState, error) {
	r.mu.Lock()
	st := r.st.Clone()
	r.mu.Unlock()
	stats, err := r.serverStats(ctx)
	if err != nil {
		return engine.RouterState{}, err
	}
	out := engine.RouterState{Route: st.Route, Cohorts: slices.Clone(st.Cohorts)}
	for _, rel := range slices.Sorted(maps.Keys(st.Pools)) {
		for _, a := range st.Pools[rel] {
			b := engine.BackendStatus{Addr: a, Release: rel, Draining: st.IsDrained(a)}
			for _, s := range stats[a] {
				b.InFlight += s.Sessions
				if s.Backend == r.cfg.Backend {
					b.Healthy = s.Up() && s.Status != "MAINT"
				}
			}
			out.Backends = append(out.Backends, b)
		}
	}
	if out.Cohorts == nil {
		out.Cohorts = []engine.CohortRule{}
	}
	return out, nil
}

// serverStats reads "show stat" for the adapter's backends, by address
// (a server configured by name is found under its fqdn:port too).
func (r *Router) serverStats(ctx context.Context) (map[string][]ServerStat, error) {
	r.mu.Lock()
	names := r.names
	r.mu.Unlock()
	cmds := []string{}
	for _, b := range r.backends() {
		cmds = append(cmds, "show stat "+Quote(b)+" 4 -1")
	}
	if names == nil {
		for _, b := range r.backends() {
			cmds = append(cmds, "show servers state "+Quote(b))
		}
	}
	answers, err := r.rt.Do(ctx, cmds...)
	if err != nil {
		return nil, err
	}
	// aliases: backend → server name → every address it is known by.
	aliases := map[string]map[string][]string{}
	if names == nil {
		for i, b := range r.backends() {
			ss, err := parseServersState(answers[len(r.backends())+i])
			if err != nil {
				return nil, fmt.Errorf("backend %s: %w", b, err)
			}
			aliases[b] = map[string][]string{}
			for _, s := range ss {
				aliases[b][s.Name] = s.Addrs()
			}
		}
	} else {
		for a, byBackend := range names {
			for b, name := range byBackend {
				if aliases[b] == nil {
					aliases[b] = map[string][]string{}
				}
				aliases[b][name] = append(aliases[b][name], a)
			}
		}
	}
	out := map[string][]ServerStat{}
	for i, b := range r.backends() {
		ss, _, err := parseStat(answers[i])
		if err != nil {
			return nil, fmt.Errorf("backend %s: %w", b, err)
		}
		for _, s := range ss {
			addrs := aliases[b][s.Name]
			if len(addrs) == 0 {
				addrs = []string{s.Addr}
			}
			for _, a := range addrs {
				out[a] = append(out[a], s)
			}
		}
	}
	return out, nil
}

// SetPool sets release's servers. A server that joins from maintenance
// takes traffic only once a fresh health check passed.
func (r *Router) SetPool(ctx context.Context, release string, addrs []string) error {
	return r.change(ctx, pools.PoolChange(release, addrs))
}

// SetRoute changes the traffic split (server weights).
func (r *Router) SetRoute(ctx context.Context, rt engine.Route) error {
	return r.change(ctx, pools.RouteChange(rt))
}

// SetCohorts replaces the cohort rules: the cohort map's entries and the
// cohort backend's weights. The cohort is sent to the cohort backend once a server of its release
// passes its health check there: SetCohorts waits for that (ctx bounds
// the wait), the cohort staying on the main backend meanwhile.
func (r *Router) SetCohorts(ctx context.Context, rules []engine.CohortRule) error {
	if err := r.change(ctx, pools.CohortChange(rules)); err != nil {
		return err
	}
	for {
		r.mu.Lock()
		held := r.cohortHeld
		rel := r.st.CohortRelease()
		r.mu.Unlock()
		if !held {
			return nil
		}
		if err := sleep(ctx, r.cfg.PollInterval); err != nil {
			return fmt.Errorf("waiting for a server of %s to pass its health check in HAProxy backend %s: %w", rel, r.cfg.CohortBackend, err)
		}
		r.mu.Lock()
		err := r.apply(ctx)
		r.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// Drain puts addr's servers in "drain" and waits until HAProxy reports no
// session on them (nil) or timeout passed (an error wrapping
// router.ErrDrainTimeout; the server stays drained).
func (r *Router) Drain(ctx context.Context, addr string, timeout time.Duration) error {
	if err := r.change(ctx, pools.DrainChange(addr, true)); err != nil {
		return fmt.Errorf("draining %w", err)
	}
	if timeout <= 0 {
		timeout = router.DefaultDrainTimeout
	}
	deadline := time.Now().Add(timeout)
	for {
		stats, err := r.serverStats(ctx)
		if err != nil {
			return fmt.Errorf("draining %s: %w", addr, err)
		}
		var n int64
		for _, s := range stats[addr] {
			n += s.Sessions
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("draining %s: %w (%d sessions still open after %s)", addr, router.ErrDrainTimeout, n, timeout)
		}
		if err := sleep(ctx, r.cfg.PollInterval); err != nil {
			return fmt.Errorf("draining %s: %w", addr, err)
		}
	}
}

// Undrain puts addr back in rotation once a fresh health check passed.
func (r *Router) Undrain(ctx context.Context, addr string) error {
	if err := r.change(ctx, pools.DrainChange(addr, false), addr); err != nil {
		return fmt.Errorf("undraining %w", err)
	}
	return nil
}

// WaitHealthy waits until HAProxy reports addr's server up and in
// rotation (not drained, not in maintenance).
func (r *Router) WaitHealthy(ctx context.Context, addr string) error {
	r.mu.Lock()
	err := r.st.InRotation(addr)
	r.mu.Unlock()
	if err != nil {
		return err
	}
	last := ""
	for {
		stats, err := r.serverStats(ctx)
		if err != nil {
			return fmt.Errorf("waiting for %s to be healthy: %w", addr, err)
		}
		ok := false
		for _, s := range stats[addr] {
			if s.Backend == r.cfg.Backend {
				ok = s.Up() && s.Status != "DRAIN" && s.Status != "MAINT"
				last = s.Status + " " + s.CheckStatus
			}
		}
		if ok {
			return r.refresh(ctx)
		}
		if err := sleep(ctx, r.cfg.PollInterval); err != nil {
			return fmt.Errorf("waiting for %s to be healthy (HAProxy: %s): %w", addr, strings.TrimSpace(last), err)
		}
	}
}

// Stats returns per-release counters: requests, status classes and
// connection errors from HAProxy's own counters (show stat, summed over
// the release's servers in every backend), latency from the log ring.
func (r *Router) Stats(ctx context.Context) (map[string]engine.ReleaseStats, error) {
	byAddr, pools, err := r.addrStats(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]engine.ReleaseStats{}
	for rel, addrs := range pools {
		rs := r.tally.Sum(nil)
		for _, a := range addrs {
			engine.AddStats(&rs, byAddr[a])
		}
		out[rel] = rs
	}
	return out, nil
}

// BackendStats returns the same counters per server address.
func (r *Router) BackendStats(ctx context.Context) (map[string]engine.ReleaseStats, error) {
	byAddr, _, err := r.addrStats(ctx)
	return byAddr, err
}

// addrStats reads show stat and the log ring's latencies per address of
// every pool.
func (r *Router) addrStats(ctx context.Context) (map[string]engine.ReleaseStats, map[string][]string, error) {
	r.startRing()
	stats, err := r.serverStats(ctx)
	if err != nil {
		return nil, nil, err
	}
	r.mu.Lock()
	st := r.st.Clone()
	r.mu.Unlock()
	out := map[string]engine.ReleaseStats{}
	for _, addrs := range st.Pools {
		for _, a := range addrs {
			rs := r.tally.Sum([]string{a})
			rs.Requests, rs.Status2xx, rs.Status3xx, rs.Status4xx, rs.Status5xx, rs.ConnErrors = 0, 0, 0, 0, 0, 0
			for _, s := range stats[a] {
				rs.Requests += s.Requests()
				rs.Status2xx += s.Responses[2]
				rs.Status3xx += s.Responses[3]
				rs.Status4xx += s.Responses[4]
				rs.Status5xx += s.Responses[5]
				rs.ConnErrors += s.ConnErrors + s.RespErrors
			}
			out[a] = rs
		}
	}
	return out, st.Pools, nil
}

// Watch re-applies the routing state whenever HAProxy was reloaded or
// restarted (or could not be reached and is back), and hands each notice
// to note, until ctx ends.
func (r *Router) Watch(ctx context.Context, note func(string)) {
	tick := time.NewTicker(max(r.cfg.PollInterval, 250*time.Millisecond))
	defer tick.Stop()
	for {
		_ = r.refresh(ctx) // unreachable now: tried again at the next tick
		for _, n := range r.Notices() {
			note(n)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// refresh applies the routing state again when HAProxy is a new process
// (reloaded, restarted) or a routed release's servers went down or came
// back, so that its share moves to the other side or back.
func (r *Router) refresh(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.applied == (Identity{}) {
		return nil // nothing applied yet
	}
	sn, err := r.snapshot(ctx)
	if err != nil {
		return err
	}
	if sn.id == r.applied && slices.Equal(r.st.Unusable(sn.down), r.unusable) && r.holdsCohort(sn) == r.cohortHeld {
		return nil
	}
	return r.apply(ctx)
}

// Notices returns (and forgets) what the adapter did on its own since the
// last call, for callers that do not Watch.
func (r *Router) Notices() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.notices
	r.notices = nil
	return n
}

// Reapply makes HAProxy match the routing state now (after the operator
// reloaded it by hand, or to adopt a state file).
func (r *Router) Reapply(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.apply(ctx)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
