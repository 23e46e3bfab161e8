// Package pools is the routing state the HAProxy and nginx adapters keep
// on the engine's behalf: which backends serve which release, the route
// (stable, candidate, weight), the A/B cohort rules and the drained
// backends. A load balancer knows servers, not releases, so the adapters
// persist this state themselves and derive from it what each server gets:
// its share of the traffic, and whether it is in rotation at all.
//
// The derivation follows the built-in router's rules (targets/router):
// Weight percent of the requests go to the candidate's backends in
// rotation and the rest to the stable release's; when one side has no
// backend in rotation, the other side takes everything; within a release
// the share is split evenly. Backends of a release that is neither stable
// nor candidate stay warm (in rotation checks, no traffic); backends in no
// pool are out.
package pools

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"flightdeck/engine"
	"flightdeck/internal/atomicfile"
	"flightdeck/targets/router"
)

// State is the routing state of one environment.
type State struct {
	Pools   map[string][]string `json:"pools"`
	Route   engine.Route        `json:"route"`
	Cohorts []engine.CohortRule `json:"cohorts,omitempty"`
	Drained []string            `json:"drained,omitempty"`
}

// Clone returns a deep copy.
func (s *State) Clone() *State {
	c := &State{Pools: map[string][]string{}, Route: s.Route,
		Cohorts: slices.Clone(s.Cohorts), Drained: slices.Clone(s.Drained)}
	for rel, addrs := range s.Pools {
		c.Pools[rel] = slices.Clone(addrs)
	}
	return c
}

// ReleaseOf returns the release whose pool holds addr ("" when none).
func (s *State) ReleaseOf(addr string) string {
	for _, rel := range slices.Sorted(maps.Keys(s.Pools)) {
		if slices.Contains(s.Pools[rel], addr) {
			return rel
		}
	}
	return ""
}

// SetPool sets release's backends; a backend moves out of any other pool.
// A release with no backend keeps an empty pool (it can still be routed to).
// The first pool set on a state without a route becomes its stable
// release: a load balancer adopted with its servers in service keeps
// serving while the engine primes it.
func (s *State) SetPool(release string, addrs []string) {
	if s.Pools == nil {
		s.Pools = map[string][]string{}
	}
	if s.Route.Stable == "" && s.Route.Candidate == "" && len(s.Pools) == 0 {
		s.Route.Stable = release
	}
	addrs = slices.Compact(slices.Sorted(slices.Values(addrs)))
	for rel, cur := range s.Pools {
		if rel != release {
			s.Pools[rel] = slices.DeleteFunc(cur, func(a string) bool { return slices.Contains(addrs, a) })
		}
	}
	s.Pools[release] = addrs
	s.Drained = slices.DeleteFunc(s.Drained, func(a string) bool { return s.ReleaseOf(a) == "" })
}

// IsDrained reports whether addr is drained.
func (s *State) IsDrained(addr string) bool { return slices.Contains(s.Drained, addr) }

// InRotation returns nil when addr is in a pool and not drained, or why
// a wait for it to be healthy cannot succeed (wrapping ErrUnknownBackend
// when it is in no pool).
func (s *State) InRotation(addr string) error {
	switch {
	case s.ReleaseOf(addr) == "":
		return fmt.Errorf("waiting for %s to be healthy: %w: it is in no pool", addr, ErrUnknownBackend)
	case s.IsDrained(addr):
		return fmt.Errorf("waiting for %s to be healthy: it is drained", addr)
	}
	return nil
}

// SetDrained drains (or undrains) addr.
func (s *State) SetDrained(addr string, drained bool) {
	s.Drained = slices.DeleteFunc(s.Drained, func(a string) bool { return a == addr })
	if drained {
		s.Drained = append(s.Drained, addr)
		slices.Sort(s.Drained)
	}
}

