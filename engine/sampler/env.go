package sampler

import (
	"maps"
	"slices"

	"flightdeck/engine"
	"flightdeck/engine/plan"
)

// ForEnv is the sampler configuration of an environment: Prometheus when
// its gate reads Prometheus (instant must then be non-nil), otherwise the
// traffic layer's counters (counters nil: no traffic source, and ok is
// false). Per-host figures use each host's backend and slots; a symlink
// environment's pool is split by the release each host serves, read from
// hub's latest snapshot.
func ForEnv(env *plan.Environment, counters Counters, instant Instant, hub *engine.Hub) (cfg Config, ok bool) {
	cfg.Hosts = map[string][]string{}
	for _, h := range env.Hosts {
		var addrs []string
		if h.Backend != "" {
			addrs = append(addrs, h.Backend)
		}
		for _, c := range slices.Sorted(maps.Keys(h.Slots)) {
			addrs = append(addrs, h.Slots[c])
		}
		if len(addrs) > 0 {
			cfg.Hosts[h.Name] = addrs
		}
	}
	if env.Gate != nil && env.Gate.Source == "prometheus" && instant != nil {
		cfg.Instant, cfg.Source = instant, "prometheus"
		cfg.Releases = func() []string { return releases(hub.Snapshot()) }
		return cfg, true
	}
	if counters == nil {
		return Config{}, false
	}
	cfg.Counters = counters
	cfg.Source = env.Router.KindOrDefault()
	if env.Strategy.Kind == plan.Symlink {
		backend := map[string]string{}
		for _, h := range env.Hosts {
			if h.Backend != "" {
				backend[h.Name] = h.Backend
			}
		}
		cfg.Attribute = func() map[string]string {
			st := hub.Snapshot()
			out := make(map[string]string, len(st.Hosts))
			for _, hs := range st.Hosts {
				if a := backend[hs.Name]; a != "" && hs.Current != "" {
					out[a] = hs.Current
				}
			}
			return out
		}
	}
	return cfg, true
}

// releases are the releases of the last run: the new one, the previous
// one and whatever a host serves.
func releases(st *engine.State) []string {
	var out []string
	add := func(r string) {
		if r != "" && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	add(st.Info.Previous)
	add(st.Info.Release)
	for _, h := range st.Hosts {
		add(h.Current)
	}
	return out
}
