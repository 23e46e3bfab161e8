package main

import (
	"context"
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
)

type demoFlags struct {
	hosts    int
	strategy string
	scenario string
	rate     int
	dir      string
	list     bool
}

func newDemoCmd(g *globals) *cobra.Command {
	var df demoFlags
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run a real release exercise on a demo fleet on this machine",
		Long: `Run a real release exercise on this machine: N local hosts, one service
process per host slot, the built-in router in front of them, probe traffic,
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
			opts := demo.Options{Hosts: df.hosts, Strategy: kind, Scenario: sc, Rate: df.rate, Dir: df.dir}
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
	addOutputFlags(c, g)
	return c
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
	fmt.Fprintf(w, "── scenario %s · strategy %s · %d hosts · probe %d req/s ──\n", opts.Scenario.Name, opts.Strategy, opts.Hosts, opts.Rate)
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
	c := &cobra.Command{
		Use:    "demo-ctl",
		Short:  "Restart a demo service (run by the demo plan's restart hook)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			req := demo.StartRequest{
				Host: os.Getenv("HOST"), Slot: os.Getenv("SLOT"), Port: os.Getenv("PORT"),
				Release: os.Getenv("RELEASE_VERSION"), Dir: os.Getenv("RELEASE_PATH"),
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
	return c
}
