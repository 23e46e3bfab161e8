package advise

import (
	"fmt"
	"strings"

	"flightdeck/engine/plan"
)

// snippetHosts is how many example hosts a starter plan lists.
const snippetHosts = 3

// Snippet returns a starter plan for kind: the environments block of a
// flightdeck.yaml with one environment called env, holding what the
// strategy needs (hosts with backends or slots, the router, the strategy,
// the SLO gate and the rollback trigger). Prefixed with app and source it
// is a plan that plan.Parse accepts; the addresses are examples to edit.
// An empty env is "production"; an unknown kind gives the rolling plan.
func Snippet(kind plan.StrategyKind, env string) string {
	if env == "" {
		env = "production"
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	switch kind {
	case plan.Symlink:
		w("# Atomic symlink: every host is prepared first, then current is switched by rename().")
	case plan.Canary:
		w("# Canary: the router sends 1, 5, 25, then 100%% of traffic to the new release;")
		w("# the SLO gate judges each step and a failure sets the weight back to 0.")
	case plan.BlueGreen:
		w("# Blue/green: the release starts in each host's idle slot, then the router flips")
		w("# all traffic at once; the old slot stays warm for an instant flip back.")
	case plan.AB:
		w("# A/B: a cohort of users (here a stable 10%% by X-User-Id) is routed to the new")
		w("# release, running in each host's idle slot; drop the cohort to end it.")
	default:
		kind = plan.Rolling
		w("# Rolling: waves of hosts are drained, switched, health-checked and put back.")
	}
	w("environments:")
	w("  %s:", yamlKey(env))
	w("    deploy_to: /srv/app")
	if kind != plan.Symlink {
		w(`    router: {admin: "http://127.0.0.1:9901", token_file: ./router.token}`)
	}
	w("    hosts:")
	for i := 1; i <= snippetHosts; i++ {
		addr := fmt.Sprintf("10.0.0.%d", 10+i)
		switch kind {
		case plan.Symlink:
			w("      - {name: web-%d, ssh: deploy@%s}", i, addr)
		case plan.BlueGreen, plan.AB:
			w(`      - {name: web-%d, ssh: deploy@%s, slots: {blue: "%s:8080", green: "%s:8081"}}`, i, addr, addr, addr)
		default:
			w(`      - {name: web-%d, ssh: deploy@%s, backend: "%s:8080"}`, i, addr, addr)
		}
	}
	w("    strategy:")
	w("      kind: %s", kind)
	switch kind {
	case plan.Rolling:
		w("      wave_size: 1          # hosts switched per wave")
		w("      max_unavailable: 1    # hosts out of rotation at once: capacity stays near 1x")
		w("      pause: 1m             # time to read the dashboards between waves")
		w("      on_failure: rollback  # a failed wave reverts the hosts switched so far")
		w("      drain: 30s")
		w("    # Coarse trigger: even slow observability sees a broad breach that lasts.")
		w(`    auto_rollback: {error_rate: "2%%", p99: 1s, for: 2m}`)
	case plan.Canary:
		w("      steps: [1, 5, 25, 100]")
		w("      auto_promote: true    # false: wait for an operator at each step")
		w("      max_unavailable: 1")
		w("    gate: {error_rate: 0.1%%, p99: 200ms, interval: 10s, count: 3, failure_limit: 1, min_requests: 50, no_data: hold}")
		w(`    auto_rollback: {error_rate: "1%%", p99: 500ms, for: 30s}`)
	case plan.BlueGreen:
		w("      keep_warm: 10m        # the old colour keeps running for an instant flip back")
		w("      drain: 30s            # long-lived connections finish on the old colour")
		w(`    auto_rollback: {error_rate: "1%%", p99: 500ms, for: 30s}`)
	case plan.AB:
		w("      cohort: {header: X-User-Id, percent: 10}")
		w("    gate: {error_rate: 0.1%%, p99: 200ms, interval: 10s, count: 3, min_requests: 50}")
	}
	return b.String()
}

// yamlKey quotes an environment name when it would not read back as itself.
func yamlKey(s string) string {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Sprintf("%q", s)
		}
	}
	switch strings.ToLower(s) {
	case "", "true", "false", "yes", "no", "on", "off", "null", "~", "y", "n":
		return fmt.Sprintf("%q", s)
	}
	return s
}
