package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/charmbracelet/x/term"
	"github.com/spf13/cobra"

	"flightdeck/engine/advise"
	"flightdeck/engine/plan"
)

func newAdviseCmd(g *globals) *cobra.Command {
	var jsonOut bool
	answers := map[advise.Question]*bool{}
	c := &cobra.Command{
		Use:   "advise",
		Short: "Recommend a release strategy from four questions about your infrastructure",
		Long: `advise recommends a release strategy from four questions:

  --lb                  is there a load balancer in front of several instances?
  --double-capacity     can you afford double the stateless capacity during a release?
  --fast-observability  can your observability detect a regression on 1-5% of
                        traffic within 60 s?
  --feature             are you validating a feature (A/B) rather than shipping a release?

No load balancer: atomic symlink. Load balancer and double capacity:
blue/green. Otherwise fast observability: canary, else rolling. A feature
adds A/B on top. Each answer is a flag (--lb=false works); with -f PLAN the
plan answers what it can; questions left open are asked on a terminal.`,
		Example: `  flightdeck advise --lb --double-capacity=false --fast-observability
  flightdeck advise -f flightdeck.yaml --json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			a := advise.Answers{}
			for q, v := range answers {
				if c.Flags().Changed(string(q)) {
					a.Set(q, advise.Answer{Yes: *v, Source: advise.SourceFlag})
				}
			}
			env := ""
			if c.Flags().Changed("file") {
				e, err := adviseEnv(g)
				if err != nil {
					return err
				}
				env = e.Name
				for q, ans := range advise.FromPlan(e) {
					a.Set(q, ans)
				}
			}
			if f, ok := c.InOrStdin().(*os.File); ok && term.IsTerminal(f.Fd()) {
				if err := askAdvice(c.Context(), c.InOrStdin(), c.ErrOrStderr(), a); err != nil {
					return err
				}
			}
			for _, q := range a.Optional() {
				a.Set(q, advise.Answer{Yes: false, Source: advise.SourceDefault,
					Why: "shipping a release (" + q.Flag() + " to validate a feature)"})
			}
			r, err := advise.Recommend(a)
			if err != nil {
				return badInput(err)
			}
			if env != "" {
				r.Snippet = advise.Snippet(r.Strategy, env)
				if r.AB {
					r.ABSnippet = advise.Snippet(plan.AB, env)
				}
			}
			out := c.OutOrStdout()
			if jsonOut {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					Title string `json:"title"`
					advise.Recommendation
				}{r.Title(), r})
			}
			_, err = io.WriteString(out, r.Text())
			return err
		},
	}
	for _, q := range advise.Questions() {
		answers[q] = c.Flags().Bool(string(q), false, q.Text())
	}
	c.Flags().BoolVar(&jsonOut, "json", false, "print the recommendation as JSON")
	return c
}

// adviseEnv loads the plan named by -f and picks the environment of --env.
func adviseEnv(g *globals) (*plan.Environment, error) {
	p, err := plan.Load(g.planFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, badInput(err)
	}
	if err != nil {
		return nil, err
	}
	e, err := p.Env(g.env)
	if err != nil {
		return nil, badInput(err)
	}
	return e, nil
}

// askAdvice asks, on a terminal, each question that still matters and then
// the optional ones, recording the answers in a. Questions the flags or the
// plan answered are not asked again; answers the plan gave are shown first.
func askAdvice(ctx context.Context, in io.Reader, out io.Writer, a advise.Answers) error {
	for _, q := range advise.Questions() {
		if ans, ok := a[q]; ok && ans.Source == advise.SourcePlan {
			fmt.Fprintf(out, "%s %s (from the plan: %s)\n", q.Text(), yesNo(ans.Yes), ans.Why)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lines := readLines(ctx, in)
	ask := func(q advise.Question) error {
		yes, err := askYesNo(ctx, lines, out, q.Text())
		if err != nil {
			return err
		}
		a.Set(q, advise.Answer{Yes: yes, Source: advise.SourcePrompt})
		return nil
	}
	for needed := a.Needed(); len(needed) > 0; needed = a.Needed() {
		if err := ask(needed[0]); err != nil {
			return err
		}
	}
	for _, q := range a.Optional() {
		if err := ask(q); err != nil {
			return err
		}
	}
	fmt.Fprintln(out)
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// readLines delivers the lines of r on a channel, closed at the end of r.
// Reading happens in its own goroutine so that a prompt can give up when
// its context ends (Ctrl-C) while the read is still blocked; the goroutine
// stops at the end of r or, after ctx ends, at the next line read.
func readLines(ctx context.Context, r io.Reader) <-chan string {
	ch := make(chan string)
	go func() {
		defer close(ch)
		s := bufio.NewScanner(r)
		for s.Scan() {
			select {
			case ch <- s.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// askYesNo asks question on out until a line of lines answers it with y,
// yes, n or no (any case).
func askYesNo(ctx context.Context, lines <-chan string, out io.Writer, question string) (bool, error) {
	for {
		fmt.Fprintf(out, "%s [y/n] ", question)
		select {
		case <-ctx.Done():
			fmt.Fprintln(out)
			return false, ctx.Err()
		case line, ok := <-lines:
			if !ok {
				fmt.Fprintln(out)
				return false, badInput(fmt.Errorf("no answer to %q: input ended", question))
			}
			switch strings.ToLower(strings.TrimSpace(line)) {
			case "y", "yes":
				return true, nil
			case "n", "no":
				return false, nil
			}
			fmt.Fprintln(out, "Please answer y or n.")
		}
	}
}
