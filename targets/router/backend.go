package router

import (
	"context"
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
	// stats count the requests this backend answered (no histogram
	// observer: the Prometheus series are per release).
	stats releaseStats

	conns      *connPool              // the request path's keep-alive connections
	health     *connPool              // the health checks' own connection
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
		b.health.reap(time.Now())
		ok := r.checkOnce(ctx, b)
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
		timer.Reset(untilNextRound(time.Now(), r.cfg.HealthInterval))
	}
}

// untilNextRound is the wait until the next round of health checks. Every
// backend's checks share one phase (multiples of the interval since the
// Unix epoch), so that a round wakes the router once and the answers come
// back together, instead of a wakeup per backend at scattered times.
func untilNextRound(now time.Time, interval time.Duration) time.Duration {
	return interval - time.Duration(now.UnixNano()%int64(interval))
}

// checkOnce sends one health check to b over the router's own client, on
// the checks' own kept-alive connection (so that a check never takes one
// the request path was about to use): healthy means a 2xx answer within
// cfg.HealthTimeout.
func (r *Router) checkOnce(ctx context.Context, b *backend) bool {
	c, _, err := b.health.get(ctx, false, true)
	if err != nil {
		return false
	}
	stop := context.AfterFunc(ctx, c.interruptFn)
	pw := r.getWriter()
	ok, reusable := r.health(pw, c)
	r.putWriter(pw)
	if !stop() || c.interrupted.Load() {
		reusable = false
	}
	if reusable {
		b.health.put(c, time.Now())
	} else {
		c.nc.Close()
	}
	return ok
}

// maxHealthBody bounds the health answer body read to keep the connection.
const maxHealthBody = 64 << 10

// health does one health-check exchange on c, parsing with pw's scratch.
func (r *Router) health(pw *proxyWriter, c *upConn) (ok, reusable bool) {
	c.nc.SetDeadline(time.Now().Add(r.cfg.HealthTimeout))
	bw := c.bw
	bw.WriteString("GET ")
	bw.WriteString(r.cfg.HealthPath)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(c.pool.addr)
	bw.WriteString("\r\nUser-Agent: flightdeck-router-health\r\n\r\n")
	if bw.Flush() != nil {
		return false, false
	}
	code, minor := 0, 0
	for n := 0; code < 200; n++ {
		var err error
		if code, minor, _, err = pw.readHead(c.br); err != nil || n > max1xx || code == http.StatusSwitchingProtocols {
			return false, false
		}
	}
	f := pw.frame(http.MethodGet, code, minor)
	ok = !f.invalid && code >= 200 && code < 300
	switch {
	case f.invalid:
		return false, false
	case f.kind == bodyFixed && f.length <= maxHealthBody:
		if _, err := copyN(discard{}, c.br, f.length, false); err != nil {
			return ok, false
		}
	case f.kind == bodyChunked:
		if readErr, _ := pw.copyChunked(c.br, discard{}); readErr != nil {
			return ok, false
		}
	case f.kind != bodyNone:
		return ok, false // read until close, or too long to bother
	}
	c.nc.SetDeadline(time.Time{})
	return ok, f.reusable
}
