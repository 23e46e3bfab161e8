package main

import (
	"fmt"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"

	"flightdeck/engine"
	"flightdeck/engine/plan"
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
	return c
}

// routerFor connects to the environment's router, when the plan names one.
func routerFor(env *plan.Environment) (engine.Router, engine.MetricsSource, error) {
	rc := env.Router
	if rc == nil || rc.Admin == "" {
		return nil, nil, nil
	}
	tokenFile := rc.TokenFile
	if tokenFile == "" {
		return nil, nil, badInput(fmt.Errorf("environment %s: router.token_file is required to reach %s", env.Name, rc.Admin))
	}
	token, err := router.ReadToken(tokenFile)
	if err != nil {
		return nil, nil, fmt.Errorf("router token: %w", err)
	}
	cl, err := router.NewClient(rc.Admin, token)
	if err != nil {
		return nil, nil, badInput(err)
	}
	if g := env.Gate; g != nil && g.Source == "prometheus" {
		src, err := prom.New(g.Prometheus)
		if err != nil {
			return nil, nil, badInput(fmt.Errorf("environment %s: gate.prometheus: %w", env.Name, err))
		}
		return cl, src, nil
	}
	return cl, router.NewMetrics(cl.Stats), nil
}
