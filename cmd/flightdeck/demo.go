package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"flightdeck/engine"
	"flightdeck/engine/plan"
	"flightdeck/targets/demo"
	"flightdeck/targets/demo/service"
	"flightdeck/targets/lab"
)

type demoFlags struct {
	hosts    int
	strategy string
	scenario string
	rate     int
	dir      string
	list     bool
	lab      bool
	labName  string
	router   string
}

func newDemoCmd(g *globals) *cobra.Command {
	var df demoFlags
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run a real release exercise on a demo fleet on this machine",
		Long: `Run a real release exercise on this machine: N local hosts, one service
process per host slot, a traffic layer in front of them (the built-in
router, or with --router a real HAProxy or nginx), probe traffic,
and a release of the chosen strategy through the real engine. Scenarios
inject faults into the new release; --list shows them. Without --headless
on a terminal it opens the cockpit.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if df.list {
				return listScenarios(c.OutOrStdout())
			}
			sc, err := demo.FindScenario(df.scenario)
			if err != nil {
				return badInput(err)
			}
			kind := plan.StrategyKind(df.strategy)
			switch kind {
			case plan.Symlink, plan.Rolling, plan.Canary, plan.BlueGreen, plan.AB:
			default:
				return badInput(fmt.Errorf("--strategy %q: choose symlink, rolling, canary, bluegreen or ab", df.strategy))
			}
			if df.hosts < 1 || df.hosts > 1000 {
				return badInput(fmt.Errorf("--hosts %d: choose 1 to 1000", df.hosts))
			}
			if df.rate < 1 || df.rate > 20000 {
				return badInput(fmt.Errorf("--rate %d: choose 1 to 20000 requests/s", df.rate))
			}
			switch df.router {
			case plan.RouterFlightdeck, plan.RouterHAProxy, plan.RouterNginx:
			default:
				return badInput(fmt.Errorf("--router %q: choose flightdeck, haproxy or nginx", df.router))
			}
			opts := demo.Options{Hosts: df.hosts, Strategy: kind, Scenario: sc, Rate: df.rate, Dir: df.dir, Router: df.router}
			if df.labName != "" {
				df.lab = true
			}
			if sc.LabOnly && !df.lab {
				return badInput(fmt.Errorf("scenario %s needs real hosts: add --lab (a lab of containers; see `flightdeck lab --help`)", sc.Name))
			}
			if df.lab {
				if df.labName != "" {
					if err := lab.ValidateName(df.labName); err != nil {
						return badInput(err)
					}
				} else if df.hosts > lab.MaxHosts {
					return badInput(fmt.Errorf("--hosts %d: a lab has at most %d hosts", df.hosts, lab.MaxHosts))
				}
				l, release, err := demoLab(c.Context(), c.ErrOrStderr(), df)
				if err != nil {
					return err
				}
				defer func() {
					if err := release(); err != nil {
						fmt.Fprintln(c.ErrOrStderr(), "flightdeck: removing the demo's lab:", err)
					}
				}()
				opts.Lab, opts.KeepLab, opts.Hosts = l, df.labName != "", len(l.Hosts)
			}
			if !g.headless && interactive(c) {
				opts.Interactive = true
				return runDemoCockpit(c, g, opts)
			}
			return runDemoHeadless(c.Context(), c.OutOrStdout(), g, opts)
		},
	}
	f := c.Flags()
	f.IntVar(&df.hosts, "hosts", 8, "number of demo hosts")
	f.StringVar(&df.strategy, "strategy", "canary", "symlink | rolling | canary | bluegreen | ab")
	f.StringVar(&df.scenario, "scenario", "good", "training scenario (see --list)")
	f.IntVar(&df.rate, "rate", 200, "probe traffic, requests per second")
	f.StringVar(&df.dir, "dir", "", "keep the fleet in this directory (default: a temporary one, removed at exit)")
	f.BoolVar(&df.list, "list", false, "list the scenarios")
	f.BoolVar(&df.lab, "lab", false, "run on a lab of containers reached over SSH (a new one of --hosts hosts, removed at exit)")
	f.StringVar(&df.labName, "lab-name", "", "run on the running lab `NAME` (made by flightdeck lab up --name NAME), left running at exit")
	f.StringVar(&df.router, "router", plan.RouterFlightdeck, "traffic layer: flightdeck (the built-in router) | haproxy | nginx (a real one, installed on this machine)")
	addOutputFlags(c, g)
	return c
}

// demoLab starts the lab of a `demo --lab` run (or opens the named one).
// release removes a lab it started, whatever happened (Ctrl-C included),
// and leaves a named one running.
func demoLab(ctx context.Context, log io.Writer, df demoFlags) (*lab.Lab, func() error, error) {
	d, err := lab.Connect(ctx)
	if err != nil {
		return nil, nil, labError(err)
	}
	if df.labName != "" {
		l, err := lab.Open(ctx, d, df.labName, "")
		if err != nil {
			d.Close()
			return nil, nil, labError(err)
		}
		for _, h := range l.Hosts {
			if c := h.Condition(); c != "up" {
				d.Close()
				return nil, nil, badInput(fmt.Errorf("lab %s: %s is %s: `flightdeck lab heal %s --name %s` first", l.Name, h.Name, c, h.Name, l.Name))
			}
		}
		return l, d.Close, nil
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	name := "demo-" + hex.EncodeToString(b)
	l, rep, err := lab.Up(ctx, d, lab.Options{Name: name, Hosts: df.hosts, Log: log})
	if err != nil {
		d.Close()
		if ctx.Err() != nil {
			return nil, nil, &exitError{code: exitFailed, err: fmt.Errorf("demo interrupted while its lab was starting; everything it had created is removed: %w", err)}
		}
		return nil, nil, labError(err)
	}
	fmt.Fprintf(log, "lab %s: %d hosts answer SSH after %s (image %s)\n", l.Name, len(l.Hosts), rep.Ready.Round(time.Millisecond), rep.Image.Ref)
	return l, func() error {
		defer d.Close()
		// Removal is finished even after Ctrl-C: the demo leaves nothing behind.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		return l.Down(rctx)
	}, nil
}

func listScenarios(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tWHAT HAPPENS")
	for _, s := range demo.Scenarios() {
		fmt.Fprintf(tw, "%s\t%s\n", s.Name, s.Summary)
	}
	return tw.Flush()
}

func briefing(w io.Writer, opts demo.Options) {
	via := ""
	if opts.Router != "" && opts.Router != plan.RouterFlightdeck {
		via = " · through " + opts.Router
	}
	fmt.Fprintf(w, "── scenario %s · strategy %s · %d hosts · probe %d req/s%s ──\n", opts.Scenario.Name, opts.Strategy, opts.Hosts, opts.Rate, via)
	fmt.Fprintln(w, wrap(opts.Scenario.Briefing, 78))
	fmt.Fprintln(w)
}

func wrap(s string, width int) string {
	var b strings.Builder
	n := 0
	for _, word := range strings.Fields(s) {
		if n > 0 && n+1+len(word) > width {
			b.WriteByte('\n')
			n = 0
		} else if n > 0 {
			b.WriteByte(' ')
			n++
		}
		b.WriteString(word)
		n += len(word)
	}
	return b.String()
}

// runDemoHeadless runs the scenario to the end with the default decisions
// and prints the events and the report. Exit 0 for a release that went
// out hitless, 1 for one that was rolled back or lost requests.
func runDemoHeadless(ctx context.Context, out io.Writer, g *globals, opts demo.Options) error {
	if !g.json {
		briefing(out, opts)
		opts.Log = out
	}
	fleet, err := demo.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer fleet.Close()
	stop := follow(ctx, out, fleet.Hub, g.json)
	actor := engine.LocalActor("demo")
	stopOperator := defaultOperator(ctx, fleet, engine.Actor{Name: "demo-operator", Role: engine.RoleOperator, Via: "demo"})
	st, err := fleet.Deploy(ctx, actor, opts.Scenario.Name != "good")
	stopOperator()
	stop()
	if err != nil {
		if errors.Is(err, engine.ErrInterrupted) || ctx.Err() != nil {
			return &exitError{code: exitFailed, err: errors.New("demo interrupted; its processes are stopped")}
		}
		return err
	}
	if !g.json {
		if opts.Dir != "" {
			fmt.Fprintf(out, "\njournal: flightdeck journal show %s -f %s\n", st.Run, fleet.PlanFile)
		} else {
			fmt.Fprintf(out, "\n(the fleet and its journal are removed at exit; --dir DIR keeps them)\n")
		}
	}
	if st.Outcome != engine.OutcomeSucceeded {
		return &exitError{code: exitFailed, err: fmt.Errorf("release %s: %s", st.Outcome, st.Err)}
	}
	if st.Report != nil && !strings.HasPrefix(st.Report.Verdict, "HITLESS") {
		return &exitError{code: exitFailed, err: fmt.Errorf("release went out but was not hitless: %s", st.Report.Verdict)}
	}
	return nil
}

// defaultOperator takes the default decision a headless demo needs from a
// person: when the gate pauses the run as inconclusive, measure again
// (resume). Its commands are journaled like anyone's.
func defaultOperator(ctx context.Context, fleet *demo.Fleet, who engine.Actor) (stop func()) {
	return fleet.Hub.Watch(ctx, func(ctx context.Context, e engine.Event) bool {
		if e.Type == engine.EvPaused && e.Actor == engine.AutoActor.Name {
			_ = fleet.Engine.Send(ctx, engine.Command{Kind: engine.CmdResume, Actor: who, Reason: "headless demo: measure again"})
		}
		return false
	})
}

// newDemoServiceCmd is the demo service: the flightdeck binary itself in a
// hidden mode, so that there is one binary to ship.
func newDemoServiceCmd() *cobra.Command {
	var cfg service.Config
	var listen string
	c := &cobra.Command{
		Use:    "demo-service",
		Short:  "Run the demo web service (used by the demo fleet)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg.Addr = listen
			cfg.Log = c.ErrOrStderr()
			err := service.Run(c.Context(), cfg)
			if errors.Is(err, service.ErrCrash) {
				os.Exit(service.CrashExitCode)
			}
			return err
		},
	}
	c.Flags().StringVar(&listen, "listen", "127.0.0.1:8080", "listen address")
	c.Flags().StringVar(&cfg.ReleaseDir, "release-dir", ".", "release directory (knobs.json is read from it)")
	c.Flags().StringVar(&cfg.Name, "name", "", "host/slot name shown in responses")
	c.Flags().BoolVar(&cfg.FollowLink, "follow", false, "release-dir is a link (current) read on every request")
	return c
}

// newDemoCtlCmd is run by the demo plan's restart hook: it asks the demo
// supervisor to (re)start this host slot's service on the new release.
func newDemoCtlCmd() *cobra.Command {
	var sock string
	var follow, stopAll bool
	c := &cobra.Command{
		Use:    "demo-ctl",
		Short:  "Restart a demo service (run by the demo plan's restart hook)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			req := demo.StartRequest{
				Host: os.Getenv("HOST"), Slot: os.Getenv("SLOT"), Port: os.Getenv("PORT"),
				Release: os.Getenv("RELEASE_VERSION"), Dir: os.Getenv("RELEASE_PATH"), Follow: follow,
			}
			if stopAll {
				ctx, cancel := context.WithTimeout(c.Context(), 45*time.Second)
				defer cancel()
				if _, err := demo.Ctl(ctx, sock, demo.StartRequest{StopAll: true}); err != nil {
					return err
				}
				fmt.Fprintln(c.OutOrStdout(), "stopped every service")
				return nil
			}
			if req.Host == "" || req.Port == "" || req.Dir == "" {
				return badInput(errors.New("demo-ctl needs HOST, PORT and RELEASE_PATH in its environment"))
			}
			ctx, cancel := context.WithTimeout(c.Context(), 45*time.Second)
			defer cancel()
			rep, err := demo.Ctl(ctx, sock, req)
			if err != nil {
				return err
			}
			what := req.Host
			if req.Slot != "" {
				what += " slot " + req.Slot
			}
			fmt.Fprintf(c.OutOrStdout(), "started %s: %s on :%s (pid %d)\n", what, req.Release, req.Port, rep.PID)
			return nil
		},
	}
	c.Flags().StringVar(&sock, "sock", "", "demo supervisor socket")
	c.Flags().BoolVar(&follow, "follow", false, "RELEASE_PATH is the current link, read on every request (no restart at a switch)")
	c.Flags().BoolVar(&stopAll, "stop-all", false, "stop every service of the supervisor instead")
	return c
}
