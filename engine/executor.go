package engine

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"flightdeck/engine/plan"
)

// execute performs one host action on its own goroutine and reports every
// step to the run loop as events. The last report has done set.
func (r *Run) execute(ctx context.Context, h Host, a Action) {
	var err error
	switch a.Kind {
	case ActPrepare:
		err = r.doPrepare(ctx, h, a)
	case ActSwitch:
		err = r.doSwitch(ctx, h, a, "deploy")
	case ActRevert:
		err = r.doRevert(ctx, h, a)
	case ActStandby:
		err = r.doStandby(ctx, h, a)
	}
	if err != nil {
		r.send(h.Name(), true, Event{Type: EvHostPhase, Phase: PhaseFailed, Release: a.Release, Error: err.Error(), Command: a.Kind.String()})
		if hooks := r.cfg.Plan.Hooks.OnFailure; len(hooks) > 0 {
			_ = r.runHooks(ctx, h, "on_failure", hooks, a.Release)
		}
		return
	}
	r.send(h.Name(), true)
}

func (r *Run) doPrepare(ctx context.Context, h Host, a Action) error {
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-r.sem }()
	r.send(h.Name(), false, Event{Type: EvHostPhase, Phase: PhasePreparing, Release: a.Release})
	if err := r.runHooks(ctx, h, "before_prepare", r.cfg.Plan.Hooks.BeforePrepare, a.Release); err != nil {
		return err
	}
	var (
		mu   sync.Mutex
		last Progress
	)
	err := h.Prepare(ctx, r.cfg.Artifact, func(p Progress) {
		mu.Lock()
		last = p
		mu.Unlock()
		r.send(h.Name(), false, Event{Type: EvHostPhase, Phase: PhasePreparing, Release: a.Release, Progress: &p})
	})
	if err != nil {
		return fmt.Errorf("prepare %s: %w", a.Release, err)
	}
	if err := r.runHooks(ctx, h, "after_prepare", r.cfg.Plan.Hooks.AfterPrepare, a.Release); err != nil {
		return err
	}
	mu.Lock()
	final := last
	mu.Unlock()
	r.send(h.Name(), false, Event{Type: EvHostPhase, Phase: PhasePrepared, Release: a.Release, Progress: &final,
		Message: fmt.Sprintf("%d files, %s sent", final.FilesTotal, humanBytes(final.BytesSent))})
	return nil
}

// doSwitch takes a host through drain → before_switch → switch → restart →
// health → undrain → after_switch. In a slot strategy the release already
// runs in the host's slot (or the old colour is still warm), so only the
// current link flips.
func (r *Run) doSwitch(ctx context.Context, h Host, a Action, action string) error {
	name := h.Name()
	prev := r.previousOf(name)
	rh := r.runHost(name)
	phase := PhaseSwitching
	if action == "rollback" {
		phase = PhaseReverting
	}
	info := SwitchInfo{Release: a.Release, Previous: prev, Actor: r.actorFor(action), Action: action}
	if action == "rollback" && r.state.Info.Kind == KindDeploy {
		info.Previous = r.state.Info.Release // the release this run is taking back
	}
	if slotStrategy(r.cfg.Env) && rh.Slot != "" {
		if action == "deploy" {
			if err := r.runHooks(ctx, h, "before_switch", r.cfg.Plan.Hooks.BeforeSwitch, a.Release); err != nil {
				return err
			}
		}
		r.send(name, false, Event{Type: EvHostPhase, Phase: phase, Release: a.Release})
		if err := h.Switch(ctx, info); err != nil {
			return fmt.Errorf("switch to %s: %w", a.Release, err)
		}
		if action == "deploy" {
			if err := r.runHooks(ctx, h, "after_switch", r.cfg.Plan.Hooks.AfterSwitch, a.Release); err != nil {
				return err
			}
			r.send(name, false, Event{Type: EvHostPhase, Phase: PhaseLive, Release: a.Release})
		}
		return nil
	}
	backend := rh.Backend
	if backend == "" {
		backend = r.cfg.Backends[name]
	}
	routed := r.traffic != nil && backend != ""
	if routed && r.traffic.releaseOf(backend) != "" {
		r.send(name, false, Event{Type: EvHostPhase, Phase: PhaseDraining, Release: a.Release})
		if err := r.cfg.Router.Drain(ctx, backend, r.drainTimeout()); err != nil {
			return fmt.Errorf("drain %s: %w", backend, err)
		}
	}
	if action == "deploy" {
		if err := r.migrate(ctx, h, a.Release); err != nil {
			return err
		}
		if err := r.runHooks(ctx, h, "before_switch", r.cfg.Plan.Hooks.BeforeSwitch, a.Release); err != nil {
			return err
		}
	}
	r.send(name, false, Event{Type: EvHostPhase, Phase: phase, Release: a.Release})
	if err := h.Switch(ctx, info); err != nil {
		return fmt.Errorf("switch to %s: %w", a.Release, err)
	}
	if cmd := r.cfg.Plan.Restart; cmd != "" {
		r.send(name, false, Event{Type: EvHostPhase, Phase: PhaseRestart, Release: a.Release})
		if err := r.exec(ctx, h, "restart", plan.Hook{Run: cmd}, a.Release, slotEnv(RunHost{Backend: backend})); err != nil {
			return err
		}
		if action == "deploy" {
			r.observeHealth(ctx, backend)
		}
	}
	if action == "deploy" && backend != "" {
		// Before the host takes traffic: smoke tests and the cache namespace.
		if err := r.waitReady(ctx, h, backend, a.Release); err != nil {
			return err
		}
		if err := r.runSmoke(ctx, h, backend, a.Release); err != nil {
			return err
		}
		r.checkCacheNamespace(ctx, backend, a.Release)
	}
	if routed {
		r.send(name, false, Event{Type: EvHostPhase, Phase: PhaseHealth, Release: a.Release})
		if err := r.traffic.move(ctx, backend, a.Release); err != nil {
			return err
		}
		if err := r.cfg.Router.Undrain(ctx, backend); err != nil {
			return fmt.Errorf("undrain %s: %w", backend, err)
		}
		if err := r.waitHealthy(ctx, backend); err != nil {
			return err
		}
		if !trafficStrategy(r.cfg.Env) || r.state.Info.Kind == KindRollback {
			if err := r.rebalance(ctx); err != nil {
				return err
			}
		}
	} else if err := r.health(ctx, h, backend, a.Release); err != nil {
		return err
	}
	if action == "deploy" {
		if err := r.runHooks(ctx, h, "after_switch", r.cfg.Plan.Hooks.AfterSwitch, a.Release); err != nil {
			return err
		}
		r.send(name, false, Event{Type: EvHostPhase, Phase: PhaseLive, Release: a.Release})
	}
	return nil
}

