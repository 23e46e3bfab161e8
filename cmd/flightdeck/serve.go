package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	gossh "golang.org/x/crypto/ssh"

	"flightdeck/engine"
	"flightdeck/engine/plan"
	"flightdeck/serve"
	"flightdeck/targets/demo"
	"flightdeck/tui"
)

type serveFlags struct {
	listen      string
	keys        string
	hostKey     string
	idle        time.Duration
	maxSessions int
	demo        bool
	df          demoFlags
}

func newServeCmd(g *globals) *cobra.Command {
	var sf serveFlags
	c := &cobra.Command{
		Use:   "serve",
		Short: "Serve the cockpit over SSH so that several operators pair on one release",
		Long: `Serve the cockpit over SSH: every operator connects with their own key
and gets their own cockpit on the one release run of this environment (or of
the demo fleet with --demo); every command is attributed and authorised.

The authorized-keys file is OpenSSH's format. Each key carries a display name
and a role (viewer, operator, owner; a key without a role is a viewer), in the
options field or in the comment:

  environment="FLIGHTDECK_ROLE=operator",environment="FLIGHTDECK_NAME=alice" ssh-ed25519 AAAA... alice@laptop
  ssh-ed25519 AAAA... bob@desk role=owner
  ssh-ed25519 AAAA... carol name=carol-sre

Viewers see everything and act on nothing; operators pause, resume, step,
promote, approve, roll back, abort and ack; owners also start deploys (d).
Only public-key authentication is offered.

  ssh -p 2222 host                     the cockpit
  ssh -p 2222 host -- status           the run state as text (--no-color, NO_COLOR)
  ssh -p 2222 host -- approve          approve a promotion waiting for a second operator

The host key is generated on first start (ed25519, mode 0600) and reused.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return runServe(c, g, &sf) },
	}
	f := c.Flags()
	f.StringVar(&sf.listen, "listen", ":2222", "address to listen on")
	f.StringVar(&sf.keys, "authorized-keys", "", "authorized keys with roles and names (required)")
	f.StringVar(&sf.hostKey, "host-key", "", "host key file (default: serve_host_ed25519 in the state directory; created if missing)")
	f.DurationVar(&sf.idle, "idle-timeout", serve.DefaultIdleTimeout, "close a session without input for this long")
	f.IntVar(&sf.maxSessions, "max-sessions", serve.DefaultMaxSessions, "most concurrent sessions; more are refused")
	f.BoolVar(&sf.demo, "demo", false, "serve the demo fleet instead of the plan's environment")
	f.IntVar(&sf.df.hosts, "hosts", 8, "with --demo: number of demo hosts")
	f.StringVar(&sf.df.strategy, "strategy", "canary", "with --demo: symlink | rolling | canary | bluegreen | ab")
	f.StringVar(&sf.df.scenario, "scenario", "good", "with --demo: training scenario (see demo --list)")
	f.IntVar(&sf.df.rate, "rate", 200, "with --demo: probe traffic, requests per second")
	f.StringVar(&sf.df.dir, "dir", "", "with --demo: keep the fleet in this directory")
	return c
}

func runServe(c *cobra.Command, g *globals, sf *serveFlags) error {
	if sf.keys == "" {
		return badInput(errors.New("--authorized-keys is required: nobody could connect"))
	}
	if sf.maxSessions < 1 {
		return badInput(fmt.Errorf("--max-sessions %d: at least 1", sf.maxSessions))
	}
	if sf.idle <= 0 {
		return badInput(fmt.Errorf("--idle-timeout %s: must be positive", sf.idle))
	}
	keys, err := serve.LoadKeys(sf.keys)
	if err != nil {
		return badInput(err)
	}
	ctx := c.Context()
	stderr := c.ErrOrStderr()
	cfg, err := tui.LoadConfig(tui.DefaultConfigPath(os.Getenv))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return badInput(err)
	}
	if g.theme != "" {
		cfg.Theme, cfg.Path = g.theme, "" // --theme over the config file, for every session
	}
	opts := serve.Options{Keys: keys, KeysFile: sf.keys, UI: cfg, IdleTimeout: sf.idle, MaxSessions: sf.maxSessions,
		Log: slog.New(slog.NewTextHandler(stderr, nil))}
	stateDir := g.stateDir
	var start func(context.Context)
	if sf.demo {
		dopts, err := demoOptions(&sf.df)
		if err != nil {
			return err
		}
		dopts.Interactive = true
		dopts.Log = stderr
		briefing(stderr, dopts)
		fleet, err := demo.Start(ctx, dopts)
		if err != nil {
			return err
		}
		defer fleet.Close()
		opts.Backend = &demoBackend{EngineBackend: &tui.EngineBackend{Engine: fleet.Engine, Command: "flightdeck serve --demo",
			Sampler: liveSampler(ctx, fleet.Env, fleet.Traffic(), fleet.Engine.Metrics, fleet.Hub)}, fleet: fleet}
		opts.App, opts.Env = fleet.Plan.App, fleet.Env.Name
		setSLO(&opts, fleet.Env)
		opts.NoHealthCheck = noHealthCheck(fleet.Plan, fleet.Env)
		opts.Scenario = tui.Scenario{Name: dopts.Scenario.Name, Briefing: dopts.Scenario.Briefing}
		if stateDir == "" {
			stateDir = ".flightdeck"
		}
		bad := dopts.Scenario.Name != "good"
		start = func(ctx context.Context) {
			if _, err := fleet.Deploy(ctx, engine.LocalActor("serve"), bad); err != nil && ctx.Err() == nil {
				fmt.Fprintln(stderr, "flightdeck serve: demo release:", err)
			}
		}
	} else {
		l, err := g.load()
		if err != nil {
			return err
		}
		r, err := l.open(c, g)
		if err != nil {
			return err
		}
		defer r.close()
		opts.Backend = &tui.EngineBackend{Engine: r.eng, Command: commandLine(),
			Sampler: liveSampler(ctx, l.env, r.eng.Router, r.eng.Metrics, r.eng.Hub),
			Build: func(ctx context.Context) (*engine.Artifact, func(), error) {
				return engine.BuildWith(ctx, l.plan, engine.NewReleaseID(time.Now()), io.Discard, l.buildOptions())
			}}
		opts.App, opts.Env = l.plan.App, l.env.Name
		setSLO(&opts, l.env)
		opts.NoHealthCheck = noHealthCheck(l.plan, l.env)
		stateDir = l.stateDir
	}
	hkPath := sf.hostKey
	if hkPath == "" {
		hkPath = filepath.Join(stateDir, serve.HostKeyName)
	}
	signer, created, err := serve.LoadOrCreateHostKey(hkPath)
	if err != nil {
		return err
	}
	opts.HostKey = signer
	srv, err := serve.New(opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", sf.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", sf.listen, err)
	}
	verb := "using"
	if created {
		verb = "generated"
	}
	fmt.Fprintf(stderr, "flightdeck serve: %s/%s on %s; %s host key %s (%s); %d authorised keys\n",
		opts.App, opts.Env, ln.Addr(), verb, hkPath, gossh.FingerprintSHA256(signer.PublicKey()), keys.Len())
	if start != nil {
		go start(ctx)
	}
	return srv.Serve(ctx, ln)
}

func setSLO(o *serve.Options, env *plan.Environment) {
	o.SLO = sloLimits(env)
}

// demoOptions checks the demo flags of serve --demo.
func demoOptions(df *demoFlags) (demo.Options, error) {
	sc, err := demo.FindScenario(df.scenario)
	if err != nil {
		return demo.Options{}, badInput(err)
	}
	kind := plan.StrategyKind(df.strategy)
	switch kind {
	case plan.Symlink, plan.Rolling, plan.Canary, plan.BlueGreen, plan.AB:
	default:
		return demo.Options{}, badInput(fmt.Errorf("--strategy %q: choose symlink, rolling, canary, bluegreen or ab", df.strategy))
	}
	if df.hosts < 1 || df.hosts > 1000 {
		return demo.Options{}, badInput(fmt.Errorf("--hosts %d: choose 1 to 1000", df.hosts))
	}
	if df.rate < 1 || df.rate > 20000 {
		return demo.Options{}, badInput(fmt.Errorf("--rate %d: choose 1 to 20000 requests/s", df.rate))
	}
	return demo.Options{Hosts: df.hosts, Strategy: kind, Scenario: sc, Rate: df.rate, Dir: df.dir}, nil
}
