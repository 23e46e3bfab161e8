package router

import (
	"context"
	"io"
	"net/http"
	"net/http/httputil"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// backend is one upstream address. It lives as long as it is in a pool;
// snapshots share it, so its health, drain flag and in-flight count are
// atomics read by the request path.
type backend struct {
	addr    string
	release string

	healthy  atomic.Bool
	draining atomic.Bool
	// lastHealthy is when the backend last passed a health check (unix ns;
	// 0 if never): panic routing only trusts backends that were healthy
	// recently.
	lastHealthy atomic.Int64
	inflight    atomic.Int64

	conns      *connPool              // the request path's keep-alive connections
	proxy      *httputil.ReverseProxy // serves protocol upgrades only (see needsReverseProxy)
	codes      [6]prometheus.Counter
	connErrors prometheus.Counter

	recheck chan struct{} // asks the health checker for a check now
	stop    context.CancelFunc
	done    chan struct{} // closed when the health checker returned
}

func (b *backend) inRotation() bool { return b.healthy.Load() && !b.draining.Load() }

// checkNow asks for an immediate health check without blocking.
func (b *backend) checkNow() {
	select {
	case b.recheck <- struct{}{}:
	default:
	}
}

// healthLoop checks the backend immediately, then every interval (or when
// asked), until ctx ends. One success puts the backend in rotation;
// failures consecutive failures take it out.
func (r *Router) healthLoop(ctx context.Context, b *backend) {
	defer close(b.done)
	url := "http://" + b.addr + r.cfg.HealthPath
	timer := time.NewTimer(0)
	defer timer.Stop()
	fails := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-b.recheck:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
		b.conns.reap(time.Now())
		ok := r.checkOnce(ctx, url)
		if ctx.Err() != nil {
			return
		}
		switch {
		case ok:
			fails = 0
			b.lastHealthy.Store(time.Now().UnixNano())
			if !b.healthy.Swap(true) {
				r.log.Info("backend healthy: in rotation", "release", b.release, "backend", b.addr)
			}
		default:
			fails++
			if fails >= r.cfg.HealthFailures && b.healthy.Swap(false) {
				r.log.Warn("backend unhealthy: out of rotation", "release", b.release, "backend", b.addr, "failures", fails)
			}
		}
		timer.Reset(r.cfg.HealthInterval)
	}
}

func (r *Router) checkOnce(ctx context.Context, url string) bool {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.HealthTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	req.Header.Set("User-Agent", "flightdeck-router-health")
	resp, err := r.healthClient.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 300
}
