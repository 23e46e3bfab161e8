package advise

import (
	"fmt"

	"flightdeck/engine/plan"
)

// FromPlan reads the answers an environment of a release plan already gives,
// each with Source SourcePlan and a Why naming the evidence. Questions the
// plan says nothing about are left unanswered:
//
//   - a router with hosts that have a backend or slots: a load balancer in
//     front of several instances (a single host without a router: none);
//   - hosts with blue/green slots: double capacity is affordable;
//   - an SLO gate, a Prometheus source or an auto_rollback trigger:
//     observability that can likely see a small regression fast;
//   - strategy ab: a feature is being validated.
func FromPlan(e *plan.Environment) Answers {
	a := Answers{}
	if e == nil {
		return a
	}
	hosts, routed, slotted := 0, 0, 0
	for _, h := range e.Hosts {
		if h == nil {
			continue
		}
		hosts++
		if h.Backend != "" || len(h.Slots) > 0 {
			routed++
		}
		if len(h.Slots) > 0 {
			slotted++
		}
	}
	hasRouter := e.Router.Configured()

	switch {
	case hasRouter && routed > 0:
		a[LoadBalancer] = Answer{Yes: true, Source: SourcePlan,
			Why: fmt.Sprintf("%s, %d of %d hosts have a backend or slots", e.Router.Describe(), routed, hosts)}
	case !hasRouter && hosts == 1:
		a[LoadBalancer] = Answer{Yes: false, Source: SourcePlan,
			Why: "one host and no router"}
	}
	if slotted > 0 {
		a[DoubleCapacity] = Answer{Yes: true, Source: SourcePlan,
			Why: fmt.Sprintf("%d of %d hosts have blue/green slots", slotted, hosts)}
	}
	if why := observability(e); why != "" {
		a[FastObservability] = Answer{Yes: true, Source: SourcePlan, Why: why + " (likely; check it sees 1-5% of traffic within 60 s)"}
	}
	if e.Strategy.Kind == plan.AB {
		a[Feature] = Answer{Yes: true, Source: SourcePlan, Why: "strategy ab with a cohort"}
	}
	return a
}

// observability names the plan's evidence of SLO measurement, or "".
func observability(e *plan.Environment) string {
	switch g := e.Gate; {
	case g != nil && g.Source == "prometheus":
		return "an SLO gate reading Prometheus"
	case g != nil:
		return "an SLO gate on the router's measurements"
	case e.AutoRollback != nil:
		return "an auto_rollback trigger"
	}
	return ""
}