// waitReady waits until the restarted service answers its health check
// directly (not through the router), so that smoke tests see it ready.
func (r *Run) waitReady(ctx context.Context, h Host, backend, release string) error {
	if len(r.cfg.Plan.Smoke) == 0 && r.cfg.Plan.CacheNamespaceEnv == "" {
		return nil
	}
	url := "http://" + backend + "/healthz"
	if hc := r.cfg.Plan.Health; hc != nil && hc.URL != "" {
		url = strings.NewReplacer("{host}", h.Name(), "{backend}", backend).Replace(hc.URL)
	}
	return PollHealth(ctx, url, r.healthTimeout(), 50*time.Millisecond)
}

// execLocal runs a hook on this machine (hooks with local: true).
func (r *Run) execLocal(ctx context.Context, h Host, stage string, hk plan.Hook, release string) error {
	timeout := hk.Timeout.Duration
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	w := &lineWriter{emit: func(line string) {
		r.send(h.Name(), false, Event{Type: EvHostOutput, Release: release, Command: stage + " (local)", Message: line})
	}, max: maxOutputLines}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", hk.Run)
	cmd.Dir = r.cfg.Plan.Dir
	cmd.Env = os.Environ()
	for k, v := range r.hookEnv(h, release) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = w, w
	err := cmd.Run()
	w.Flush()
	if err != nil {
		return fmt.Errorf("%s (local) %q: %w%s", stage, hk.Run, err, w.tail())
	}
	return nil
}

// rebalance (rolling and symlink deploys, and rollback runs) splits
// traffic by capacity: the run's release gets the share of backends that
// run it, so no request waits for a pool that is being emptied.
func (r *Run) rebalance(ctx context.Context) error {
	info := r.state.Info
	if info.Previous == "" || info.Previous == info.Release {
		return nil
	}
	w := r.traffic.share(info.Release, info.Previous)
	route := Route{Stable: info.Previous, Candidate: info.Release, Weight: w}
	if w == 0 {
		route.Candidate = ""
	}
	if err := r.traffic.setRoute(ctx, route); err != nil {
		return err
	}
	r.send("", false, Event{Type: EvWeightSet, Weight: ptr(w), Release: info.Release,
		Message: fmt.Sprintf("%.0f%% of traffic → %s (capacity)", w, info.Release)})
	return nil
}

func (r *Run) doRevert(ctx context.Context, h Host, a Action) error {
	st, err := h.Inspect(ctx)
	if err != nil {
		return fmt.Errorf("inspect before rollback: %w", err)
	}
	if st.Current == a.Release {
		r.send(h.Name(), false, Event{Type: EvHostPhase, Phase: PhaseReverted, Release: a.Release, Message: "already on " + a.Release})
		return nil
	}
	found := false
	for _, id := range st.Releases {
		found = found || id == a.Release
	}
	if !found {
		return fmt.Errorf("release %s is not on this host (it has %s)", a.Release, strings.Join(st.Releases, ", "))
	}
	if err := r.doSwitch(ctx, h, a, "rollback"); err != nil {
		return err
	}
	if err := r.runHooks(ctx, h, "after_rollback", r.cfg.Plan.Hooks.AfterRollback, a.Release); err != nil {
		return err
	}
	r.send(h.Name(), false, Event{Type: EvHostPhase, Phase: PhaseReverted, Release: a.Release})
	return nil
}

