// Package demo is the self-contained demo fleet: N local hosts, one service
// process per host slot (the flightdeck binary in its hidden demo-service
// mode), a traffic layer in front of them (the built-in router, or a real
// HAProxy or nginx), probe traffic, and releases of a small web service
// run through the real engine. Nothing is simulated.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"flightdeck/engine"
	"flightdeck/engine/plan"
	"flightdeck/internal/freeport"
	"flightdeck/targets/demo/service"
	"flightdeck/targets/lab"
	"flightdeck/targets/local"
	"flightdeck/targets/router"
)

// Options configures a demo fleet.
type Options struct {
	Hosts    int
	Strategy plan.StrategyKind
	Scenario Scenario
	Rate     int
	// Dir holds everything (default: a new temporary directory, removed on Close).
	Dir string
	// Binary is the flightdeck executable run as the service (default: this one).
	Binary string
	// Interactive paces the release for people: canary steps hold ≥ 10 s,
	// waves pause ≥ 3 s.
	Interactive bool
	// Log receives progress lines of the fleet itself (not the engine's events).
	Log io.Writer
	// Lab, when set, is a running lab whose containers are the hosts:
	// releases go over SSH (host keys verified), each host's services run
	// in its container, and fault scenarios use real faults. Hosts is then
	// the lab's size.
	Lab *lab.Lab
	// KeepLab says the lab outlives the fleet: Close heals the faults the
	// fleet caused and stops its services, so that the next demo finds the
	// lab as it was (each fleet deploys to a directory of its own).
	KeepLab bool
	// Router is the traffic layer: flightdeck (the built-in router, the
	// default), haproxy or nginx (a real one, started for the demo).
	Router string
}

// Fleet is a running demo fleet.
type Fleet struct {
	opts     Options
	Dir      string
	ownDir   bool
	PlanFile string
	Plan     *plan.Plan
	Env      *plan.Environment
	Hosts    []engine.Host
	Hub      *engine.Hub
	Engine   *engine.Engine
	ProxyURL string

	traffic *traffic
	sup     *Supervisor
	src     string
	onLab   *onLab // nil unless the fleet runs on a lab
	faulty  *faultHost

	mu   sync.Mutex
	next int
}

