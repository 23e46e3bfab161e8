package engine

import (
	"time"

	"flightdeck/engine/plan"
)

// What a run decides with: the plan's facts the step needs (rulesFor)
// and the strategy's planner.

// rulesFor gathers the plan's facts the step decides with.
func rulesFor(cfg RunConfig) runRules {
	p, env := cfg.Plan, cfg.Env
	rules := runRules{
		migrate: len(p.Hooks.Migrate) > 0, smoke: len(p.Smoke) > 0, cache: p.CacheNamespaceEnv != "",
		routed: cfg.Router != nil, keep: p.KeepReleases, sloP99: 200 * time.Millisecond,
		skipRollbackPath: cfg.SkipRollbackPath, overrideBy: cfg.Actor.Name,
		halt: env.Strategy.OnFailure == "halt", traffic: trafficStrategy(env),
	}
	if cfg.Metrics != nil {
		rules.gate = GateFromPlan(env.Gate)
		rules.trigger = TriggerFromPlan(env.AutoRollback)
	}
	if g := env.Gate; g != nil && g.P99.Duration > 0 {
		rules.sloP99 = g.P99.Duration
	}
	if pc := env.Probe; pc != nil && pc.URL != "" {
		rules.probe = true
		rules.settle = pc.Settle.Duration
	}
	return rules
}

// PlannerFor returns the planner of an environment's strategy. gate is nil
// when there is nothing to measure with; minHold paces steps and waves.
func PlannerFor(env *plan.Environment, gate *GateSpec, minHold time.Duration) Planner {
	st := env.Strategy
	halt := st.OnFailure == "halt"
	if trafficStrategy(env) {
		return TrafficPlanner{
			Slots: slotStrategy(env), Cohort: st.Kind == plan.AB, Gate: gate,
			Hold: max(minHold, st.Pause.Duration), AutoPromote: env.AutoPromote(), Halt: halt,
			MaxUnavailable: st.MaxUnavailable.Of(len(env.Hosts)),
		}
	}
	wp := WavePlanner{Pause: st.Pause.Duration, Halt: halt}
	if st.Kind == plan.Rolling {
		wp.MaxUnavailable = st.MaxUnavailable.Of(len(env.Hosts))
	}
	return wp
}
