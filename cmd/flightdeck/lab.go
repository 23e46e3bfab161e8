package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"flightdeck/engine"
	"flightdeck/targets/lab"
	"flightdeck/targets/lab/labinit"
)

// labError maps the lab's refusals to exit code 2 (bad input, nothing
// touched): no engine, a name in use, an unknown lab or host, a fault the
// host's state does not allow.
func labError(err error) error {
	var nd *lab.NoDaemonError
	var inUse *lab.InUseError
	var nf *lab.NotFoundError
	var uh *lab.UnknownHostError
	var se *lab.StateError
	switch {
	case errors.As(err, &nd), errors.As(err, &inUse), errors.As(err, &nf), errors.As(err, &uh), errors.As(err, &se):
		return badInput(err)
	}
	return err
}

type labFlags struct {
	name  string
	hosts int
	json  bool
}

func newLabCmd() *cobra.Command {
	var lf labFlags
	c := &cobra.Command{
		Use:   "lab",
		Short: "A fleet of local containers to rehearse releases and faults on",
		Long: `A lab is a fleet of local containers on a network of their own, each a host
with its own address and hostname running OpenSSH and the demo service,
built from what this machine has (no registry). Releases reach it over SSH
exactly as in production; training faults are real.

  flightdeck lab up [--hosts 8] [--name lab]   start it; prints a plan snippet
  flightdeck lab status                         hosts, addresses, states, faults
  flightdeck lab fault HOST kill|pause|partition|slow-net|restart
  flightdeck lab heal HOST                      undo every fault of HOST
  flightdeck lab down                           remove everything it created

It talks to the Docker Engine at DOCKER_HOST (default: the local socket);
Podman's Docker-compatible socket works too. Files (SSH key, known_hosts,
plan snippet) live in $FLIGHTDECK_LABS, else ~/.local/state/flightdeck/labs.`,
		Args: cobra.NoArgs,
	}
	c.PersistentFlags().StringVar(&lf.name, "name", lab.DefaultName, "the lab's name")
	c.AddCommand(newLabUpCmd(&lf), newLabStatusCmd(&lf), newLabDownCmd(&lf), newLabFaultCmd(&lf), newLabHealCmd(&lf))
	return c
}

// withDocker connects to the engine, runs fn, and closes the connection.
func withDocker(ctx context.Context, fn func(d *lab.Docker) error) error {
	d, err := lab.Connect(ctx)
	if err != nil {
		return labError(err)
	}
	defer d.Close()
	return labError(fn(d))
}

func newLabUpCmd(lf *labFlags) *cobra.Command {
	c := &cobra.Command{
		Use:   "up",
		Short: "Start a lab of N hosts and print the plan snippet that deploys to it",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := lab.ValidateName(lf.name); err != nil {
				return badInput(err)
			}
			if lf.hosts < 1 || lf.hosts > lab.MaxHosts {
				return badInput(fmt.Errorf("--hosts %d: choose 1 to %d", lf.hosts, lab.MaxHosts))
			}
			out := c.OutOrStdout()
			return withDocker(c.Context(), func(d *lab.Docker) error {
				l, rep, err := lab.Up(c.Context(), d, lab.Options{Name: lf.name, Hosts: lf.hosts, Log: c.ErrOrStderr()})
				if err != nil {
					if c.Context().Err() != nil {
						return fmt.Errorf("lab up interrupted; everything it had created is removed: %w", err)
					}
					return err
				}
				img := "cached"
				if rep.Image.Built {
					img = "built in " + rep.Image.Took.Round(time.Millisecond).String()
				}
				fmt.Fprintf(out, "lab %s: %d hosts answer SSH after %s (engine %s, API %s; image %s, %.1f MB, %s)\n\n",
					l.Name, len(l.Hosts), rep.Ready.Round(time.Millisecond), d.Server, d.APIVersion, rep.Image.Ref, float64(rep.Image.Size)/1e6, img)
				printLabHosts(out, l)
				fmt.Fprintf(out, "\nSSH key      %s\nknown_hosts  %s\nlog in       ssh -i %s -o UserKnownHostsFile=%s root@%s\n",
					l.KeyFile(), l.KnownHostsFile(), l.KeyFile(), l.KnownHostsFile(), l.Hosts[0].Addr)
				fmt.Fprintf(out, "\nplan snippet (also in %s):\n\n%s", l.SnippetFile(), l.Snippet())
				return nil
			})
		},
	}
	c.Flags().IntVar(&lf.hosts, "hosts", lab.DefaultHosts, "number of hosts")
	return c
}

