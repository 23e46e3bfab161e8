// Command flightdeck is a terminal release cockpit for SREs: a deployment
// engine for zero-downtime releases and the interface on top of it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"flightdeck/engine"
	"flightdeck/engine/plan"
	"flightdeck/themes"
	"flightdeck/tui"
)

// Exit codes.
const (
	exitOK       = 0
	exitFailed   = 1 // the deploy failed or was rolled back
	exitBadInput = 2 // bad plan, flag or request; nothing was touched
	exitLocked   = 3 // another run holds the environment's lock
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitError carries an exit code up to main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func badInput(err error) error { return &exitError{code: exitBadInput, err: err} }

// The soft memory limit asked of Go's collector (unless GOMEMLIMIT is
// set) by a command, or a connection keeper, that works with n hosts:
// memLimitBase + n × memLimitPerHost, 272 MiB at 500 hosts. The base
// covers what a process holds whatever its fleet (a headless demo run
// peaks at 32 MB). A run holds ~0.3 MB per host at its peak (a one-file
// deploy to 500 hosts: ~145 MB live in the command, as much in the
// keeper); what the collector's target alone let the heap grow to, and
// the freed memory Go keeps before returning it, took the command to
// 262-343 MB there and the keeper to 273-284 MB (bench/fleet/RESULTS.md).
// Near the limit the collector runs sooner and returns freed memory at
// once, for some more CPU where the heap is close to it (a command that
// holds its 500 connections itself). It is soft: a heap that needs more
// grows past it rather than stall the run. The collector's target stays
// Go's default (GOGC=100): with the limit bounding a large fleet's peak, a
// lower one only costs a small fleet's run collections (GOGC=50: 10-15% of
// the command's CPU in a one-file deploy to 20 hosts).
const (
	memLimitBase    = 96 << 20
	memLimitPerHost = 360 << 10
)

// limitMemory sets the soft memory limit for n hosts, unless GOMEMLIMIT
// is set.
func limitMemory(n int) {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memLimitBase + int64(n)*memLimitPerHost)
	}
}

func main() {
	// Output is for people; the journal is the record. A reader that goes
	// away (`deploy --headless | head -1`) makes writes fail with EPIPE
	// instead of killing a run midway.
	signal.Ignore(syscall.SIGPIPE)
	// A closed terminal (SIGHUP) stops a command as Ctrl-C does: work in
	// flight finishes and what the command started is removed (a demo's
	// lab, its processes); by default it would kill the process outright.
	ctx, stop := interrupts(os.Stderr)
	defer stop()
	os.Exit(run(ctx, os.Args[1:]))
}

// interrupts answers signals at once: the first (Ctrl-C, SIGTERM, SIGHUP)
// cancels ctx, so a run stops after the work in flight; the second aborts
// that work too (a hung hook or restart is killed and its host fails) and
// a deploy rolls back the hosts it switched, within the same run; a third
// exits at once (the journal says where the run was, and `flightdeck
// resume` finishes it). Closing the cockpit during a run counts as the
// first (see interruptOf).
func interrupts(w io.Writer) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	abortCtx, abort := context.WithCancel(context.Background())
	it := &interrupter{w: w, cancel: cancel, abort: abort}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case s := <-sigs:
				it.interrupt(s.String())
			}
		}
	}()
	ctx = context.WithValue(ctx, interrupterKey{}, it)
	return engine.WithAbort(ctx, abortCtx), func() {
		signal.Stop(sigs)
		close(done)
		cancel()
		abort()
	}
}

// interrupter counts a process's interrupts: signals, and the cockpit
// closed during a run.
type interrupter struct {
	w             io.Writer
	cancel, abort context.CancelFunc
	mu            sync.Mutex
	n             int
}

type interrupterKey struct{}

// interruptOf returns the function that interrupts the process's run as a
// signal would (what names the cause), or nil outside main.
func interruptOf(ctx context.Context) func(what string) {
	if it, ok := ctx.Value(interrupterKey{}).(*interrupter); ok {
		return it.interrupt
	}
	return nil
}

// quietInterrupts keeps the process's interrupts from printing what a run
// would do (a background process without a run: the SSH keeper).
func quietInterrupts(ctx context.Context) {
	if it, ok := ctx.Value(interrupterKey{}).(*interrupter); ok {
		it.mu.Lock()
		it.w = io.Discard
		it.mu.Unlock()
	}
}

