package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"flightdeck/engine"
	"flightdeck/engine/plan"
	"flightdeck/targets/demo"
	"flightdeck/tui"
)

// cockpitOptions builds the cockpit's options from the flags, the user's
// config file ($XDG_CONFIG_HOME/flightdeck/config.yaml) and the environment.
func cockpitOptions(g *globals, p *plan.Plan, env *plan.Environment) (tui.Options, error) {
	cfg, err := tui.LoadConfig(tui.DefaultConfigPath(os.Getenv))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return tui.Options{}, badInput(err)
	}
	if g.theme != "" {
		// --theme wins over the config file; a file path is relative to here.
		cfg.Theme, cfg.Path = g.theme, ""
	}
	theme, err := tui.PickTheme(cfg, g.noColor, os.Getenv)
	if err != nil {
		return tui.Options{}, badInput(err)
	}
	opts := tui.Options{
		Actor: engine.LocalActor("tui"), Theme: theme, ReadOnly: g.readOnly, App: p.App, Env: env.Name,
		KeyMap: &cfg.Keys, SLO: sloLimits(env), NoHealthCheck: noHealthCheck(p, env),
	}
	if cfg.ASCII != nil {
		opts.ASCII = *cfg.ASCII
	}
	return opts, nil
}

// cockpit runs the cockpit over an engine while start runs (a deploy or a
// rollback, started at once; nil starts nothing). Quitting interrupts a
// run still going (it is journaled and `flightdeck resume` finishes it).
// The result is start's, so exit codes match the headless mode.
func cockpit(c *cobra.Command, backend tui.Backend, opts tui.Options, start func(ctx context.Context) (*engine.State, error)) error {
	ctx, cancel := context.WithCancel(c.Context())
	defer cancel()
	type result struct {
		st  *engine.State
		err error
	}
	done := make(chan result, 1)
	if start != nil {
		opts.QuitStopsRun = true
		go func() {
			st, err := start(ctx)
			done <- result{st, err}
		}()
	}
	uiErr := tui.Run(ctx, backend, opts)
	if start == nil {
		cancel()
		return uiErr
	}
	var r result
	select {
	case r = <-done:
	default:
		// The run goes on: closing the cockpit was its first interrupt,
		// so that a Ctrl-C now aborts it (and rolls back what it switched).
		if interrupt := interruptOf(c.Context()); interrupt != nil {
			interrupt("the cockpit was closed during the run")
		}
		cancel()
		r = <-done
	}
	if uiErr != nil {
		return uiErr
	}
	return outcome(r.st, r.err)
}

// demoBackend lets the cockpit start the demo's next release (good or bad)
// and roll the demo fleet back.
type demoBackend struct {
	*tui.EngineBackend
	fleet *demo.Fleet
}

// HostStates is each host's container state when the demo runs on a lab
// (nil for local hosts: the cockpit then shows no such column).
func (d *demoBackend) HostStates() map[string]string { return d.fleet.HostConditions() }

// Deploy releases the demo's next version, without a fault.
func (d *demoBackend) Deploy(ctx context.Context, a engine.Actor) error {
	return d.deploy(ctx, a, false)
}

// Fault describes the fault of the scenario's bad release ("" for the
// good scenario, which has none): the cockpit's D names it.
func (d *demoBackend) Fault() string {
	sc := d.fleet.Scenario()
	if sc.Name == "good" {
		return ""
	}
	return sc.Name + ": " + sc.Summary
}

// DeployFault releases the demo's next version with the scenario's fault.
func (d *demoBackend) DeployFault(ctx context.Context, a engine.Actor) error {
	return d.deploy(ctx, a, true)
}

func (d *demoBackend) deploy(ctx context.Context, a engine.Actor, faulty bool) error {
	if err := engine.AuthorizeOwner(a, "start a deploy"); err != nil {
		return err
	}
	st, err := d.fleet.Deploy(ctx, a, faulty)
	if err != nil {
		return err
	}
	if st.Outcome != engine.OutcomeSucceeded {
		return fmt.Errorf("release %s: %s", st.Outcome, st.Err)
	}
	return nil
}

// runDemoCockpit opens the cockpit on the demo fleet and starts the
// scenario's release; `d`/`D` start more, `r` rolls back.
func runDemoCockpit(c *cobra.Command, g *globals, opts demo.Options) error {
	briefing(c.ErrOrStderr(), opts)
	opts.Log = c.ErrOrStderr()
	fmt.Fprintln(c.ErrOrStderr(), "starting the demo fleet…")
	fleet, err := demo.Start(c.Context(), opts)
	if err != nil {
		return err
	}
	defer fleet.Close()
	uiOpts, err := cockpitOptions(g, fleet.Plan, fleet.Env)
	if err != nil {
		return err
	}
	uiOpts.Actor.Via = "demo"
	uiOpts.Scenario = tui.Scenario{Name: opts.Scenario.Name, Briefing: opts.Scenario.Briefing}
	if opts.Dir == "" {
		uiOpts.QuitWarning = "The demo's temporary directory " + fleet.Dir + " is deleted on quit, its journal included: " +
			"run the demo with --dir DIR to keep it (`flightdeck journal show` then reads it)."
	}
	sctx, stopSampler := context.WithCancel(c.Context())
	defer stopSampler()
	backend := &demoBackend{EngineBackend: &tui.EngineBackend{Engine: fleet.Engine, Command: "flightdeck demo",
		Sampler: liveSampler(sctx, fleet.Env, fleet.Traffic(), fleet.Engine.Metrics, fleet.Hub)}, fleet: fleet}
	backend.SetPresence([]tui.Presence{{Name: uiOpts.Actor.Name, Role: uiOpts.Actor.Role, Via: "local"}})
	bad := opts.Scenario.Name != "good"
	err = cockpit(c, backend, uiOpts, func(ctx context.Context) (*engine.State, error) {
		return fleet.Deploy(ctx, uiOpts.Actor, bad)
	})
	var ee *exitError
	if errors.As(err, &ee) && ee.code == exitFailed {
		// A rolled-back release is the point of most scenarios: the cockpit
		// showed it; the demo itself ran fine.
		return nil
	}
	return err
}
