package haproxy

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"
)

// LogFormat is the log-format flightdeck reads from HAProxy's log ring:
// backend/server, the status sent to the client and the server's
// response time in milliseconds (-1 when it gave none). Other fields may
// come first (a syslog header): the last three are read.
const LogFormat = "%b/%s %ST %Tr"

// parseLogLine reads the last three fields of a request log line.
func parseLogLine(line string) (backend, server string, status int, tr time.Duration, ok bool) {
	f := strings.Fields(line)
	if len(f) < 3 {
		return "", "", 0, 0, false
	}
	bs, st, t := f[len(f)-3], f[len(f)-2], f[len(f)-1]
	backend, server, ok = strings.Cut(bs, "/")
	if !ok {
		return "", "", 0, 0, false
	}
	var err error
	if status, err = strconv.Atoi(st); err != nil {
		return "", "", 0, 0, false
	}
	ms, err := strconv.Atoi(t)
	if err != nil {
		return "", "", 0, 0, false
	}
	tr = -1
	if ms >= 0 {
		tr = time.Duration(ms) * time.Millisecond
	}
	return backend, server, status, tr, true
}

// startRing starts streaming the log ring into the tally (once; it
// reconnects after a reload until Close).
func (r *Router) startRing() {
	if r.cfg.LogRing == "" {
		return
	}
	r.ringMu.Lock()
	defer r.ringMu.Unlock()
	if r.ringOn || r.ringCtx.Err() != nil {
		return
	}
	r.ringOn = true
	ready := make(chan struct{})
	r.ringWG.Add(1)
	go func() {
		defer r.ringWG.Done()
		r.streamRing(ready)
	}()
	// The first Stats call is a measurement's starting point: let the
	// stream connect first, so that the window's requests are all seen.
	select {
	case <-ready:
	case <-time.After(time.Second):
	}
}

func (r *Router) streamRing(ready chan struct{}) {
	ctx := r.ringCtx
	cmd := "show events " + Quote(r.cfg.LogRing) + " -w -n"
	var once sync.Once
	opened := func() { once.Do(func() { close(ready) }) }
	defer opened()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		addrOf, err := r.serverAddrs(ctx)
		if err == nil {
			start := time.Now()
			_ = r.rt.Stream(ctx, cmd, opened, func(line string) {
				b, s, status, tr, ok := parseLogLine(line)
				if !ok {
					return
				}
				for _, a := range addrOf[b+"/"+s] {
					r.tally.Record(a, status, tr)
				}
			})
			if time.Since(start) > 5*time.Second {
				backoff = 100 * time.Millisecond
			}
		}
		if sleep(ctx, backoff) != nil {
			return
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// serverAddrs maps "backend/server" to the addresses the server is known by.
func (r *Router) serverAddrs(ctx context.Context) (map[string][]string, error) {
	r.mu.Lock()
	names := r.names
	r.mu.Unlock()
	if names == nil {
		sn, err := r.snapshot(ctx)
		if err != nil {
			return nil, err
		}
		names = namesOf(sn.servers)
	}
	out := map[string][]string{}
	for a, byBackend := range names {
		for b, n := range byBackend {
			out[b+"/"+n] = append(out[b+"/"+n], a)
		}
	}
	return out, nil
}
