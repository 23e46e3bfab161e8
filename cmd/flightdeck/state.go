package main

import (
	"context"
	"errors"
	"flightdeck/internal/fsutil"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"flightdeck/engine"
	"flightdeck/targets/etcdstate"
)

// Environment variables that choose and configure the etcd state backend
// without the plan saying so (flags and the plan's state.etcd otherwise).
const (
	envEtcdEndpoints = "FLIGHTDECK_ETCD_ENDPOINTS"
	envEtcdPassword  = "FLIGHTDECK_ETCD_PASSWORD"
)

// stateStore is the state backend of a command and what closes it.
type stateStore struct {
	engine.StateBackend
	etcd *etcdstate.Store
	// stalls routes the store's waits to the engine's journal and stderr.
	stalls *stallReporter
}

func (s *stateStore) close() {
	if s.etcd != nil {
		s.etcd.Close()
	}
}

// etcdConfig is the etcd configuration from --etcd, the environment and
// the plan, or nil when the state stays in files.
func (l *loaded) etcdConfig(g *globals) (*etcdstate.Config, error) {
	var cfg etcdstate.Config
	pe := l.plan.State
	if pe != nil && pe.Etcd != nil {
		e := pe.Etcd
		cfg = etcdstate.Config{Endpoints: e.Endpoints, Prefix: e.Prefix, Username: e.Username, Lease: e.Lease.Duration}
		if t := e.TLS; t != nil {
			cfg.CA, cfg.Cert, cfg.Key, cfg.ServerName = t.CA, t.Cert, t.Key, t.ServerName
		}
		if e.PasswordFile != "" {
			b, err := fsutil.ReadFileLimit(e.PasswordFile, 64<<10)
			if err != nil {
				return nil, fmt.Errorf("state.etcd.password_file: %w", err)
			}
			cfg.Password = strings.TrimRight(string(b), "\r\n")
		}
	}
	eps := g.etcd
	if eps == "" {
		eps = os.Getenv(envEtcdEndpoints)
	}
	if eps != "" {
		cfg.Endpoints = nil
		for _, ep := range strings.Split(eps, ",") {
			if ep = strings.TrimSpace(ep); ep != "" {
				cfg.Endpoints = append(cfg.Endpoints, ep)
			}
		}
	}
	if len(cfg.Endpoints) == 0 {
		return nil, nil
	}
	if pw := os.Getenv(envEtcdPassword); pw != "" {
		cfg.Password = pw
	}
	if cfg.Username != "" && cfg.Password == "" {
		return nil, fmt.Errorf("etcd user %s needs a password: state.etcd.password_file or %s", cfg.Username, envEtcdPassword)
	}
	return &cfg, nil
}

// state opens the state backend: etcd when configured (it must answer and
// accept the credentials, else exit 2 before anything is touched), files
// under the state directory otherwise. stderr is told when etcd makes a
// run wait.
func (l *loaded) state(ctx context.Context, g *globals, stderr io.Writer) (*stateStore, error) {
	cfg, err := l.etcdConfig(g)
	if err != nil {
		return nil, badInput(err)
	}
	if cfg == nil {
		return &stateStore{StateBackend: engine.FileState{Dir: l.stateDir}}, nil
	}
	sr := &stallReporter{w: stderr}
	cfg.OnStall = sr.report
	s, err := etcdstate.Open(ctx, *cfg)
	if err != nil {
		return nil, badInput(fmt.Errorf("state backend: %w (nothing was touched)", err))
	}
	return &stateStore{StateBackend: etcdstate.Backend{Store: s}, etcd: s, stalls: sr}, nil
}

// loadState loads the plan and opens its state backend.
func (g *globals) loadState(c *cobra.Command) (*loaded, *stateStore, error) {
	l, err := g.load()
	if err != nil {
		return nil, nil, err
	}
	st, err := l.state(c.Context(), g, c.ErrOrStderr())
	if err != nil {
		return nil, nil, err
	}
	return l, st, nil
}

// stallReporter says on stderr when the run waits for etcd, and has the
// wait journaled once it is over.
type stallReporter struct {
	w io.Writer

	mu   sync.Mutex
	note func(string)
}

func (s *stallReporter) setNote(f func(string)) {
	s.mu.Lock()
	s.note = f
	s.mu.Unlock()
}

func (s *stallReporter) report(st etcdstate.Stall) {
	s.mu.Lock()
	note := s.note
	s.mu.Unlock()
	if !st.Over {
		fmt.Fprintf(s.w, "flightdeck: waiting for etcd (%s): %v; the run switches no host until etcd answers\n", st.What, st.Err)
		return
	}
	d := time.Since(st.Since).Round(100 * time.Millisecond)
	msg := fmt.Sprintf("etcd did not answer for %s (%s); the run waited and went on", d, st.What)
	if st.Err != nil {
		msg = fmt.Sprintf("etcd did not answer for %s (%s), then: %v", d, st.What, st.Err)
	}
	fmt.Fprintln(s.w, "flightdeck: "+msg)
	if note != nil {
		note(msg)
	}
}

func newStateCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "state",
		Short: "Manage where the journal and the locks live",
	}
	c.AddCommand(&cobra.Command{
		Use:   "push",
		Short: "Copy the local .flightdeck/ journal into etcd (idempotent)",
		Long: `Copy every run of the local journal (and the record of broken locks) into
the etcd cluster the plan (or --etcd) names, so that a team moves to etcd
without losing its history. Runs already in etcd get only the events they
lack; a run whose events differ is refused. Pushing twice copies nothing.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			l, st, err := g.loadState(c)
			if err != nil {
				return err
			}
			defer st.close()
			if st.etcd == nil {
				return badInput(errors.New("state push copies the local journal into etcd: name the cluster with state: {etcd: ...} in the plan, --etcd or " + envEtcdEndpoints))
			}
			if held, err := engine.ReadLock(l.stateDir, l.env.Name); err == nil {
				return &exitError{code: exitLocked, err: fmt.Errorf("a run holds the local lock of %s (%s, pid %d on %s): push once it has finished",
					l.env.Name, held.Owner, held.PID, held.Host)}
			}
			rep, err := st.etcd.Push(c.Context(), l.stateDir)
			out := c.OutOrStdout()
			if rep != nil {
				fmt.Fprintf(out, "pushed %d events of %d runs and %d unlock records from %s to %s; %d runs were already there\n",
					rep.Events, len(rep.Runs), rep.Unlocks, l.stateDir, st.Describe(), len(rep.Present))
			}
			return err
		},
	})
	return c
}