func (it *interrupter) interrupt(what string) {
	it.mu.Lock()
	defer it.mu.Unlock()
	it.n++
	switch it.n {
	case 1:
		fmt.Fprintf(it.w, "\nflightdeck: %s: stopping once the work in flight is done (nothing new starts); interrupt again to abort that work and roll back what the run switched\n", what)
		it.cancel()
	case 2:
		fmt.Fprintf(it.w, "\nflightdeck: %s again: aborting the work in flight (its hosts fail) and rolling back what this run switched; a third interrupt exits at once\n", what)
		it.abort()
	default:
		fmt.Fprintf(it.w, "\nflightdeck: %s: exiting now; `flightdeck resume` finishes the run\n", what)
		os.Exit(exitFailed)
	}
}

func run(ctx context.Context, args []string) int {
	root := newRoot()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(os.Stderr, "flightdeck:", err)
	return exitCode(err)
}

func exitCode(err error) int {
	var ee *exitError
	var pe *plan.Error
	var pes plan.Errors
	var lh *engine.LockHeldError
	var be *engine.BlockedError
	var tm *engine.TargetMissingError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &lh):
		return exitLocked
	case errors.As(err, &be):
		return exitFailed
	case errors.As(err, new(*engine.RunHostsError)):
		return exitBadInput // refused before anything was touched
	case errors.As(err, &tm):
		return exitBadInput // checked before the first switch: nothing was touched
	case errors.As(err, &pe), errors.As(err, &pes):
		return exitBadInput
	case errors.Is(err, engine.ErrNotAllowed):
		return exitBadInput
	}
	return exitFailed
}

// globals are flags shared by every command.
type globals struct {
	planFile string
	env      string
	stateDir string
	// etcd names etcd endpoints (comma-separated) that keep the journal
	// and the locks instead of the state directory.
	etcd     string
	headless bool
	json     bool
	noColor  bool
	readOnly bool
	// theme is the cockpit's theme from --theme (a built-in name or a
	// theme file), over the config file's.
	theme string
	// acceptNewHostKeys trusts (and records) SSH host keys seen for the first time.
	acceptNewHostKeys bool
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "flightdeck",
		Short: "A terminal release cockpit for zero-downtime deploys",
		Long: `flightdeck releases software with zero downtime (atomic symlink, rolling,
canary, blue/green and A/B), measures the SLOs while it does, and rolls back
on its own when they break.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if g.theme != "" {
			if _, err := (tui.Config{Theme: g.theme}).LoadTheme(); err != nil {
				return badInput(fmt.Errorf("--theme: %w", err))
			}
		}
		return nil
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return badInput(fmt.Errorf("%w (see %s --help)", err, c.CommandPath()))
	})
	pf := root.PersistentFlags()
	pf.StringVarP(&g.planFile, "file", "f", plan.DefaultFile, "release plan file")
	pf.StringVar(&g.env, "env", "", "environment to act on (optional when the plan has one)")
	pf.StringVar(&g.stateDir, "state", "", "state directory (default .flightdeck/ beside the plan)")
	pf.StringVar(&g.etcd, "etcd", "", "keep the journal and the locks in etcd at these endpoints (host:port,…; also "+envEtcdEndpoints+"; the plan's state.etcd sets the rest)")
	pf.BoolVar(&g.noColor, "no-color", false, "monochrome cockpit (also when NO_COLOR is set)")
	pf.BoolVar(&g.readOnly, "read-only", false, "cockpit that shows everything and changes nothing")
	pf.StringVar(&g.theme, "theme", "", "cockpit theme: "+strings.Join(themes.Names(), ", ")+", or a theme file (over the config file's theme)")
	pf.BoolVar(&g.acceptNewHostKeys, "accept-new-host-keys", false, "trust SSH host keys seen for the first time and record them (a changed key is always refused)")
	root.AddCommand(
		newDeployCmd(g), newRollbackCmd(g), newResumeCmd(g), newReleasesCmd(g), newAdoptCmd(g), newCheckCmd(g),
		newJournalCmd(g), newReplayCmd(g), newUnlockCmd(g), newStateCmd(g), newWatchCmd(g), newVersionCmd(), newRouterCmd(),
		newDemoCmd(g), newDemoServiceCmd(), newDemoCtlCmd(),
		newServeCmd(g),
		newAdviseCmd(g),
		newLabCmd(), newLabInitCmd(), newSSHKeeperCmd(),
	)
	return root
}

// addOutputFlags adds --headless and --json.
func addOutputFlags(c *cobra.Command, g *globals) {
	c.Flags().BoolVar(&g.headless, "headless", false, "print one line per event instead of opening the cockpit")
	c.Flags().BoolVar(&g.json, "json", false, "with --headless: print events as JSON lines")
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			fmt.Fprintln(c.OutOrStdout(), "flightdeck", version)
			return nil
		},
	}
}
