package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"flightdeck/engine"
	"flightdeck/tui/lines"
)

func newCheckCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Validate the release plan (exit 0 when valid, 2 when not)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			l, err := g.load()
			if err != nil {
				return err
			}
			out := c.OutOrStdout()
			fmt.Fprintf(out, "%s: valid plan for %s\n", l.plan.File, l.plan.App)
			for _, name := range l.plan.PromotionOrder() {
				e := l.plan.Environments[name]
				fmt.Fprintf(out, "  %s: %d hosts, strategy %s\n", name, len(e.Hosts), e.Strategy.Kind)
			}
			findings, err := engine.MigrationFindings(l.plan)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "\nproduction checklist for %s:\n", l.env.Name)
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			for _, it := range engine.PlanChecklist(l.plan, l.env, findings, nil) {
				how := map[engine.ItemState]string{engine.ItemVerified: "✓ verified", engine.ItemFailed: "✗ FAILED", engine.ItemNA: "– n/a", engine.ItemUnknown: "… at run time / ack"}[it.State]
				req := ""
				if it.Required {
					req = " (required)"
				}
				fmt.Fprintf(tw, "  %s%s\t%s\t%s\n", it.Title, req, how, strings.ReplaceAll(it.Evidence, "\n", "; "))
			}
			return tw.Flush()
		},
	}
}

// hostReleases is one host's releases, as `releases` prints them.
type hostReleases struct {
	Host     string   `json:"host"`
	Current  string   `json:"current"`
	Releases []string `json:"releases"`
	Error    string   `json:"error,omitempty"`
}

func newReleasesCmd(g *globals) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "releases",
		Short: "Show each host's current and kept releases",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			l, err := g.load()
			if err != nil {
				return err
			}
			hosts, err := l.hosts(g)
			if err != nil {
				return err
			}
			defer l.close(hosts)
			rows := inspectAll(c.Context(), hosts)
			out := c.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "HOST\tCURRENT\tRELEASES")
			failed := 0
			for _, r := range rows {
				if r.Error != "" {
					failed++
					fmt.Fprintf(tw, "%s\t✗ %s\t\n", r.Host, r.Error)
					continue
				}
				var rels []string
				for _, id := range r.Releases {
					if id == r.Current {
						id = "*" + id
					}
					rels = append(rels, id)
				}
				cur := r.Current
				if cur == "" {
					cur = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Host, cur, strings.Join(rels, " "))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if failed > 0 {
				return &exitError{code: exitFailed, err: fmt.Errorf("%d hosts could not be inspected", failed)}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func inspectAll(ctx context.Context, hosts []engine.Host) []hostReleases {
	rows := make([]hostReleases, len(hosts))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			st, err := h.Inspect(ctx)
			rows[i] = hostReleases{Host: h.Name(), Current: st.Current, Releases: st.Releases}
			if rows[i].Releases == nil {
				rows[i].Releases = []string{}
			}
			if err != nil {
				rows[i].Error = err.Error()
			}
		}()
	}
	wg.Wait()
	return rows
}

