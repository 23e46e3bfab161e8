package demo

import (
	"fmt"
	"strings"
	"time"

	"flightdeck/targets/demo/service"
)

// Scenario is a training exercise: what the new release does wrong, and
// what the trainee should watch and do.
type Scenario struct {
	Name     string
	Summary  string
	Briefing string
	// Knobs are the new release's faults.
	Knobs service.Knobs
	// FaultHost, when set, is the host that Fault hits mid-release (once
	// another host has taken the new release).
	FaultHost string
	// Fault is what happens to FaultHost: FaultKill (on local hosts its
	// services are killed and refuse restarts; on a lab the container is
	// killed), FaultPartition or FaultPause (a lab only).
	Fault string
	// LabOnly scenarios need real hosts: `demo --lab`.
	LabOnly bool
	// FailureLimit overrides the gate's failure limit.
	FailureLimit int
	// ExpectHitless is true when the scenario should end HITLESS.
	ExpectHitless bool
}

// Scenarios lists the training scenarios by name.
func Scenarios() []Scenario {
	list := []Scenario{
		{
			Name: "good", Summary: "a clean release", ExpectHitless: true,
			Briefing: "A clean release goes out. Watch each host drain, switch, restart and come back healthy while the probe keeps " +
				"sending traffic: the report should say HITLESS, with 0 failed probe requests. Nothing to do but watch; " +
				"try pausing and resuming to see that an operator can hold the release at any point.",
		},
		{
			Name: "bad-canary", Summary: "the new release returns 5% errors",
			Knobs: service.Knobs{ErrorRate: 0.05},
			Briefing: "The new release answers 5% of requests with a 500. With canary, the SLO gate measures the first step, " +
				"sees the error rate above 0.1% and rolls back on its own (actor auto); with other strategies the automatic " +
				"rollback trigger (error rate > 1% for 3s) fires. Watch the failing measurement in the events and the RTO in " +
				"the report. An operator would roll back by hand if the automation did not.",
		},
		{
			Name: "slow-start", Summary: "long start-up: 503 until ready, no traffic lost", ExpectHitless: true,
			Knobs: service.Knobs{StartupDelay: 3 * time.Second},
			Briefing: "The new release takes 3 seconds to start and answers 503 on /healthz until it is ready. The router only " +
				"sends traffic to a backend whose health check passes, so no probe request should fail. Watch the hosts sit in " +
				"the health phase; do nothing.",
		},
		{
			Name: "latency", Summary: "p99 regresses past the SLO",
			Knobs: service.Knobs{Latency: 600 * time.Millisecond},
			Briefing: "The new release adds 600 ms to every request: p99 goes far past the 200 ms SLO. The canary gate fails on p99, " +
				"or, with strategies that have no gate, the rollback trigger (p99 > 500 ms for 3s) fires. Watch the p99 sparkline cross its threshold.",
		},
		{
			Name: "host-dies", Summary: "one host's service dies mid-release",
			FaultHost: "web-3", Fault: FaultKill,
			Briefing: "Half way through the release, host web-3 dies: its service is killed and it refuses restarts (with --lab, " +
				"its container is killed). The router takes it out of rotation after failed health checks; the run fails on web-3, " +
				"rolls back the hosts it already switched, and the report names the dead host. Every host ends on one complete release.",
		},
		{
			Name: "partition", Summary: "a host drops off the network mid-release (--lab)",
			FaultHost: "web-3", Fault: FaultPartition, LabOnly: true,
			Briefing: "Half way through the release, host web-3 drops off the network: its container is disconnected from the " +
				"lab network, so SSH and health checks get no answer. Every SSH operation gives up after the plan's " +
				"command_timeout (10 s; a new connection after connect_timeout, 5 s); the run halts, reverts the hosts it can " +
				"reach, and names web-3 as the host it could not reach. `flightdeck lab heal web-3` brings it back.",
		},
		{
			Name: "hung-host", Summary: "a host hangs mid-release: TCP open, nothing answers (--lab)",
			FaultHost: "web-3", Fault: FaultPause, LabOnly: true,
			Briefing: "Half way through the release, host web-3 hangs: every process of its container is frozen, but its TCP " +
				"connections stay open, so nothing fails fast. Every SSH operation times out after the plan's command_timeout " +
				"(10 s) with a message naming the host, never hanging the run; the run halts, reverts what it can reach, and " +
				"names web-3. Watch for the timeout in the events.",
		},
		{
			Name: "flapping", Summary: "errors come and go",
			Knobs:        service.Knobs{ErrorRate: 0.2, Flap: true, FlapPeriod: 1500 * time.Millisecond},
			FailureLimit: 2,
			Briefing: "The new release fails 20% of requests, but only in every other 1.5 s period. Gate measurements alternate " +
				"between pass and fail; the gate's failure_limit of 2 consecutive failures decides when it is bad enough. " +
				"Watch the verdicts in the events: a single failure does not roll back, a second one in a row does.",
		},
	}
	return list
}

// Faults a scenario can inject (the names of the lab's faults).
const (
	FaultKill      = "kill"
	FaultPartition = "partition"
	FaultPause     = "pause"
)

// FindScenario looks a scenario up by name.
func FindScenario(name string) (Scenario, error) {
	var names []string
	for _, s := range Scenarios() {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return Scenario{}, fmt.Errorf("unknown scenario %q (choose one of: %s)", name, strings.Join(names, ", "))
}