func printLabHosts(w io.Writer, l *lab.Lab) {
	last := map[string]lab.FaultRecord{}
	if recs, err := l.Faults(); err == nil {
		for _, r := range recs {
			last[r.Host] = r
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tADDRESS\tCONTAINER\tSTATE\tLAST FAULT")
	for _, h := range l.Hosts {
		f := "-"
		if r, ok := last[h.Name]; ok {
			f = fmt.Sprintf("%s by %s %s ago", r.Action, r.Actor, time.Since(r.Time).Round(time.Second))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", h.Name, h.Addr, h.Container, h.Condition(), f)
	}
	tw.Flush()
}

func newLabStatusCmd(lf *labFlags) *cobra.Command {
	c := &cobra.Command{
		Use:   "status",
		Short: "List the lab's hosts with their state (finds a lab started earlier)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			out := c.OutOrStdout()
			return withDocker(c.Context(), func(d *lab.Docker) error {
				l, err := lab.Open(c.Context(), d, lf.name, "")
				if err != nil {
					return err
				}
				if lf.json {
					type host struct {
						Name      string `json:"name"`
						Address   string `json:"address"`
						Container string `json:"container"`
						State     string `json:"state"`
						Condition string `json:"condition"`
						OnNetwork bool   `json:"on_network"`
						SlowNet   string `json:"slow_net,omitempty"`
					}
					v := struct {
						Name       string `json:"name"`
						Network    string `json:"network"`
						Subnet     string `json:"subnet"`
						Dir        string `json:"dir"`
						KeyFile    string `json:"key_file"`
						KnownHosts string `json:"known_hosts"`
						Hosts      []host `json:"hosts"`
					}{Name: l.Name, Network: l.Network, Subnet: l.Subnet.String(), Dir: l.Dir, KeyFile: l.KeyFile(), KnownHosts: l.KnownHostsFile()}
					for _, h := range l.Hosts {
						v.Hosts = append(v.Hosts, host{h.Name, h.Addr.String(), h.Container, h.State, h.Condition(), h.OnNetwork, h.SlowNet})
					}
					enc := json.NewEncoder(out)
					enc.SetIndent("", "  ")
					return enc.Encode(v)
				}
				fmt.Fprintf(out, "lab %s: %d hosts on %s (%s)\n\n", l.Name, len(l.Hosts), l.Network, l.Subnet)
				printLabHosts(out, l)
				fmt.Fprintf(out, "\nSSH key      %s\nknown_hosts  %s\nplan snippet %s\n", l.KeyFile(), l.KnownHostsFile(), l.SnippetFile())
				return nil
			})
		},
	}
	c.Flags().BoolVar(&lf.json, "json", false, "print JSON")
	return c
}

func newLabDownCmd(lf *labFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Remove the lab: its containers, volumes, network and files, nothing else",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := lab.ValidateName(lf.name); err != nil {
				return badInput(err)
			}
			return withDocker(c.Context(), func(d *lab.Docker) error {
				// Removal is finished even when interrupted: a half-removed lab helps nobody.
				ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Context()), 2*time.Minute)
				defer cancel()
				n, err := d.Objects(ctx, lf.name)
				if err != nil {
					return err
				}
				if err := lab.Down(ctx, d, lf.name, ""); err != nil {
					return err
				}
				if n == 0 {
					fmt.Fprintf(c.OutOrStdout(), "lab %s: nothing to remove (no container, volume or network carries %s=%s)\n", lf.name, lab.LabelLab, lf.name)
					return nil
				}
				fmt.Fprintf(c.OutOrStdout(), "lab %s removed (every container, volume and network labelled %s=%s, and its files)\n", lf.name, lab.LabelLab, lf.name)
				return nil
			})
		},
	}
}

func newLabFaultCmd(lf *labFlags) *cobra.Command {
	var names []string
	for _, f := range lab.Faults() {
		names = append(names, string(f))
	}
	return &cobra.Command{
		Use:   "fault HOST " + strings.Join(names, "|"),
		Short: "Put a lab host into a real fault (recorded in the lab's fault log)",
		Long: `Put a lab host into a real fault, for training:
  kill       the container dies (SIGKILL to every process)
  pause      a hung host: every process frozen, TCP connections stay open
  partition  the host drops off the lab network
  slow-net   a slow link: netem delay where the kernel has it, else a tbf rate limit
  restart    a reboot: sshd and the services come back
` + "`flightdeck lab heal HOST` undoes it.",
		Args: cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			f, err := lab.ParseFault(args[1])
			if err != nil {
				return badInput(err)
			}
			return withDocker(c.Context(), func(d *lab.Docker) error {
				l, err := lab.Open(c.Context(), d, lf.name, "")
				if err != nil {
					return err
				}
				detail, err := l.Fault(c.Context(), args[0], f, engine.LocalActor("cli").Name)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.OutOrStdout(), "%s: %s: %s\n", args[0], f, detail)
				if f == lab.FaultRestart {
					if err := l.WaitSSH(c.Context(), 30*time.Second, args[0]); err != nil {
						return err
					}
					fmt.Fprintf(c.OutOrStdout(), "%s answers SSH again\n", args[0])
				}
				return nil
			})
		},
	}
}

func newLabHealCmd(lf *labFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "heal HOST",
		Short: "Undo every fault of a lab host and wait until it answers SSH",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return withDocker(c.Context(), func(d *lab.Docker) error {
				l, err := lab.Open(c.Context(), d, lf.name, "")
				if err != nil {
					return err
				}
				detail, err := l.Heal(c.Context(), args[0], engine.LocalActor("cli").Name)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.OutOrStdout(), "%s: %s; it answers SSH\n", args[0], detail)
				return nil
			})
		},
	}
}

// newLabInitCmd is the init of a lab host (run inside its container).
func newLabInitCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "lab-init",
		Short:  "Run a lab host: sshd and the demo services (inside a lab container)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return labinit.Run(c.Context(), labinit.Config{Log: c.ErrOrStderr()})
		},
	}
}
