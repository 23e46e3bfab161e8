package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"flightdeck/tui"
)

func newReplayCmd(g *globals) *cobra.Command {
	var speed float64
	c := &cobra.Command{
		Use:   "replay RUN",
		Short: "Play a journaled run back in a read-only cockpit (incident review, training)",
		Long: `Play a run of the journal back in the cockpit, read-only, at the pace it
happened (--speed 4 is four times faster; --speed 0 shows the end at once).
RUN is a run id from ` + "`flightdeck journal`" + `, or "last". Keys: p or space
pause and play, ← → (or < >) seek 10 s, home and end, [ ] halve and double
the speed, q quit; the cockpit's own keys move around and open details.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if speed < 0 {
				return badInput(fmt.Errorf("--speed %g: want 0 (the end at once) or more", speed))
			}
			l, st, err := g.loadState(c)
			if err != nil {
				return err
			}
			defer st.close()
			id, err := runID(c.Context(), st, args[0])
			if err != nil {
				return err
			}
			evs, err := st.ReadJournal(c.Context(), id)
			if err != nil {
				return badInput(err)
			}
			if len(evs) == 0 {
				return badInput(fmt.Errorf("run %s has no events", id))
			}
			if !interactive(c) {
				return badInput(fmt.Errorf("replay needs a terminal; `flightdeck journal show %s` prints the run's events", id))
			}
			opts, err := cockpitOptions(g, l.plan, l.env)
			if err != nil {
				return err
			}
			return tui.RunReplay(c.Context(), evs, opts, speed)
		},
	}
	c.Flags().Float64Var(&speed, "speed", 1, "playback speed (1 = as it happened, 0 = the end at once)")
	return c
}
