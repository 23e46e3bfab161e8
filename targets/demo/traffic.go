package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"flightdeck/engine"
	"flightdeck/engine/plan"
	"flightdeck/internal/freeport"
	"flightdeck/targets/haproxy"
	"flightdeck/targets/nginx"
	"flightdeck/targets/router"
)

// traffic is the fleet's traffic layer: the built-in router in this
// process, or a real HAProxy or nginx started for the demo and driven
// exactly as a production one is.
type traffic struct {
	kind string
	dir  string

	router *router.Router // built-in
	admin  string

	listen string // HAProxy's or nginx's frontend
	ngBin  string
	ha     *haproxy.Process
	har    *haproxy.Router
	ng     *nginx.Process
	ngr    *nginx.Router

	rtr   engine.Router
	stats router.StatsFunc
}

// prepareTraffic starts the built-in router, or checks that HAProxy or
// nginx is installed and picks its frontend's address; it sets ProxyURL.
func (f *Fleet) prepareTraffic(ports *freeport.Set) error {
	t := &traffic{kind: f.opts.Router, dir: f.Dir}
	if t.kind == "" {
		t.kind = plan.RouterFlightdeck
	}
	f.traffic = t
	switch t.kind {
	case plan.RouterHAProxy:
		if _, err := haproxy.Binary(); err != nil {
			return fmt.Errorf("the demo --router haproxy runs a real HAProxy: %w", err)
		}
	case plan.RouterNginx:
		bin, err := nginx.Binary()
		if err != nil {
			return fmt.Errorf("the demo --router nginx runs a real nginx: %w", err)
		}
		t.ngBin = bin
	case plan.RouterFlightdeck:
		return f.startRouter()
	default:
		return fmt.Errorf("unknown traffic layer %q: flightdeck, haproxy or nginx", t.kind)
	}
	port, err := ports.Port()
	if err != nil {
		return err
	}
	t.listen = net.JoinHostPort("127.0.0.1", port)
	f.ProxyURL = "http://" + t.listen + "/"
	return nil
}

func (f *Fleet) startRouter() error {
	rdir := filepath.Join(f.Dir, "router")
	if err := os.MkdirAll(rdir, 0o755); err != nil {
		return err
	}
	rt, err := router.New(router.Config{
		StateFile: filepath.Join(rdir, "state.json"), HealthInterval: 100 * time.Millisecond,
		HealthFailures: 2, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return fmt.Errorf("router: %w", err)
	}
	proxyLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		proxyLn.Close()
		return err
	}
	rt.Start(proxyLn, adminLn)
	f.traffic.router = rt
	f.traffic.admin = "http://" + adminLn.Addr().String()
	f.ProxyURL = "http://" + proxyLn.Addr().String() + "/"
	return nil
}

func (t *traffic) haproxySetup() haproxy.Setup {
	return haproxy.Setup{Dir: filepath.Join(t.dir, "haproxy"), Listen: t.listen}
}

func (t *traffic) nginxSetup() nginx.Setup {
	return nginx.Setup{Dir: filepath.Join(t.dir, "nginx"), Listen: t.listen}
}

// planYAML is the plan's router section.
func (t *traffic) planYAML(ab bool) string {
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
	var b strings.Builder
	switch t.kind {
	case plan.RouterHAProxy:
		s := t.haproxySetup()
		fmt.Fprintf(&b, "    router:\n      kind: haproxy\n      socket: %s\n      backend: app\n      log_ring: %s\n", q(s.Socket()), haproxy.RingName)
		if ab {
			fmt.Fprintf(&b, "      cohort_backend: app_cohort\n      cohort_map: %s\n", q(s.Map()))
		}
	case plan.RouterNginx:
		s := t.nginxSetup()
		fmt.Fprintf(&b, "    router:\n      kind: nginx\n      upstream_file: %s\n      upstream: app\n", q(s.UpstreamFile()))
		fmt.Fprintf(&b, "      test_command: %s\n      reload_command: %s\n", q(s.TestCommand(t.ngBin)), q(s.ReloadCommand(t.ngBin)))
		fmt.Fprintf(&b, "      pid_file: %s\n      access_log: %s\n", q(s.PIDFile()), q(s.AccessLog()))
		if ab {
			fmt.Fprintf(&b, "      map_file: %s\n", q(s.MapFile()))
		}
	default:
		fmt.Fprintf(&b, "    router:\n      admin: '%s'\n      token_file: %s\n", t.admin, q(filepath.Join(t.dir, "router", router.DefaultTokenFileName)))
	}
	return b.String()
}

// start connects the traffic layer to the plan's hosts: a client of the
// built-in router, or HAProxy or nginx started with a server per host
// backend and slot, and its adapter.
func (t *traffic) start(ctx context.Context, env *plan.Environment, stateDir string) error {
	ab := env.Strategy.Kind == plan.AB
	switch t.kind {
	case plan.RouterHAProxy:
		s := t.haproxySetup()
		if ab {
			s.CohortHeader, s.CohortHash = env.Strategy.Cohort.Header, env.Strategy.Cohort.Percent > 0
		}
		for _, h := range env.Hosts {
			if h.Backend != "" {
				s.Servers = append(s.Servers, haproxy.SetupServer{Name: h.Name, Addr: h.Backend})
			}
			for _, c := range []string{"blue", "green"} {
				if a := h.Slots[c]; a != "" {
					s.Servers = append(s.Servers, haproxy.SetupServer{Name: h.Name + "_" + c, Addr: a})
				}
			}
		}
		p, err := haproxy.Start(ctx, s)
		if err != nil {
			return err
		}
		t.ha = p
		rc := env.Router
		har, err := haproxy.New(haproxy.Config{Socket: rc.Socket, Backend: rc.Backend, CohortBackend: rc.CohortBackend,
			CohortMap: rc.CohortMap, LogRing: rc.LogRing, StateFile: filepath.Join(stateDir, "haproxy-"+env.Name+".json")})
		if err != nil {
			return err
		}
		t.har, t.rtr, t.stats = har, har, har.Stats
	case plan.RouterNginx:
		s := t.nginxSetup()
		s.Cohorts = ab
		for _, h := range env.Hosts {
			if h.Backend != "" {
				s.Servers = append(s.Servers, h.Backend)
			}
			for _, c := range []string{"blue", "green"} {
				if a := h.Slots[c]; a != "" {
					s.Servers = append(s.Servers, a)
				}
			}
		}
		p, err := nginx.Start(ctx, s)
		if err != nil {
			return err
		}
		t.ng = p
		ngr, err := nginx.New(p.Config(env.Name))
		if err != nil {
			return err
		}
		t.ngr, t.rtr, t.stats = ngr, ngr, ngr.Stats
	default:
		token, err := router.ReadToken(env.Router.TokenFile)
		if err != nil {
			return err
		}
		cl, err := router.NewClient(env.Router.Admin, token)
		if err != nil {
			return err
		}
		t.rtr, t.stats = cl, t.router.StatsFunc()
	}
	return nil
}

// describe names the traffic layer for the fleet's log.
func (t *traffic) describe() string {
	switch t.kind {
	case plan.RouterHAProxy:
		return "HAProxy"
	case plan.RouterNginx:
		return "nginx"
	}
	return "the built-in router"
}

// close stops the traffic layer.
func (t *traffic) close() error {
	if t.har != nil {
		t.har.Close()
	}
	if t.ngr != nil {
		t.ngr.Close()
	}
	if t.ha != nil {
		t.ha.Stop()
	}
	if t.ng != nil {
		t.ng.Stop()
	}
	if t.router != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return t.router.Shutdown(ctx)
	}
	return nil
}
