package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"flightdeck/engine"
	"flightdeck/engine/plan"
	"flightdeck/targets/local"
	fdssh "flightdeck/targets/ssh"
	"flightdeck/tui"
	"flightdeck/tui/lines"
)

// loaded is a validated plan with its chosen environment.
type loaded struct {
	plan     *plan.Plan
	env      *plan.Environment
	stateDir string
	pool     *fdssh.Pool

	mu      sync.Mutex
	notices []string
	// stops release what the environment's engine holds (a load
	// balancer's log stream).
	stops []func()
}

// load reads the plan and picks the environment; every problem is bad input.
func (g *globals) load() (*loaded, error) {
	if err := engine.CheckLocalActor(); err != nil {
		return nil, badInput(err)
	}
	p, err := plan.Load(g.planFile)
	if err != nil {
		return nil, badInput(err)
	}
	env, err := p.Env(g.env)
	if err != nil {
		return nil, badInput(err)
	}
	sd := g.stateDir
	if sd == "" {
		sd = filepath.Join(p.Dir, ".flightdeck")
	}
	return &loaded{plan: p, env: env, stateDir: sd}, nil
}

// buildOptions keep a git source between builds under the state directory.
func (l *loaded) buildOptions() engine.BuildOptions {
	return engine.BuildOptions{CacheDir: filepath.Join(l.stateDir, "build-cache")}
}

// hosts builds the engine's hosts for the environment: directories here,
// or servers over SSH (one connection per host for the whole command).
func (l *loaded) hosts(g *globals) ([]engine.Host, error) {
	var hs []engine.Host
	var resolver *fdssh.Resolver
	for _, h := range l.env.Hosts {
		switch {
		case h.Local != "":
			var opts []local.Option
			if l.plan.VerifyReleases == plan.VerifyFull {
				opts = append(opts, local.WithFullVerify())
			}
			hs = append(hs, local.New(h.Name, h.Local, opts...))
		case h.SSH != "":
			if resolver == nil {
				r, err := fdssh.NewResolver(fdssh.ResolveOptions{})
				if err != nil {
					return nil, err
				}
				resolver = r
				l.pool = fdssh.NewPool(fdssh.PoolOptions{OnHostKeyAccepted: l.keyAccepted, OnWarning: l.warning,
					FullVerify: l.plan.VerifyReleases == plan.VerifyFull, KeeperCommand: keeperCommand()}.WithSettings(l.env.SSH))
			}
			t, err := resolver.Resolve(h, l.env)
			if err != nil {
				return nil, badInput(fmt.Errorf("%s:%d:%d: host %s: %w", l.plan.File, h.Line, h.Column, h.Name, err))
			}
			if g.acceptNewHostKeys {
				t.AcceptNewHostKeys = true
			}
			hs = append(hs, l.pool.Host(h.Name, t))
		}
	}
	limitMemory(len(hs))
	return hs, nil
}

// keyAccepted records a host key trusted on first use, for the journal.
func (l *loaded) keyAccepted(host, fingerprint string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.notices = append(l.notices, fmt.Sprintf("trusted the new host key of %s (%s) and recorded it in known_hosts (--accept-new-host-keys)", host, fingerprint))
}

// warning records an SSH warning (an identity file others can read) for
// the journal.
func (l *loaded) warning(msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.notices = append(l.notices, "warning: "+msg)
}

// takeNotices returns what happened outside a run that its journal must say.
func (l *loaded) takeNotices() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.notices
	l.notices = nil
	return n
}

func (l *loaded) engine(hosts []engine.Host, hub *engine.Hub) (*engine.Engine, error) {
	backends := map[string]string{}
	for _, h := range l.env.Hosts {
		if h.Backend != "" {
			backends[h.Name] = h.Backend
		}
	}
	rt, metrics, stop, err := routerFor(l.env, l.stateDir)
	if err != nil {
		return nil, err
	}
	l.stops = append(l.stops, stop)
	return &engine.Engine{Plan: l.plan, Env: l.env, Hosts: hosts, StateDir: l.stateDir, Hub: hub,
		Backends: backends, Router: rt, Metrics: metrics, Notices: l.takeNotices}, nil
}

