package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"

	"flightdeck/engine"
	"flightdeck/engine/plan"
	"flightdeck/targets/haproxy"
	"flightdeck/targets/nginx"
	"flightdeck/targets/prom"
	"flightdeck/targets/router"
)

// routerGCPercent is the router process's GOGC when the environment sets
// none (see the command's help).
const routerGCPercent = 400

func newRouterCmd() *cobra.Command {
	var cfg router.Config
	c := &cobra.Command{
		Use:   "router",
		Short: "Run the built-in traffic router (a long-lived reverse proxy)",
		Long: `Run the built-in traffic router: a reverse proxy that keeps routing when the
cockpit is closed. It holds a pool of backends per release, the weights,
cohort rules and drain state, persists them in --state and takes changes
through an admin API guarded by a bearer token (created 0600 on first start).

The process runs with GOGC=400 unless GOGC is set: a proxy's live heap is
a few megabytes, so at the default of 100 a busy router collects garbage
some 15 times a second, and each collection's stop-the-world pauses every
request in flight.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if cfg.Listen == "" || cfg.StateFile == "" {
				return badInput(fmt.Errorf("--listen and --state are required"))
			}
			if _, set := os.LookupEnv("GOGC"); !set {
				debug.SetGCPercent(routerGCPercent)
			}
			fmt.Fprintf(c.ErrOrStderr(), "router: proxy on %s, admin on %s, state %s\n", cfg.Listen, cfg.Admin, cfg.StateFile)
			return router.Run(c.Context(), cfg)
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.Listen, "listen", "", "proxy listen address, e.g. :8080")
	f.StringVar(&cfg.Admin, "admin", router.DefaultAdminAddr, "admin API listen address (loopback unless you mean it)")
	f.StringVar(&cfg.StateFile, "state", "", "routing state file")
	f.StringVar(&cfg.TokenFile, "token-file", "", "admin token file (default router.token beside --state)")
	f.StringVar(&cfg.HealthPath, "health-path", router.DefaultHealthPath, "backend health check path (2xx = ready, 503 = not ready)")
	f.DurationVar(&cfg.DrainTimeout, "drain-timeout", router.DefaultDrainTimeout, "longest wait for in-flight requests when draining")
	f.BoolVar(&cfg.MetricsAuth, "metrics-auth", false, "require the admin token on /metrics too")
	f.DurationVar(&cfg.BodyReadTimeout, "body-timeout", router.DefaultBodyReadTimeout, "longest wait for each read of a request body (408 after it)")
	f.IntVar(&cfg.MaxConns, "max-conns", 0, "most client connections open at once (0: no cap); beyond it new ones wait to be accepted")
	f.IntVar(&cfg.RetryBodyLimit, "retry-body-limit", router.DefaultRetryBodyLimit, "bytes of a request body kept so that the request can go to another backend when one closed the connection unread (negative: none)")
	return c
}

// routerFor connects to the environment's traffic layer, when the plan
// names one: the built-in router, HAProxy or nginx. HAProxy is checked
// against the plan before anything changes (a server the plan names and
// the backend lacks is bad input); a socket that is missing or refusing
// stops the command before any switch. stop releases what it holds.
func routerFor(env *plan.Environment, stateDir string) (rt engine.Router, metrics engine.MetricsSource, stop func(), err error) {
	stop = func() {}
	rc := env.Router
	if !rc.Configured() {
		return nil, nil, stop, nil
	}
	var stats router.StatsFunc
	switch rc.KindOrDefault() {
	case plan.RouterHAProxy:
		ha, err := haproxyFor(env, stateDir)
		if err != nil {
			return nil, nil, stop, err
		}
		rt, stats, stop = ha, ha.Stats, func() { ha.Close() }
	case plan.RouterNginx:
		ng, err := nginxFor(env)
		if err != nil {
			return nil, nil, stop, err
		}
		rt, stats, stop = ng, ng.Stats, func() { ng.Close() }
	default:
		tokenFile := rc.TokenFile
		if tokenFile == "" {
			return nil, nil, stop, badInput(fmt.Errorf("environment %s: router.token_file is required to reach %s", env.Name, rc.Admin))
		}
		token, err := router.ReadToken(tokenFile)
		if err != nil {
			return nil, nil, stop, fmt.Errorf("router token: %w", err)
		}
		cl, err := router.NewClient(rc.Admin, token)
		if err != nil {
			return nil, nil, stop, badInput(err)
		}
		rt, stats = cl, cl.Stats
	}
	if g := env.Gate; g != nil && g.Source == "prometheus" {
		src, err := prom.New(g.Prometheus)
		if err != nil {
			stop()
			return nil, nil, func() {}, badInput(fmt.Errorf("environment %s: gate.prometheus: %w", env.Name, err))
		}
		return rt, src, stop, nil
	}
	return rt, router.NewMetrics(stats), stop, nil
}

// planAddrs maps every backend address the environment names to who
// names it, for the load balancer's check.
func planAddrs(env *plan.Environment) map[string]string {
	out := map[string]string{}
	for _, h := range env.Hosts {
		if h.Backend != "" {
			out[h.Backend] = "host " + h.Name
		}
		for _, colour := range []engine.Slot{engine.SlotBlue, engine.SlotGreen} {
			if a := h.Slots[string(colour)]; a != "" {
				out[a] = fmt.Sprintf("host %s slot %s", h.Name, colour)
			}
		}
	}
	return out
}

// haproxyFor connects to the environment's HAProxy and checks it against
// the plan.
func haproxyFor(env *plan.Environment, stateDir string) (*haproxy.Router, error) {
	rc := env.Router
	stateFile := rc.StateFile
	if stateFile == "" {
		stateFile = filepath.Join(stateDir, "haproxy-"+env.Name+".json")
	}
	ha, err := haproxy.New(haproxy.Config{Socket: rc.Socket, Backend: rc.Backend, CohortBackend: rc.CohortBackend,
		CohortMap: rc.CohortMap, LogRing: rc.LogRing, StateFile: stateFile})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = ha.Check(ctx, planAddrs(env))
	var ce *haproxy.ConfigError
	switch {
	case errors.As(err, &ce):
		ha.Close()
		return nil, badInput(fmt.Errorf("environment %s: %w (nothing was changed)", env.Name, err))
	case errors.Is(err, haproxy.ErrUnreachable):
		ha.Close()
		return nil, fmt.Errorf("environment %s: %w: check that HAProxy runs and that router.socket names its stats socket (level admin); nothing was switched", env.Name, err)
	case err != nil:
		ha.Close()
		return nil, fmt.Errorf("environment %s: checking HAProxy: %w", env.Name, err)
	}
	return ha, nil
}

// nginxFor reads the environment's nginx upstream file and checks that
// nginx runs.
func nginxFor(env *plan.Environment) (*nginx.Router, error) {
	rc := env.Router
	ng, err := nginx.New(nginx.Config{UpstreamFile: rc.UpstreamFile, Upstream: rc.Upstream, MapFile: rc.MapFile,
		TestCommand: rc.TestCommand, ReloadCommand: rc.ReloadCommand, PIDFile: rc.PIDFile, AccessLog: rc.AccessLog,
		HealthPath: rc.HealthPath, Env: env.Name})
	if err != nil {
		return nil, badInput(fmt.Errorf("environment %s: %w", env.Name, err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ng.Check(ctx); err != nil {
		ng.Close()
		return nil, fmt.Errorf("environment %s: %w: check that nginx runs; nothing was switched", env.Name, err)
	}
	return ng, nil
}