// Start builds the fleet, starts the router and the services of release
// v1 (deployed through the engine), and returns once the fleet serves.
func Start(ctx context.Context, opts Options) (_ *Fleet, err error) {
	if opts.Hosts <= 0 {
		opts.Hosts = 8
	}
	if opts.Rate <= 0 {
		opts.Rate = 200
	}
	if opts.Strategy == "" {
		opts.Strategy = plan.Canary
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.Binary == "" {
		if opts.Binary, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find the flightdeck binary: %w", err)
		}
	}
	if opts.Lab != nil {
		opts.Hosts = len(opts.Lab.Hosts)
	}
	if err := checkScenario(opts); err != nil {
		return nil, err
	}
	f := &Fleet{opts: opts, Hub: engine.NewHub(), next: 1}
	if opts.Dir == "" {
		if f.Dir, err = os.MkdirTemp("", "flightdeck-demo-"); err != nil {
			return nil, err
		}
		f.ownDir = true
	} else {
		// Absolute: the plan names host paths that must resolve from the
		// plan's own folder, and the hosts must be where --dir says, from
		// wherever the demo was started.
		if f.Dir, err = filepath.Abs(opts.Dir); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(f.Dir, 0o755); err != nil {
			return nil, err
		}
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	f.src = filepath.Join(f.Dir, "src")
	if err := os.MkdirAll(f.src, 0o755); err != nil {
		return nil, err
	}
	var ports freeport.Set
	defer ports.Release()
	if err := f.prepareTraffic(&ports); err != nil {
		return nil, err
	}
	if opts.Lab != nil {
		f.onLab = newOnLab(opts.Lab, opts.KeepLab)
	} else if f.sup, err = NewSupervisor(opts.Binary, filepath.Join(f.Dir, "ctl.sock"), filepath.Join(f.Dir, "logs")); err != nil {
		return nil, err
	}
	if err := f.writePlan(&ports); err != nil {
		return nil, err
	}
	ports.Release()
	if f.onLab != nil {
		if f.Hosts, err = f.onLab.hosts(f.Env); err != nil {
			return nil, err
		}
	} else {
		for _, h := range f.Env.Hosts {
			f.Hosts = append(f.Hosts, local.New(h.Name, h.Local))
		}
	}
	f.wrapFaultHost()
	stateDir := filepath.Join(f.Dir, ".flightdeck")
	if err := f.traffic.start(ctx, f.Env, stateDir); err != nil {
		return nil, fmt.Errorf("start %s: %w", f.traffic.describe(), err)
	}
	f.Engine = &engine.Engine{
		Plan: f.Plan, Env: f.Env, Hosts: f.Hosts, StateDir: stateDir, Hub: f.Hub,
		Router: f.traffic.rtr, Metrics: router.NewMetrics(f.traffic.stats),
	}
	if f.opts.Strategy == plan.Symlink {
		// The engine switches links and moves no traffic; the router keeps
		// one pool whose hosts serve whatever their current link holds.
		f.Engine.Router = nil
		f.Engine.Metrics = poolMetrics{pool: symlinkPool, m: router.NewMetrics(f.traffic.stats)}
	}
	if opts.Interactive {
		f.Engine.MinHold = 10 * time.Second
	}
	where := "in " + f.Dir
	if f.onLab != nil {
		where = fmt.Sprintf("on lab %s (%s, over SSH, deploy_to %s)", opts.Lab.Name, opts.Lab.Subnet, f.onLab.deployTo)
	}
	fmt.Fprintf(opts.Log, "demo fleet: %d hosts %s, %s on %s, strategy %s\n", opts.Hosts, where, f.traffic.describe(), f.ProxyURL, opts.Strategy)
	if err := f.bootstrap(ctx); err != nil {
		return nil, fmt.Errorf("start the fleet on v1: %w", err)
	}
	return f, nil
}

// symlinkPool is the router's one pool in a symlink demo.
const symlinkPool = "fleet"

// poolMetrics measures a release by the traffic of one router pool: in a
// symlink demo every host serves its current release from one pool, so
// once the hosts are switched (the gate's and the trigger's last window,
// with all the traffic) that pool's traffic is the release's. Without it
// the gate and the trigger measured a pool named after the release, which
// no request ever reached, and a bad release ended SUCCEEDED on "no data".
type poolMetrics struct {
	pool string
	m    engine.MetricsSource
}

// Measure implements engine.MetricsSource.
func (p poolMetrics) Measure(ctx context.Context, release string, window time.Duration) (engine.Measurement, error) {
	m, err := p.m.Measure(ctx, p.pool, window)
	m.Release = release
	return m, err
}

// Traffic is the fleet's traffic layer (also for a symlink fleet, whose
// engine drives no router): the live SLO sampler reads its counters.
func (f *Fleet) Traffic() engine.Router { return f.traffic.rtr }

// slots reports whether the strategy runs two colours per host.
func (f *Fleet) slots() bool {
	return f.opts.Strategy == plan.BlueGreen || f.opts.Strategy == plan.AB
}

func (f *Fleet) writePlan(ports *freeport.Set) error {
	var b strings.Builder
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
	fmt.Fprintf(&b, "# Written by `flightdeck demo`: the demo fleet's release plan.\napp: demo-shop\nsource: ./src\nkeep_releases: 4\n")
	fmt.Fprintf(&b, "smoke:\n  - {name: home page, url: 'http://{backend}/', status: 200, body: release}\n  - {name: version, url: 'http://{backend}/version', status: 200}\n")
	if f.opts.Strategy != plan.Symlink {
		restart := fmt.Sprintf("%s demo-ctl --sock %s", shellQuote(f.opts.Binary), shellQuote(filepath.Join(f.Dir, "ctl.sock")))
		if f.onLab != nil {
			restart = lab.BinaryPath + " demo-ctl --sock " + lab.CtlSock
		}
		fmt.Fprintf(&b, "restart: %s\n", q(restart))
	} else {
		fmt.Fprintf(&b, "health:\n  url: 'http://{backend}/healthz'\n  timeout: 30s\n")
	}
	fmt.Fprintf(&b, "environments:\n  demo:\n")
	if f.onLab != nil {
		f.onLab.writeSSH(&b, q)
	}
	fmt.Fprintf(&b, "    hosts:\n")
	for i := range f.opts.Hosts {
		name := fmt.Sprintf("web-%d", i+1)
		if f.onLab != nil {
			f.onLab.writeHost(&b, i, f.slots())
			continue
		}
		fmt.Fprintf(&b, "      - name: %s\n        local: %s\n", name, q(filepath.Join(f.Dir, "hosts", name)))
		if f.slots() {
			blue, err := ports.Port()
			if err != nil {
				return err
			}
			green, err := ports.Port()
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "        slots: {blue: '127.0.0.1:%s', green: '127.0.0.1:%s'}\n", blue, green)
		} else {
			p, err := ports.Port()
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "        backend: '127.0.0.1:%s'\n", p)
		}
	}
	pause := "0s"
	if f.opts.Interactive {
		pause = "3s"
	}
	// Every host of the demo runs on this machine, so working on more
	// hosts at once than it has cores only makes them queue for the CPU:
	// a blue/green deploy starting every host's idle slot at once (two
	// process start-ups each, the restart hook and the service) starved
	// the router, the probe and the serving slots for about a second.
	fmt.Fprintf(&b, "    parallel: %d\n", runtime.NumCPU())
	fmt.Fprintf(&b, "    strategy:\n      kind: %s\n", f.opts.Strategy)
	switch f.opts.Strategy {
	case plan.Rolling:
		fmt.Fprintf(&b, "      wave_size: 2\n      pause: %s\n", pause)
	case plan.Canary:
		fmt.Fprintf(&b, "      steps: [5, 25, 100]\n")
	case plan.AB:
		fmt.Fprintf(&b, "      cohort: {header: X-User, percent: 50}\n")
	}
	b.WriteString(f.traffic.planYAML(f.opts.Strategy == plan.AB))
	interval := "2s"
	if f.opts.Interactive {
		interval = "3s"
	}
	limit := max(1, f.opts.Scenario.FailureLimit)
	fmt.Fprintf(&b, "    gate:\n      error_rate: 0.1%%\n      p99: 200ms\n      interval: %s\n      count: %d\n      failure_limit: %d\n      min_requests: 10\n", interval, max(2, limit), limit)
	fmt.Fprintf(&b, "    auto_rollback:\n      error_rate: 1%%\n      p99: 500ms\n      for: 3s\n")
	fmt.Fprintf(&b, "    probe:\n      url: %s\n      rate: %d\n      timeout: 2s\n      settle: 3s\n      user_header: X-User\n", q(f.ProxyURL), f.opts.Rate)
	f.PlanFile = filepath.Join(f.Dir, "flightdeck.yaml")
	if err := os.WriteFile(f.PlanFile, []byte(b.String()), 0o644); err != nil {
		return err
	}
	p, err := plan.Load(f.PlanFile)
	if err != nil {
		return fmt.Errorf("demo plan: %w", err)
	}
	f.Plan = p
	f.Env, err = p.Env("demo")
	return err
}

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// writeRelease writes the demo service's source for the next release.
func (f *Fleet) writeRelease(id string, knobs service.Knobs) error {
	page := fmt.Sprintf("<h1>demo-shop %s</h1>\n", id)
	if err := os.WriteFile(filepath.Join(f.src, "index.html"), []byte(page), 0o644); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(f.src, service.KnobsFile))
	if knobs != (service.Knobs{}) {
		return service.WriteKnobs(f.src, knobs)
	}
	return nil
}