func (l *loaded) close(hs []engine.Host) {
	for _, stop := range l.stops {
		stop()
	}
	l.stops = nil
	// The SSH pool first: through the connection keeper its hosts end at
	// once with its one connection, where each host closed on its own
	// waits for the keeper's answer (500 hosts: ~10 s).
	if l.pool != nil {
		_ = l.pool.Close()
	}
	for _, h := range hs {
		_ = h.Close()
	}
}

// follow prints the hub's events until done is closed.
func follow(ctx context.Context, w io.Writer, hub *engine.Hub, asJSON bool) (stop func()) {
	sub := hub.Subscribe(1 << 16)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		lines.New(w, asJSON).Follow(ctx, sub, done)
	}()
	return func() {
		close(done)
		<-finished
		sub.Close()
	}
}

// outcome maps a finished run to the command's result.
func outcome(st *engine.State, err error) error {
	if err != nil {
		if errors.Is(err, engine.ErrInterrupted) {
			return &exitError{code: exitFailed, err: fmt.Errorf("%w: run `flightdeck resume` to finish it", err)}
		}
		return err
	}
	if st == nil {
		return nil
	}
	if st.Outcome != engine.OutcomeSucceeded {
		msg := fmt.Sprintf("run %s %s", st.Run, strings.ReplaceAll(string(st.Outcome), "_", " "))
		if st.Err != "" {
			msg += ": " + st.Err
		}
		return &exitError{code: exitFailed, err: errors.New(msg)}
	}
	return nil
}

func newDeployCmd(g *globals) *cobra.Command {
	var release, reason string
	var acks []string
	var skipPromotion, noRollbackPath bool
	c := &cobra.Command{
		Use:   "deploy",
		Short: "Build the release and roll it out to the environment",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			l, err := g.load()
			if err != nil {
				return err
			}
			if release == "" {
				release = engine.NewReleaseID(time.Now())
			}
			if err := engine.ValidateReleaseID(release); err != nil {
				return badInput(fmt.Errorf("--release: %w", err))
			}
			if (skipPromotion || noRollbackPath) && strings.TrimSpace(reason) == "" {
				return badInput(errors.New("--skip-promotion-check and --no-rollback-path need --reason TEXT (it is journaled)"))
			}
			ackMap, err := parseAcks(acks, engine.LocalActor("cli").Name)
			if err != nil {
				return badInput(err)
			}
			r, err := l.open(c, g)
			if err != nil {
				return err
			}
			defer r.close()
			out := c.OutOrStdout()
			r.predial(c.Context())
			if !g.json {
				fmt.Fprintf(out, "building %s from %s\n", release, describeSource(l.plan))
			}
			art, cleanup, err := engine.BuildWith(c.Context(), l.plan, release, buildOutput(out, g.json), l.buildOptions())
			defer cleanup()
			if err != nil {
				return &exitError{code: exitFailed, err: fmt.Errorf("build failed; no host was touched: %w", err)}
			}
			r.eng.Acks = ackMap
			if skipPromotion {
				r.eng.SkipPromotionCheck = reason
			}
			if noRollbackPath {
				r.eng.SkipRollbackPath = reason
			}
			return r.run(c, g, true, func(ctx context.Context, a engine.Actor) (*engine.State, error) {
				return r.eng.Deploy(ctx, a, art, commandLine())
			})
		},
	}
	c.Flags().StringVar(&release, "release", "", "release id (default: the UTC time as YYYYMMDDHHMMSS)")
	c.Flags().StringArrayVar(&acks, "ack", nil, "acknowledge a checklist item with a reason, e.g. --ack migrations='column unused since r41' (journaled; repeatable)")
	c.Flags().BoolVar(&skipPromotion, "skip-promotion-check", false, "deploy even if the release did not finish in the previous environment (3-2-1 rule; needs --reason)")
	c.Flags().BoolVar(&noRollbackPath, "no-rollback-path", false, "deploy even if a host's previous release is missing or damaged (needs --reason)")
	c.Flags().StringVar(&reason, "reason", "", "why a safety check is overridden (journaled)")
	addOutputFlags(c, g)
	return c
}

