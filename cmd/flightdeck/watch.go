package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"flightdeck/engine"
	"flightdeck/engine/sampler"
	"flightdeck/tui"
	"flightdeck/tui/lines"
)

// errWatchOnly refuses every action of a watching cockpit.
var errWatchOnly = errors.New("this cockpit only watches a run journaled elsewhere; act from the controller that runs it")

// watchBackend is the cockpit's backend while it watches: a hub fed from
// the journal, the live SLOs read from the traffic layer, and no action.
type watchBackend struct {
	hub     *engine.Hub
	sampler *sampler.Sampler
}

// LiveChanged is closed when the sampler's next snapshot is out.
func (w *watchBackend) LiveChanged() <-chan struct{} {
	if w.sampler == nil {
		return nil
	}
	return w.sampler.Changed()
}

// LiveSLO is the sampler's latest snapshot (nil without a traffic layer).
func (w *watchBackend) LiveSLO() *sampler.Snapshot {
	if w.sampler == nil {
		return nil
	}
	return w.sampler.Snapshot()
}

func (w *watchBackend) Hub() *engine.Hub                                     { return w.hub }
func (w *watchBackend) Send(context.Context, engine.Command) error           { return errWatchOnly }
func (w *watchBackend) Rollback(context.Context, engine.Actor, string) error { return errWatchOnly }
func (w *watchBackend) Deploy(context.Context, engine.Actor) error           { return errWatchOnly }
func (w *watchBackend) Presence() []tui.Presence                             { return nil }

func newWatchCmd(g *globals) *cobra.Command {
	var run string
	c := &cobra.Command{
		Use:   "watch",
		Short: "Follow a run as it is journaled, read-only (from any machine with etcd)",
		Long: `Follow the environment's run in progress (or the next one to start, or
--run RUN) as its events are journaled, in a read-only cockpit or, with
--headless, one line per event. With the state in etcd (state.etcd in the
plan, or --etcd) it follows a run started on any machine, through etcd's
watch. With --headless it ends when the run finishes, and the exit code is
the run's (0 when it succeeded, 1 otherwise); the cockpit stays open and
follows the environment's next runs until you quit it. The cockpit reads
the live SLOs from the plan's traffic layer (counters only: it changes
nothing) and refuses every action.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if run != "" {
				if err := engine.ValidateRunID(run); err != nil {
					return badInput(fmt.Errorf("--run: %w", err))
				}
			}
			l, st, err := g.loadState(c)
			if err != nil {
				return err
			}
			defer st.close()
			f, ok := st.StateBackend.(engine.RunFollower)
			if !ok {
				return badInput(fmt.Errorf("%s cannot be followed", st.Describe()))
			}
			ctx := c.Context()
			if run == "" {
				fmt.Fprintf(c.ErrOrStderr(), "waiting for a run of %s in %s…\n", l.env.Name, st.Describe())
				if run, err = f.NextRun(ctx, l.env.Name); err != nil {
					return err
				}
			}
			hub := engine.NewHub()
			state := engine.NewState()
			if !g.headless && !g.json && interactive(c) {
				return watchCockpit(c, g, l, f, hub, run)
			}
			p := lines.New(c.OutOrStdout(), g.json)
			err = f.Follow(ctx, run, 0, func(evs []engine.Event) error {
				for _, e := range evs {
					state.Apply(e)
					p.Print(e)
				}
				return nil
			})
			return outcome(state, err)
		},
	}
	c.Flags().StringVar(&run, "run", "", "the run to follow (default: the environment's run in progress, or the next one)")
	addOutputFlags(c, g)
	return c
}

// watchCockpit opens a read-only cockpit that follows run, then each next
// run of the environment, until the operator quits.
func watchCockpit(c *cobra.Command, g *globals, l *loaded, f engine.RunFollower, hub *engine.Hub, run string) error {
	opts, err := cockpitOptions(g, l.plan, l.env)
	if err != nil {
		return err
	}
	opts.ReadOnly = true
	ctx, cancel := context.WithCancel(c.Context())
	defer cancel()
	backend := &watchBackend{hub: hub}
	if rt, metrics, stop, err := routerFor(l.env, l.stateDir); err != nil {
		fmt.Fprintf(c.ErrOrStderr(), "watch: no live SLOs: %v\n", err)
	} else {
		defer stop()
		backend.sampler = liveSampler(ctx, l.env, rt, metrics, hub)
	}
	go func() {
		for {
			state := engine.NewState()
			err := f.Follow(ctx, run, 0, func(evs []engine.Event) error {
				for _, e := range evs {
					state.Apply(e)
				}
				hub.Publish(evs...)
				hub.SetSnapshot(state.Clone())
				return nil
			})
			if err != nil {
				return
			}
			if run, err = f.NextRun(ctx, l.env.Name); err != nil {
				return
			}
		}
	}()
	return cockpit(c, backend, opts, nil)
}