// bootstrap puts every host on v1 and starts its services, through the
// engine with a plain strategy and without probe or gates.
func (f *Fleet) bootstrap(ctx context.Context) error {
	id := f.nextID()
	if err := f.writeRelease(id, service.Knobs{}); err != nil {
		return err
	}
	art, cleanup, err := engine.Build(ctx, f.Plan, id, nil)
	defer cleanup()
	if err != nil {
		return err
	}
	env := *f.Env
	env.Probe, env.Gate, env.AutoRollback = nil, nil, nil
	switch {
	case f.slots():
		env.Strategy.Kind = plan.BlueGreen
	default:
		env.Strategy.Kind = plan.Symlink
	}
	p := *f.Plan
	p.Health, p.Smoke = nil, nil // v1's services start after the switch (symlink)
	eng := &engine.Engine{Plan: &p, Env: &env, Hosts: f.Hosts, StateDir: f.Engine.StateDir, Hub: f.Hub,
		Router: f.Engine.Router, Metrics: f.Engine.Metrics}
	st, err := eng.Deploy(ctx, engine.Actor{Name: "demo", Role: engine.RoleOwner, Via: "demo"}, art, "flightdeck demo (bootstrap)")
	if err != nil {
		return err
	}
	if st.Outcome != engine.OutcomeSucceeded {
		return fmt.Errorf("bootstrap %s: %s", st.Outcome, st.Err)
	}
	if f.opts.Strategy != plan.Symlink {
		return nil
	}
	// Symlink: each host's service reads through current (like an app served
	// from Capistrano's current), so a switch needs no restart.
	var addrs []string
	for i, h := range f.Env.Hosts {
		_, port, _ := net.SplitHostPort(h.Backend)
		if f.onLab != nil {
			if err := f.onLab.serveCurrent(ctx, f.Hosts[i], port); err != nil {
				return err
			}
		} else if _, err := f.sup.Start(StartRequest{Host: h.Name, Port: port, Dir: filepath.Join(h.Local, engine.CurrentLink), Follow: true}); err != nil {
			return err
		}
		addrs = append(addrs, h.Backend)
	}
	rt := f.traffic.rtr
	if err := rt.SetPool(ctx, symlinkPool, addrs); err != nil {
		return err
	}
	if err := rt.SetRoute(ctx, engine.Route{Stable: symlinkPool}); err != nil {
		return err
	}
	for _, a := range addrs {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := rt.WaitHealthy(wctx, a)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

func (f *Fleet) nextID() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := fmt.Sprintf("v%d", f.next)
	f.next++
	return id
}

// Deploy builds the next release (with the scenario's faults when bad) and
// releases it with the fleet's strategy through the engine.
func (f *Fleet) Deploy(ctx context.Context, actor engine.Actor, bad bool) (*engine.State, error) {
	id := f.nextID()
	var knobs service.Knobs
	sc := f.opts.Scenario
	if bad {
		knobs = sc.Knobs
	}
	if err := f.writeRelease(id, knobs); err != nil {
		return nil, err
	}
	art, cleanup, err := engine.Build(ctx, f.Plan, id, nil)
	defer cleanup()
	if err != nil {
		return nil, err
	}
	if bad && f.faulty != nil {
		f.faulty.arm()
		defer f.faulty.disarm()
	}
	return f.Engine.Deploy(ctx, actor, art, "flightdeck demo")
}

// Scenario is the training scenario the fleet runs.
func (f *Fleet) Scenario() Scenario { return f.opts.Scenario }

// Rollback puts the fleet back on a release ("" = the one before the last deploy).
func (f *Fleet) Rollback(ctx context.Context, actor engine.Actor, to string) (*engine.State, error) {
	return f.Engine.Rollback(ctx, actor, to, "flightdeck demo rollback")
}

// ServicePIDs returns the pids of the running service processes.
func (f *Fleet) ServicePIDs() []int {
	if f.sup == nil {
		return nil
	}
	return f.sup.PIDs()
}

// Close stops the services and the router and removes a temporary directory.
func (f *Fleet) Close() error {
	var errs []error
	if f.sup != nil {
		f.sup.Close(5 * time.Second)
	}
	if f.onLab != nil {
		errs = append(errs, f.onLab.close())
	}
	if f.traffic != nil {
		errs = append(errs, f.traffic.close())
	}
	if f.ownDir {
		errs = append(errs, removeTree(f.Dir))
	}
	return errors.Join(errs...)
}

// removeTree removes a directory even where releases were made read-only.
func removeTree(dir string) error {
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