func newRollbackCmd(g *globals) *cobra.Command {
	var to string
	c := &cobra.Command{
		Use:   "rollback",
		Short: "Put every host of the environment back on one release",
		Long: `Put every host back on one named release (--to), by default the release
that was live before the last successful deploy, as recorded in the journal.
A host that lacks the release is reported and fails the rollback.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			l, err := g.load()
			if err != nil {
				return err
			}
			if to != "" {
				if err := engine.ValidateReleaseID(to); err != nil {
					return badInput(fmt.Errorf("--to: %w", err))
				}
			}
			r, err := l.open(c, g)
			if err != nil {
				return err
			}
			defer r.close()
			r.predial(c.Context()) // beside taking the lock and reading the journal
			return r.run(c, g, true, func(ctx context.Context, a engine.Actor) (*engine.State, error) {
				return r.eng.Rollback(ctx, a, to, commandLine())
			})
		},
	}
	c.Flags().StringVar(&to, "to", "", "release id to roll back to (default: the one before the last deploy)")
	addOutputFlags(c, g)
	return c
}

func newAdoptCmd(g *globals) *cobra.Command {
	var ids []string
	c := &cobra.Command{
		Use:   "adopt",
		Short: "Adopt releases made by Capistrano: hash them into manifests, make their files read-only",
		Long: `Make releases that another tool (Capistrano) put under releases/ into
flightdeck releases, on every host of the environment, under its lock: each
release's files lose their write bits (release files are read-only: they
are shared by hard links), are hashed on the host into the release's
manifest, and the manifest is written into the release. Nothing is
switched. Afterwards the release can be verified, rolled back to, and its
unchanged files are hard-linked by the next deploy. The run is journaled.
Releases that have a manifest already are left alone.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			l, err := g.load()
			if err != nil {
				return err
			}
			for _, id := range ids {
				if err := engine.ValidateReleaseID(id); err != nil {
					return badInput(fmt.Errorf("--release: %w", err))
				}
			}
			r, err := l.open(c, g)
			if err != nil {
				return err
			}
			defer r.close()
			return r.run(c, g, false, func(ctx context.Context, a engine.Actor) (*engine.State, error) {
				return r.eng.Adopt(ctx, a, ids, commandLine())
			})
		},
	}
	c.Flags().StringSliceVar(&ids, "release", nil, "release id to adopt (repeatable; default: every release on every host)")
	addOutputFlags(c, g)
	return c
}

func newResumeCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "resume",
		Short: "Finish a run whose process died (or roll it back)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			l, err := g.load()
			if err != nil {
				return err
			}
			r, err := l.open(c, g)
			if err != nil {
				return err
			}
			defer r.close()
			var nothing bool
			err = r.run(c, g, false, func(ctx context.Context, a engine.Actor) (*engine.State, error) {
				st, err := r.eng.Resume(ctx, a, commandLine())
				nothing = err == nil && st == nil
				return st, err
			})
			if nothing {
				fmt.Fprintf(c.OutOrStdout(), "nothing to resume in %s\n", l.env.Name)
			}
			return err
		},
	}
	addOutputFlags(c, g)
	return c
}

// envRun is an environment ready to run: the plan, its hosts and an engine.
type envRun struct {
	*loaded
	hosts []engine.Host
	hub   *engine.Hub
	eng   *engine.Engine
	state *stateStore
	// stopDial cancels the dials started by predial.
	stopDial context.CancelFunc
}

// open opens the state backend (a store that does not answer is bad input:
// nothing is touched), connects the environment's hosts and builds its
// engine.
func (l *loaded) open(c *cobra.Command, g *globals) (*envRun, error) {
	st, err := l.state(c.Context(), g, c.ErrOrStderr())
	if err != nil {
		return nil, err
	}
	hosts, err := l.hosts(g)
	if err != nil {
		st.close()
		return nil, err
	}
	hub := engine.NewHub()
	eng, err := l.engine(hosts, hub)
	if err != nil {
		l.close(hosts)
		st.close()
		return nil, err
	}
	eng.State = st.StateBackend
	if st.stalls != nil {
		st.stalls.setNote(eng.Note)
	}
	return &envRun{loaded: l, hosts: hosts, hub: hub, eng: eng, state: st}, nil
}

