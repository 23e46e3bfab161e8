package main

import (
	"context"

	"flightdeck/engine"
	"flightdeck/engine/plan"
	"flightdeck/engine/sampler"
	"flightdeck/tui"
)

// liveSampler starts the environment's live SLO sampler: the traffic
// layer's counters, or Prometheus when the gate reads it, sampled every
// second until ctx ends. Nil when the plan has no traffic source.
func liveSampler(ctx context.Context, env *plan.Environment, rt engine.Router, metrics engine.MetricsSource, hub *engine.Hub) *sampler.Sampler {
	var counters sampler.Counters
	if rt != nil {
		counters = rt
	}
	instant, _ := metrics.(sampler.Instant)
	cfg, ok := sampler.ForEnv(env, counters, instant, hub)
	if !ok {
		return nil
	}
	s := sampler.New(cfg)
	go s.Run(ctx)
	return s
}

// sloLimits are the limits the cockpit draws: the gate's, or none (the
// pane then says that the plan sets none rather than show defaults).
func sloLimits(env *plan.Environment) tui.SLO {
	noSource := !env.Router.Configured() && (env.Gate == nil || env.Gate.Source != "prometheus")
	gate := engine.GateFromPlan(env.Gate)
	if gate == nil {
		return tui.SLO{None: true, NoSource: noSource}
	}
	return tui.SLO{ErrorRate: gate.ErrorRate, P99: gate.P99, NoSource: noSource}
}

// noHealthCheck reports that nothing checks a host's health after its
// switch: no health check in the plan and no router (whose own checks gate
// a backend's return to rotation).
func noHealthCheck(p *plan.Plan, env *plan.Environment) bool {
	return p.Health == nil && !env.Router.Configured()
}