// previousOf is the host's release before the run. Hosts' Previous fields are
// written only when the run starts, so reading them here is race-free.
func (r *Run) previousOf(host string) string {
	for _, h := range r.state.Info.Hosts {
		if h.Name == host {
			return h.Current
		}
	}
	return ""
}

func (r *Run) actorFor(action string) string {
	if action == "rollback" && r.cfg.Kind == KindDeploy {
		return "flightdeck"
	}
	return r.cfg.Actor.Name
}

func (r *Run) drainTimeout() time.Duration {
	if rc := r.cfg.Env.Router; rc != nil && rc.Drain.Duration > 0 {
		return rc.Drain.Duration
	}
	if d := r.cfg.Env.Strategy.Drain.Duration; d > 0 {
		return d
	}
	return 30 * time.Second
}

// health polls the plan's health URL of a host that is not behind the
// router ({host} and {backend} in the URL are replaced).
func (r *Run) health(ctx context.Context, h Host, backend, release string) error {
	hc := r.cfg.Plan.Health
	if hc == nil || hc.URL == "" {
		return nil
	}
	r.send(h.Name(), false, Event{Type: EvHostPhase, Phase: PhaseHealth, Release: release})
	url := strings.NewReplacer("{host}", h.Name(), "{backend}", backend).Replace(hc.URL)
	return PollHealth(ctx, url, r.healthTimeout(), hc.Interval.Duration)
}

func (r *Run) healthTimeout() time.Duration {
	if hc := r.cfg.Plan.Health; hc != nil && hc.Timeout.Duration > 0 {
		return hc.Timeout.Duration
	}
	return 30 * time.Second
}

// PollHealth GETs url until it answers 2xx or timeout passes. 503 and
// refused connections mean "not ready yet".
func PollHealth(ctx context.Context, url string, timeout, interval time.Duration) error {
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("health check %s: %w", url, err)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode >= 200 && resp.StatusCode < 300 {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("health check %s not ready after %s (last: %s)", url, timeout, last)
		case <-time.After(interval):
		}
	}
}

func (r *Run) hookEnv(h Host, release string) map[string]string {
	return map[string]string{
		"RELEASE_VERSION":  release,
		"RELEASE_PATH":     h.ReleasePath(release),
		"PREVIOUS_RELEASE": r.previousOf(h.Name()),
		"ENVIRONMENT":      r.cfg.Env.Name,
		"HOST":             h.Name(),
		"APP":              r.cfg.Plan.App,
	}
}

func (r *Run) runHooks(ctx context.Context, h Host, stage string, hooks []plan.Hook, release string) error {
	for _, hk := range hooks {
		if err := r.exec(ctx, h, stage, hk, release); err != nil {
			return err
		}
	}
	return nil
}

// maxOutputLines bounds how much of one command's output is journaled.
const maxOutputLines = 200

// exec runs a hook or restart command on the host, streaming its output
// into the journal as HostOutput events.
func (r *Run) exec(ctx context.Context, h Host, stage string, hk plan.Hook, release string, extra ...map[string]string) error {
	timeout := hk.Timeout.Duration
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	w := &lineWriter{emit: func(line string) {
		r.send(h.Name(), false, Event{Type: EvHostOutput, Release: release, Command: stage, Message: line})
	}, max: maxOutputLines}
	env := r.hookEnv(h, release)
	for _, m := range extra {
		for k, v := range m {
			env[k] = v
		}
	}
	err := h.Exec(ctx, ExecRequest{Command: hk.Run, Env: env, Timeout: timeout, Output: w})
	w.Flush()
	if err != nil {
		return fmt.Errorf("%s %q: %w%s", stage, hk.Run, err, w.tail())
	}
	return nil
}

// lineWriter turns a command's output into one event per line.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	emit  func(string)
	n     int
	max   int
	lines []string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		i := bytes.IndexByte(w.buf.Bytes(), '\n')
		if i < 0 {
			break
		}
		w.line(string(w.buf.Next(i + 1)[:i]))
	}
	return len(p), nil
}

func (w *lineWriter) line(s string) {
	s = strings.TrimRight(s, "\r")
	w.lines = append(w.lines, s)
	if len(w.lines) > 5 {
		w.lines = w.lines[1:]
	}
	w.n++
	switch {
	case w.n <= w.max:
		w.emit(s)
	case w.n == w.max+1:
		w.emit(fmt.Sprintf("… output truncated after %d lines", w.max))
	}
}

// Flush emits a last unterminated line.
func (w *lineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf.Len() > 0 {
		w.line(w.buf.String())
		w.buf.Reset()
	}
}

func (w *lineWriter) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.lines) == 0 {
		return ""
	}
	return "\n  " + strings.Join(w.lines, "\n  ")
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
