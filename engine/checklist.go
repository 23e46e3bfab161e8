package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
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
	routed := env.Router != nil && env.Router.Admin != ""
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
		if d >= 30*time.Second && d <= 60*time.Second {
			items = append(items, item(ItemDraining, ItemVerified, fmt.Sprintf("router drains for up to %s", d)))
		} else {
			items = append(items, item(ItemDraining, ItemVerified, fmt.Sprintf("router drains for up to %s (warning: outside the usual 30–60 s)", d)))
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

// checkPromotion enforces the 3-2-1 rule's first part: a release reaches
// an environment only after the same release finished successfully in the
// one before it.
func checkPromotion(stateDir string, p *plan.Plan, env, release string) error {
	order := p.PromotionOrder()
	i := slices.Index(order, env)
	if i <= 0 {
		return nil
	}
	before := order[i-1]
	runs, err := ListRuns(stateDir)
	if err != nil {
		return err
	}
	for _, r := range runs {
		if r.Env == before && r.Kind == KindDeploy && r.Release == release && r.Outcome == OutcomeSucceeded {
			return nil
		}
	}
	return &BlockedError{Reason: fmt.Sprintf("release %s has not finished in %s, the environment before %s (3-2-1 rule); deploy it there first, or override with --skip-promotion-check --reason TEXT", release, before, env)}
}

// migrate runs the plan's migrate hooks once per run, before the first
// host is switched: on that host, or on this machine for local hooks.
// Hosts switching at the same time wait for it.
func (r *Run) migrate(ctx context.Context, h Host, release string) error {
	hooks := r.cfg.Plan.Hooks.Migrate
	if len(hooks) == 0 {
		return nil
	}
	r.migrateMu.Lock()
	defer r.migrateMu.Unlock()
	if r.migrated {
		return r.migrateErr
	}
	r.migrated = true
	where := h.Name()
	for _, hk := range hooks {
		var err error
		if hk.Local {
			where = "this machine"
			err = r.execLocal(ctx, h, "migrate", hk, release)
		} else {
			err = r.exec(ctx, h, "migrate", hk, release)
		}
		if err != nil {
			r.migrateErr = err
			return err
		}
	}
	it := ChecklistItem{ID: ItemMigrations, Title: ItemTitle(ItemMigrations), State: ItemVerified,
		Evidence: fmt.Sprintf("migrate hook ran on %s before the first switch", where)}
	for _, cur := range r.planItems {
		if cur.ID == ItemMigrations && cur.State == ItemFailed {
			it = cur // destructive findings were acknowledged or will block; keep them visible
		}
	}
	r.sendItem(it)
	return nil
}

// observe records run observations for the checklist (executor side).
type observations struct {
	health503, healthSwitches int
	restarts, slowRestarts    int
	smokeDone                 bool
	smokeErr                  error
	cacheChecked              bool
}

// observeHealth GETs the backend's health URL once right after a restart:
// a non-2xx answer or a refused connection shows that the service reports
// "not ready" while starting.
func (r *Run) observeHealth(ctx context.Context, backend string) {
	if backend == "" {
		return
	}
	url := "http://" + backend + "/healthz"
	if hc := r.cfg.Plan.Health; hc != nil && hc.URL != "" {
		url = strings.NewReplacer("{backend}", backend).Replace(hc.URL)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	notReady := true
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err == nil {
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			notReady = resp.StatusCode < 200 || resp.StatusCode > 299
		}
	}
	r.obsMu.Lock()
	r.obs.healthSwitches++
	if notReady {
		r.obs.health503++
	}
	n, of := r.obs.health503, r.obs.healthSwitches
	r.obsMu.Unlock()
	it := ChecklistItem{ID: ItemHealth503, Title: ItemTitle(ItemHealth503), State: ItemVerified,
		Evidence: fmt.Sprintf("%d of %d restarted services answered non-2xx (or refused) before they were ready", n, of)}
	if n == 0 {
		// Ready at once is no violation, but it shows nothing either.
		it.State = ItemUnknown
		it.Evidence = fmt.Sprintf("%d restarted services were ready at once: no 503 could be observed; acknowledge, or add a start-up delay check", of)
	}
	r.sendItem(it)
}

// sendItem reports a checklist item from an executor goroutine, keeping
// its Required flag and any acknowledgement.
func (r *Run) sendItem(it ChecklistItem) {
	r.send("#checklist", false, Event{Type: EvChecklistItem, Item: &it})
}

// runSmoke runs the plan's smoke checks once, against the first host that
// has the new release and no traffic yet. A failing check fails the host.
func (r *Run) runSmoke(ctx context.Context, h Host, backend, release string) error {
	if len(r.cfg.Plan.Smoke) == 0 {
		return nil
	}
	r.obsMu.Lock()
	if r.obs.smokeDone {
		err := r.obs.smokeErr
		r.obsMu.Unlock()
		return err
	}
	r.obs.smokeDone = true
	r.obsMu.Unlock()
	var passed []string
	var err error
	for _, sc := range r.cfg.Plan.Smoke {
		name := sc.Name
		if name == "" {
			name = sc.URL + sc.Run
		}
		if err = r.smokeOne(ctx, h, sc, backend, release); err != nil {
			err = fmt.Errorf("smoke test %s: %w", name, err)
			break
		}
		passed = append(passed, name)
	}
	it := ChecklistItem{ID: ItemSmoke, Title: ItemTitle(ItemSmoke), State: ItemVerified,
		Evidence: fmt.Sprintf("%d checks passed on %s before traffic: %s", len(passed), h.Name(), strings.Join(passed, ", "))}
	if err != nil {
		it.State, it.Evidence = ItemFailed, err.Error()
	}
	r.obsMu.Lock()
	r.obs.smokeErr = err
	r.obsMu.Unlock()
	r.sendItem(it)
	return err
}

func (r *Run) smokeOne(ctx context.Context, h Host, sc plan.SmokeCheck, backend, release string) error {
	timeout := sc.Timeout.Duration
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if sc.Run != "" {
		return r.exec(ctx, h, "smoke", plan.Hook{Run: sc.Run, Timeout: sc.Timeout}, release)
	}
	url := strings.NewReplacer("{backend}", backend, "{host}", h.Name()).Replace(sc.URL)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	want := sc.Status
	if want == 0 {
		want = http.StatusOK
	}
	if resp.StatusCode != want {
		return fmt.Errorf("GET %s: status %d, want %d", url, resp.StatusCode, want)
	}
	if sc.Body != "" && !strings.Contains(string(body), sc.Body) {
		return fmt.Errorf("GET %s: body does not contain %q", url, sc.Body)
	}
	return nil
}

// checkCacheNamespace asks the new release's service for its cache
// namespace on /version; it must be the release id.
func (r *Run) checkCacheNamespace(ctx context.Context, backend, release string) {
	if r.cfg.Plan.CacheNamespaceEnv == "" || backend == "" {
		return
	}
	r.obsMu.Lock()
	done := r.obs.cacheChecked
	r.obs.cacheChecked = true
	r.obsMu.Unlock()
	if done {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	it := ChecklistItem{ID: ItemCacheNS, Title: ItemTitle(ItemCacheNS), State: ItemFailed}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+backend+"/version", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		it.Evidence = "GET /version: " + err.Error()
		r.sendItem(it)
		return
	}
	defer resp.Body.Close()
	var v struct {
		CacheNamespace string `json:"cache_namespace"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&v); err != nil {
		it.Evidence = "GET /version: " + err.Error()
	} else if v.CacheNamespace != release {
		it.Evidence = fmt.Sprintf("the service reports cache namespace %q, not the release %q", v.CacheNamespace, release)
	} else {
		it.State, it.Evidence = ItemVerified, fmt.Sprintf("the service reports cache namespace %s", release)
	}
	r.sendItem(it)
}

// verifyRollbackPath checks, before any switch, that every host still has
// its previous release complete and intact (its manifest hashes): the one
// instant rollback path of the 3-2-1 rule.
func (r *Run) verifyRollbackPath(ctx context.Context) error {
	type res struct {
		host string
		err  error
	}
	out := make(chan res, len(r.cfg.Hosts))
	n := 0
	for _, h := range r.cfg.Hosts {
		prev := r.previousOf(h.Name())
		if prev == "" {
			continue // first release on this host: there is nothing to go back to
		}
		n++
		go func() {
			r.sem <- struct{}{}
			defer func() { <-r.sem }()
			out <- res{h.Name(), h.Verify(ctx, prev)}
		}()
	}
	var bad []string
	for range n {
		if x := <-out; x.err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", x.host, x.err))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	slices.Sort(bad)
	return errors.New("no rollback path: the previous release is missing or damaged on " + strings.Join(bad, "; "))
}

// finalChecklist settles what the whole run showed (graceful shutdown under
// probe traffic).
func (r *Run) finalChecklist(rep *Report) []Event {
	var evs []Event
	cur := map[string]ChecklistItem{}
	for _, it := range r.state.Checklist {
		cur[it.ID] = it
	}
	if it, ok := cur[ItemGraceful]; ok && it.State == ItemUnknown && rep.Probe != nil && r.obs.healthSwitches > 0 {
		it.State = ItemVerified
		it.Evidence = fmt.Sprintf("%d services restarted under %g req/s of probe traffic; %d of %d probe requests failed", r.obs.healthSwitches, rep.Probe.Rate, rep.Probe.Failed, rep.Probe.Requests)
		if rep.Probe.Failed > 0 {
			it.State = ItemFailed
		}
		evs = append(evs, Event{Type: EvChecklistItem, Item: &it})
	}
	return evs
}
