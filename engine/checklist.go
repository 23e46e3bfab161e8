package engine

import (
	"context"
	"fmt"
	"strings"
	"time"

	"flightdeck/engine/checklist"
	"flightdeck/engine/plan"
)

// Checklist item ids (see plan.ChecklistItems).
const (
	ItemHealth503    = "health_503"
	ItemGraceful     = "graceful_shutdown"
	ItemDraining     = "draining"
	ItemMigrations   = "migrations"
	ItemCacheNS      = "cache_namespace"
	ItemIdempotent   = "idempotent_jobs"
	ItemAutoRollback = "auto_rollback"
	ItemSmoke        = "smoke"
)

// ItemState is where a checklist item stands.
type ItemState string

// Checklist item states.
const (
	// ItemUnknown: not shown yet (observed during the run, or acknowledged).
	ItemUnknown ItemState = "unknown"
	// ItemVerified: the plan or the run showed it holds.
	ItemVerified ItemState = "verified"
	// ItemFailed: the plan or the run showed it does not hold.
	ItemFailed ItemState = "failed"
	// ItemAcknowledged: an operator vouched for it (with a reason).
	ItemAcknowledged ItemState = "acknowledged"
	// ItemNA: it does not apply to this plan.
	ItemNA ItemState = "n/a"
)

// Settled reports whether the item needs nothing more from an operator:
// verified, acknowledged or not applicable.
func (s ItemState) Settled() bool {
	return s == ItemVerified || s == ItemAcknowledged || s == ItemNA
}

// ItemTitle is the checklist item's title.
func ItemTitle(id string) string {
	switch id {
	case ItemHealth503:
		return "Health returns 503 while starting"
	case ItemGraceful:
		return "Graceful shutdown finishes in-flight requests"
	case ItemDraining:
		return "Connection draining configured"
	case ItemMigrations:
		return "Migrations additive-only, run before the switch"
	case ItemCacheNS:
		return "Cache keys namespaced by release"
	case ItemIdempotent:
		return "Background jobs idempotent"
	case ItemAutoRollback:
		return "Automated rollback trigger configured"
	case ItemSmoke:
		return "Post-deploy smoke test passed"
	}
	return id
}

// Ack is an operator's acknowledgement of a checklist item, with a reason.
type Ack struct {
	By     string
	Reason string
}

// BlockedError is a deploy refused by a safety rule (the checklist, the
// 3-2-1 rule); nothing was touched.
type BlockedError struct{ Reason string }

func (e *BlockedError) Error() string { return "deploy blocked: " + e.Reason }

// MigrationFindings scans the plan's migration files for destructive
// statements (paths relative to the plan's directory).
func MigrationFindings(p *plan.Plan) ([]string, error) {
	if len(p.Migrations) == 0 {
		return nil, nil
	}
	paths := make([]string, len(p.Migrations))
	for i, m := range p.Migrations {
		paths[i] = resolve(p.Dir, m)
	}
	fs, err := checklist.ScanMigrations(paths)
	if err != nil {
		return nil, fmt.Errorf("scan migrations: %w", err)
	}
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.String()
	}
	return out, nil
}

