package engine

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// waitReady waits until the restarted service answers its health check
// directly (not through the router), so that smoke tests see it ready.
func (x *executor) waitReady(ctx context.Context, h Host, backend string) error {
	url := "http://" + backend + "/healthz"
	if hc := x.plan.Health; hc != nil && hc.URL != "" {
		url = strings.NewReplacer("{host}", h.Name(), "{backend}", backend).Replace(hc.URL)
	}
	return PollHealth(ctx, url, x.healthTimeout(), 50*time.Millisecond)
}

// health polls the plan's health URL of a host that is not behind the
// router ({host} and {backend} in the URL are replaced).
func (x *executor) health(ctx context.Context, h Host, backend, release string) error {
	hc := x.plan.Health
	if hc == nil || hc.URL == "" {
		return nil
	}
	x.hostSend(h, Event{Type: EvHostPhase, Phase: PhaseHealth, Release: release})
	url := strings.NewReplacer("{host}", h.Name(), "{backend}", backend).Replace(hc.URL)
	return PollHealth(ctx, url, x.healthTimeout(), hc.Interval.Duration)
}

// waitHealthy waits until the router has addr in rotation and healthy.
func (x *executor) waitHealthy(ctx context.Context, addr string) error {
	hctx, cancel := context.WithTimeout(ctx, x.healthTimeout())
	defer cancel()
	if err := x.router.WaitHealthy(hctx, addr); err != nil {
		return fmt.Errorf("health of %s: %w", addr, err)
	}
	return nil
}

func (x *executor) healthTimeout() time.Duration {
	if hc := x.plan.Health; hc != nil && hc.Timeout.Duration > 0 {
		return hc.Timeout.Duration
	}
	return 30 * time.Second
}

func (x *executor) drainTimeout() time.Duration {
	if rc := x.env.Router; rc != nil && rc.Drain.Duration > 0 {
		return rc.Drain.Duration
	}
	if d := x.env.Strategy.Drain.Duration; d > 0 {
		return d
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