func newJournalCmd(g *globals) *cobra.Command {
	var asJSON bool
	var only string
	c := &cobra.Command{
		Use:   "journal [show RUN | summary RUN]",
		Short: "List runs, show one run's events (`journal show RUN`) or summarise it as Markdown (`journal summary RUN`)",
		Long: `List the environment's runs; ` + "`journal show RUN`" + ` prints one run's events
(RUN may be "last"), --only keeps some kinds of them (actions, gates,
failures, rollbacks, traffic, run); ` + "`journal summary RUN`" + ` prints a short Markdown
incident summary to paste into a ticket: what ran, the verdict and its
cause, the gates with their numbers, the rollback and its RTO, and a
timeline of who did what when (UTC).`,
		Args: cobra.MaximumNArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			_, st, err := g.loadState(c)
			if err != nil {
				return err
			}
			defer st.close()
			out := c.OutOrStdout()
			if len(args) > 0 {
				if (args[0] != "show" && args[0] != "summary") || len(args) != 2 {
					return badInput(fmt.Errorf("usage: flightdeck journal [show RUN | summary RUN]"))
				}
				var kinds []lines.Kind
				if only != "" {
					if args[0] != "show" {
						return badInput(fmt.Errorf("--only goes with journal show"))
					}
					if kinds, err = lines.ParseKinds(only); err != nil {
						return badInput(fmt.Errorf("--only: %w", err))
					}
				}
				id, err := runID(c.Context(), st, args[1])
				if err != nil {
					return err
				}
				evs, err := st.ReadJournal(c.Context(), id)
				var dmg *engine.JournalDamageError
				if err != nil && !errors.As(err, &dmg) {
					return badInput(err)
				}
				if args[0] == "summary" {
					if len(evs) == 0 {
						return badInput(fmt.Errorf("run %s has no events", id))
					}
					_, err := fmt.Fprint(out, lines.Summary(evs))
					return err
				}
				p := lines.New(out, asJSON)
				p.Verbose = true
				for _, e := range evs {
					if kinds == nil || lines.Has(e, kinds) {
						p.Print(e)
					}
				}
				if dmg != nil {
					fmt.Fprintln(c.ErrOrStderr(), "flightdeck: warning:", dmg)
				}
				return nil
			}
			runs, err := st.ListRuns(c.Context())
			if err != nil {
				return err
			}
			for _, r := range runs {
				if r.Damage != "" {
					fmt.Fprintln(c.ErrOrStderr(), "flightdeck: warning:", r.Damage)
				}
			}
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if runs == nil {
					runs = []engine.RunSummary{}
				}
				return enc.Encode(runs)
			}
			slices.Reverse(runs)
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RUN\tKIND\tENV\tRELEASE\tFROM\tSTARTED\tDURATION\tOUTCOME\tBY")
			for _, r := range runs {
				oc := string(r.Outcome)
				if r.Status != engine.StatusFinished {
					oc = "UNFINISHED"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Run, r.Kind, r.Env, r.Release, dash(r.Previous),
					r.Started.Local().Format(time.DateTime), r.Duration.Round(time.Millisecond), oc, r.Actor)
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().StringVar(&only, "only", "", "with show: only these kinds of events, comma-separated (actions, gates, failures, rollbacks, traffic, run)")
	return c
}

// runID resolves a run argument: "last" is the journal's newest run; any
// other must be a valid run id (bad input otherwise).
func runID(ctx context.Context, st engine.StateBackend, id string) (string, error) {
	if id == "last" {
		runs, err := st.ListRuns(ctx)
		if err != nil {
			return "", err
		}
		if len(runs) == 0 {
			return "", badInput(fmt.Errorf("the journal has no runs"))
		}
		return runs[len(runs)-1].Run, nil
	}
	if err := engine.ValidateRunID(id); err != nil {
		return "", badInput(err)
	}
	return id, nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newUnlockCmd(g *globals) *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:   "unlock",
		Short: "Break a stale environment lock (records who did)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			l, st, err := g.loadState(c)
			if err != nil {
				return err
			}
			defer st.close()
			actor := engine.LocalActor("cli")
			held, where, err := st.BreakLock(c.Context(), l.env.Name, actor, reason)
			if err != nil {
				if held == nil {
					return badInput(fmt.Errorf("no lock to break for %s: %w", l.env.Name, err))
				}
				return err
			}
			run := ""
			if held.Run != "" {
				run = ", run " + held.Run
			}
			if held.Unreadable != "" {
				fmt.Fprintf(c.OutOrStdout(), "broke the lock of %s held by an unknown holder (%s; held %s); recorded in %s\n",
					l.env.Name, held.Unreadable, time.Since(held.Started).Round(time.Second), where)
				return nil
			}
			fmt.Fprintf(c.OutOrStdout(), "broke the lock of %s on %s (pid %d on %s%s, %q, held %s); recorded in %s\n",
				held.Owner, l.env.Name, held.PID, held.Host, run, held.Command, time.Since(held.Started).Round(time.Second), where)
			return nil
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why the lock is broken (recorded)")
	return c
}
