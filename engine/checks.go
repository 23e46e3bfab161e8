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

	"flightdeck/engine/plan"
)

// The checks the executor runs for the checklist and the 3-2-1 rule. They
// report what they observed (Observed events, errors); the step derives
// the checklist from it.

// observeHealth GETs the backend's health URL once right after a restart:
// a non-2xx answer or a refused connection shows that the service reports
// "not ready" while starting.
func (x *executor) observeHealth(ctx context.Context, h Host, backend string) {
	if backend == "" {
		return
	}
	url := "http://" + backend + "/healthz"
	if hc := x.plan.Health; hc != nil && hc.URL != "" {
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
	x.hostSend(h, Event{Type: EvObserved, Observed: &Observation{Kind: ObsHealth, OK: notReady, Note: url}})
}

// runSmoke runs the plan's smoke checks against the host's new release,
// before it takes traffic. A failing check fails the host.
func (x *executor) runSmoke(ctx context.Context, h Host, backend, release string) error {
	var passed []string
	var err error
	for _, sc := range x.plan.Smoke {
		name := sc.Name
		if name == "" {
			name = sc.URL + sc.Run
		}
		if err = x.smokeOne(ctx, h, sc, backend, release); err != nil {
			err = fmt.Errorf("smoke test %s: %w", name, err)
			break
		}
		passed = append(passed, name)
	}
	ob := Observation{Kind: ObsSmoke, OK: err == nil,
		Note: fmt.Sprintf("%d checks passed on %s before traffic: %s", len(passed), h.Name(), strings.Join(passed, ", "))}
	if err != nil {
		ob.Note = err.Error()
	}
	x.hostSend(h, Event{Type: EvObserved, Observed: &ob})
	return err
}

func (x *executor) smokeOne(ctx context.Context, h Host, sc plan.SmokeCheck, backend, release string) error {
	timeout := sc.Timeout.Duration
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if sc.Run != "" {
		return x.exec(ctx, h, "smoke", plan.Hook{Run: sc.Run, Timeout: sc.Timeout}, release)
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
func (x *executor) checkCacheNamespace(ctx context.Context, h Host, backend, release string) {
	if x.plan.CacheNamespaceEnv == "" || backend == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ob := Observation{Kind: ObsCacheNamespace}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+backend+"/version", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ob.Note = "GET /version: " + err.Error()
		x.hostSend(h, Event{Type: EvObserved, Observed: &ob})
		return
	}
	defer resp.Body.Close()
	var v struct {
		CacheNamespace string `json:"cache_namespace"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&v); err != nil {
		ob.Note = "GET /version: " + err.Error()
	} else if v.CacheNamespace != release {
		ob.Note = fmt.Sprintf("the service reports cache namespace %q, not the release %q", v.CacheNamespace, release)
	} else {
		ob.OK, ob.Note = true, fmt.Sprintf("the service reports cache namespace %s", release)
	}
	x.hostSend(h, Event{Type: EvObserved, Observed: &ob})
}

// verifyRollbackPath checks, before any switch, that every host still has
// its previous release complete and intact (its manifest hashes): the one
// instant rollback path of the 3-2-1 rule.
func (x *executor) verifyRollbackPath(ctx context.Context) error {
	type res struct {
		host string
		err  error
	}
	out := make(chan res, len(x.order))
	n := 0
	for _, h := range x.order {
		prev := x.previousOf(h.Name())
		if prev == "" {
			continue // first release on this host: there is nothing to go back to
		}
		n++
		go func() {
			x.verifySem <- struct{}{}
			defer func() { <-x.verifySem }()
			out <- res{h.Name(), h.Verify(ctx, prev)}
		}()
	}
	var bad []string
	for range n {
		if r := <-out; r.err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", r.host, r.err))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	slices.Sort(bad)
	return errors.New("no rollback path: the previous release is missing or damaged on " + strings.Join(bad, "; "))
}