func (r *envRun) close() {
	if r.stopDial != nil {
		r.stopDial()
	}
	r.loaded.close(r.hosts)
	r.state.close()
}

// predial connects to every host that connects ahead (SSH: dial, host key
// check, authentication, SFTP) in the background, so that the dials overlap
// the build, and has an etcd state backend grant the lock's lease ahead.
// It changes nothing on any host; an error is left for the run's first
// operation on that host, which dials again and reports it.
func (r *envRun) predial(ctx context.Context) {
	if r.state.etcd != nil {
		r.state.etcd.Prepare(r.eng.Env.Name)
	}
	ctx, r.stopDial = context.WithCancel(ctx)
	for _, h := range r.hosts {
		if c, ok := h.(interface{ Connect(context.Context) error }); ok {
			go func() { _ = c.Connect(ctx) }()
		}
	}
}

// run carries out start in the cockpit (on a terminal, unless --headless,
// when cockpitOK) or with one line per event, and maps the outcome to the
// exit code.
func (r *envRun) run(c *cobra.Command, g *globals, cockpitOK bool, start func(context.Context, engine.Actor) (*engine.State, error)) error {
	if cockpitOK && !g.headless && !g.json && interactive(c) {
		return r.cockpit(c, g, r.eng, start)
	}
	stop := follow(c.Context(), c.OutOrStdout(), r.hub, g.json)
	st, err := start(c.Context(), engine.LocalActor("cli"))
	stop()
	return outcome(st, err)
}

// cockpit opens the cockpit on the environment while start runs; between
// runs `d` builds and deploys a new release and `r` rolls back.
func (l *loaded) cockpit(c *cobra.Command, g *globals, eng *engine.Engine, start func(context.Context, engine.Actor) (*engine.State, error)) error {
	opts, err := cockpitOptions(g, l.plan, l.env)
	if err != nil {
		return err
	}
	sctx, stopSampler := context.WithCancel(c.Context())
	defer stopSampler()
	backend := &tui.EngineBackend{Engine: eng, Command: commandLine(),
		Sampler: liveSampler(sctx, l.env, eng.Router, eng.Metrics, eng.Hub),
		Build: func(ctx context.Context) (*engine.Artifact, func(), error) {
			return engine.BuildWith(ctx, l.plan, engine.NewReleaseID(time.Now()), io.Discard, l.buildOptions())
		}}
	backend.SetPresence([]tui.Presence{{Name: opts.Actor.Name, Role: opts.Actor.Role, Via: "local"}})
	return cockpit(c, backend, opts, func(ctx context.Context) (*engine.State, error) { return start(ctx, opts.Actor) })
}

// parseAcks reads --ack ID=REASON flags.
func parseAcks(acks []string, by string) (map[string]engine.Ack, error) {
	out := map[string]engine.Ack{}
	for _, a := range acks {
		id, reason, ok := strings.Cut(a, "=")
		if !ok || strings.TrimSpace(reason) == "" {
			return nil, fmt.Errorf("--ack %q: write ITEM=REASON, e.g. --ack migrations='column unused since r41'", a)
		}
		if !slices.Contains(plan.ChecklistItems(), id) {
			return nil, fmt.Errorf("--ack %q: unknown checklist item (one of %s)", id, strings.Join(plan.ChecklistItems(), ", "))
		}
		out[id] = engine.Ack{By: by, Reason: reason}
	}
	return out, nil
}

func describeSource(p *plan.Plan) string {
	if s := p.Source; s != nil && s.Git != nil {
		ref := s.Git.Ref
		if ref == "" {
			ref = "HEAD"
		}
		return fmt.Sprintf("git %s@%s", s.Git.Repo, ref)
	}
	if p.Source != nil {
		return p.Source.Dir
	}
	return "?"
}

func buildOutput(w io.Writer, asJSON bool) io.Writer {
	if asJSON {
		return os.Stderr
	}
	return w
}

func commandLine() string {
	return strings.Join(append([]string{filepath.Base(os.Args[0])}, os.Args[1:]...), " ")
}