// Addrs returns every backend in some pool, sorted.
func (s *State) Addrs() []string {
	var out []string
	for _, addrs := range s.Pools {
		out = append(out, addrs...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// inRotation returns rel's backends that are not drained.
func (s *State) inRotation(rel string) []string {
	return slices.DeleteFunc(slices.Clone(s.Pools[rel]), s.IsDrained)
}

// The changes the engine asks an adapter for, as functions of a State
// (an adapter applies one to a copy, then makes its load balancer match).

// PoolChange sets release's backends.
func PoolChange(release string, addrs []string) func(*State) error {
	return func(s *State) error {
		s.SetPool(release, addrs)
		return nil
	}
}

// RouteChange sets the route. Sticky settings belong to the built-in
// router and are not kept.
func RouteChange(rt engine.Route) func(*State) error {
	return func(s *State) error {
		s.Route = engine.Route{Stable: rt.Stable, Candidate: rt.Candidate, Weight: rt.Weight}
		return nil
	}
}

// CohortChange replaces the cohort rules (see CheckCohorts).
func CohortChange(rules []engine.CohortRule) func(*State) error {
	return func(s *State) error {
		if err := CheckCohorts(rules); err != nil {
			return err
		}
		s.Cohorts = slices.Clone(rules)
		return nil
	}
}

// DrainChange drains or undrains addr, which must be in a pool.
func DrainChange(addr string, drained bool) func(*State) error {
	return func(s *State) error {
		if s.ReleaseOf(addr) == "" {
			return fmt.Errorf("%s: %w", addr, ErrUnknownBackend)
		}
		s.SetDrained(addr, drained)
		return nil
	}
}

// ErrUnknownBackend is the built-in router's error for an address in no
// pool, so that callers test one error whatever the load balancer.
var ErrUnknownBackend = router.ErrUnknownBackend

// Placement is what one backend gets.
type Placement int

// Placements, from most to least available.
const (
	// Serving: in rotation, with a share of the traffic (Share > 0).
	Serving Placement = iota
	// Warm: in rotation for health checks, but no share of the traffic
	// (a release that is not routed, or a side at weight 0).
	Warm
	// Drained: out of rotation while it finishes its requests.
	Drained
	// Out: in no pool.
	Out
)

func (p Placement) String() string {
	return [...]string{"serving", "warm", "drained", "out"}[p]
}

// Target is one backend's placement and share of the traffic (percent of
// all requests that match no cohort rule).
type Target struct {
	Placement Placement
	Share     float64
}

// Targets places every backend in addrs (and every backend in a pool):
// the traffic split of the route, or, with cohort set, the split for the
// requests that a cohort rule sends to the cohort's release (all to its
// backends in rotation; to the route's split when it has none).
//
// down, when set, names backends failing their health checks. A load
// balancer skips those itself within a release, but it cannot move a
// release's share to the other release when all of its backends are
// down: such a release counts as having nothing in rotation, so that the
// other side takes all the traffic, as the built-in router does.
func (s *State) Targets(addrs []string, cohort bool, down map[string]bool) map[string]Target {
	shares := map[string]float64{}
	usable := func(rel string) bool {
		for _, a := range s.inRotation(rel) {
			if !down[a] {
				return true
			}
		}
		return false
	}
	side := func(rel string, share float64) {
		in := s.inRotation(rel)
		for _, a := range in {
			shares[a] += share / float64(len(in))
		}
	}
	r := s.Route
	stable, cand, w := r.Stable, r.Candidate, r.Weight
	if cand == "" || cand == stable {
		cand, w = "", 0
	}
	if w >= 100 {
		w = 100
	}
	if cand != "" && !usable(cand) {
		w = 0
	}
	if cand != "" && (stable == "" || !usable(stable)) && usable(cand) {
		w = 100
	}
	if rel := s.CohortRelease(); cohort && rel != "" && usable(rel) {
		side(rel, 100)
	} else {
		if stable != "" && w < 100 {
			side(stable, 100-w)
		}
		if cand != "" && w > 0 {
			side(cand, w)
		}
	}
	out := map[string]Target{}
	for _, a := range append(slices.Clone(addrs), s.Addrs()...) {
		switch {
		case s.ReleaseOf(a) == "":
			out[a] = Target{Placement: Out}
		case s.IsDrained(a):
			out[a] = Target{Placement: Drained}
		case shares[a] > 0:
			out[a] = Target{Placement: Serving, Share: shares[a]}
		default:
			out[a] = Target{Placement: Warm}
		}
	}
	return out
}

// Unusable returns the routed releases (stable, candidate, cohort) that
// have backends in their pool but none in rotation and up.
func (s *State) Unusable(down map[string]bool) []string {
	var out []string
	for _, rel := range []string{s.Route.Stable, s.Route.Candidate, s.CohortRelease()} {
		if rel == "" || slices.Contains(out, rel) || len(s.Pools[rel]) == 0 {
			continue
		}
		ok := false
		for _, a := range s.inRotation(rel) {
			ok = ok || !down[a]
		}
		if !ok {
			out = append(out, rel)
		}
	}
	slices.Sort(out)
	return out
}

// CohortRelease is the release the cohort rules send their users to ("" without rules).
func (s *State) CohortRelease() string {
	if len(s.Cohorts) == 0 {
		return ""
	}
	return s.Cohorts[0].Release
}

// CheckCohorts refuses rules a load balancer with one cohort backend
// cannot express: rules for different releases.
func CheckCohorts(rules []engine.CohortRule) error {
	for _, r := range rules {
		if r.Release == "" {
			return errors.New("a cohort rule needs a release")
		}
		if r.Release != rules[0].Release {
			return fmt.Errorf("cohort rules for %s and %s: this load balancer routes cohorts to one release at a time", rules[0].Release, r.Release)
		}
		if (r.Header == "") == (r.Cookie == "") {
			return errors.New("a cohort rule matches a header or a cookie")
		}
		if r.Value == "" && (r.Percent <= 0 || r.Percent > 100) {
			return fmt.Errorf("cohort rule on %s: a value, or a percent from 1 to 100", cmp.Or(r.Header, r.Cookie))
		}
	}
	return nil
}

// Scale turns shares into integer weights from 1 to limit for the serving
// backends, keeping their ratios as closely as integers allow (the
// largest share gets limit). Backends with no share get 0.
func Scale(targets map[string]Target, limit int) map[string]int {
	top := 0.0
	for _, t := range targets {
		top = max(top, t.Share)
	}
	out := map[string]int{}
	for a, t := range targets {
		if t.Placement != Serving || top == 0 {
			out[a] = 0
			continue
		}
		out[a] = min(limit, max(1, int(t.Share/top*float64(limit)+0.5)))
	}
	return out
}

// Load reads a state file; a missing file is an empty state.
func Load(path string) (*State, error) {
	s := &State{Pools: map[string][]string{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading routing state: %w", err)
	}
	if err := json.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("routing state %s: %w", path, err)
	}
	if s.Pools == nil {
		s.Pools = map[string][]string{}
	}
	return s, nil
}

// WriteFile replaces path with data atomically (see atomicfile.Write),
// creating its directory.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(path, data, perm)
}

// Save writes the state to path atomically.
func (s *State) Save(path string) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("saving routing state: %w", err)
	}
	return nil
}