// PlanChecklist is the checklist as far as the plan alone can tell: what
// is verified from the plan, what will be observed during the run, and
// what needs an operator's acknowledgement.
func PlanChecklist(p *plan.Plan, env *plan.Environment, findings []string, acks map[string]Ack) []ChecklistItem {
	required := map[string]bool{}
	if p.Checklist != nil {
		for _, id := range p.Checklist.Required {
			required[id] = true
		}
	}
	item := func(id string, state ItemState, evidence string) ChecklistItem {
		it := ChecklistItem{ID: id, Title: ItemTitle(id), State: state, Evidence: evidence, Required: required[id]}
		if a, ok := acks[id]; ok && state != ItemVerified {
			it.State, it.AckBy, it.Evidence = ItemAcknowledged, a.By, joinNonEmpty(evidence, "acknowledged: "+a.Reason)
		}
		return it
	}
	routed := env.Router.Configured()
	var items []ChecklistItem

	if routed || (p.Health != nil && p.Health.URL != "") {
		items = append(items, item(ItemHealth503, ItemUnknown, "observed at each switch: non-2xx (or refused) until ready"))
	} else {
		items = append(items, item(ItemHealth503, ItemUnknown, "no health check in the plan: acknowledge, or add health: or a router"))
	}
	if env.Probe != nil {
		items = append(items, item(ItemGraceful, ItemUnknown, "observed: restarts under probe traffic must lose no request"))
	} else {
		items = append(items, item(ItemGraceful, ItemUnknown, "no probe traffic to observe it: acknowledge, or add probe:"))
	}
	switch {
	case !routed:
		items = append(items, item(ItemDraining, ItemNA, "no router: nothing to drain"))
	default:
		d := env.Router.Drain.Duration
		if d == 0 {
			d = env.Strategy.Drain.Duration
		}
		how := "router drains"
		switch env.Router.KindOrDefault() {
		case plan.RouterHAProxy:
			how = "HAProxy drains each server (state drain until its sessions reach 0)"
		case plan.RouterNginx:
			how = "nginx marks the server down and reloads gracefully (old workers finish their requests), waiting"
		}
		if d >= 30*time.Second && d <= 60*time.Second {
			items = append(items, item(ItemDraining, ItemVerified, fmt.Sprintf("%s for up to %s", how, d)))
		} else {
			items = append(items, item(ItemDraining, ItemVerified, fmt.Sprintf("%s for up to %s (warning: outside the usual 30–60 s)", how, d)))
		}
	}
	switch {
	case len(findings) > 0:
		items = append(items, item(ItemMigrations, ItemFailed, strings.Join(findings, "\n")))
	case len(p.Migrations) > 0:
		items = append(items, item(ItemMigrations, ItemVerified, fmt.Sprintf("%s: additive only; the migrate hook runs before the switch", strings.Join(p.Migrations, ", "))))
	case len(p.Hooks.Migrate) > 0:
		items = append(items, item(ItemMigrations, ItemUnknown, "the migrate hook runs before the switch; name the files in migrations: to scan them"))
	default:
		items = append(items, item(ItemMigrations, ItemNA, "no migrations in the plan"))
	}
	if p.CacheNamespaceEnv != "" {
		items = append(items, item(ItemCacheNS, ItemUnknown, fmt.Sprintf("the service must report %s=RELEASE_VERSION on /version", p.CacheNamespaceEnv)))
	} else {
		items = append(items, item(ItemCacheNS, ItemUnknown, "RELEASE_VERSION is exported to hooks and processes; acknowledge, or set cache_namespace_env"))
	}
	items = append(items, item(ItemIdempotent, ItemUnknown, "only an operator can tell: acknowledge"))
	if ar := env.AutoRollback; ar != nil {
		var cond []string
		if ar.ErrorRate.Set {
			cond = append(cond, fmt.Sprintf("error rate > %g%%", ar.ErrorRate.Value))
		}
		if ar.P99.Duration > 0 {
			cond = append(cond, fmt.Sprintf("p99 > %s", ar.P99.Duration))
		}
		items = append(items, item(ItemAutoRollback, ItemVerified, strings.Join(cond, " or ")+" for "+ar.For.Duration.String()))
	} else {
		items = append(items, item(ItemAutoRollback, ItemFailed, "no auto_rollback in the plan"))
	}
	if len(p.Smoke) > 0 {
		items = append(items, item(ItemSmoke, ItemUnknown, fmt.Sprintf("%d smoke checks run against the new release before traffic", len(p.Smoke))))
	} else {
		items = append(items, item(ItemSmoke, ItemUnknown, "no smoke checks in the plan: acknowledge, or add smoke:"))
	}
	return items
}

func joinNonEmpty(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, " · ")
}

// blockingItems lists required items that are failed or not yet settled.
func blockingItems(s *State) []ChecklistItem {
	var out []ChecklistItem
	for _, it := range s.Checklist {
		if it.Required && (it.State == ItemFailed || it.State == ItemUnknown) {
			out = append(out, it)
		}
	}
	return out
}

// blockReason says why required checklist items hold a promotion.
func blockReason(items []ChecklistItem) string {
	var parts []string
	for _, it := range items {
		parts = append(parts, fmt.Sprintf("%s is %s", it.ID, it.State))
	}
	return "promotion held by the checklist: " + strings.Join(parts, ", ") + " (acknowledge with space in the cockpit, or fix it)"
}

// finishedIn reports whether release finished successfully in env, from
// the journal.
func finishedIn(ctx context.Context, st StateBackend, env, release string) (bool, error) {
	runs, err := st.ListRuns(ctx)
	if err != nil {
		return false, err
	}
	for _, r := range runs {
		if r.Env == env && r.Kind == KindDeploy && r.Release == release && r.Outcome == OutcomeSucceeded {
			return true, nil
		}
	}
	return false, nil
}
