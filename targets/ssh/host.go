package ssh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sync"
	"sync/atomic"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"flightdeck/engine"
	"flightdeck/targets/layout"
)

// Host is a server reached over SSH. It implements engine.Host.
type Host struct {
	name string
	t    Target
	pool *Pool
	conn *conn
	lay  *layout.Layout
	// noOpenSSL: the host has no openssl; files are hashed with sha256sum.
	noOpenSSL atomic.Bool
}

var _ engine.Host = (*Host)(nil)

// Name is the host's display name from the plan.
func (h *Host) Name() string { return h.name }

// Target is where the host is reached.
func (h *Host) Target() Target { return h.t }

// ReleasePath is the absolute path of releases/<id> on the host.
func (h *Host) ReleasePath(id string) string { return h.lay.ReleasePath(id) }

// Close closes the host's connection (a later call dials again).
func (h *Host) Close() error {
	h.conn.close("closed by flightdeck")
	return nil
}

// Connect dials the host now (operations dial on first use anyway), so
// that a fleet can be connected before anything is timed.
func (h *Host) Connect(ctx context.Context) error {
	if _, err := h.conn.get(ctx); err != nil {
		return fmt.Errorf("%s: %w", h.name, err)
	}
	return nil
}

func (h *Host) releasesDir() string { return path.Join(h.t.DeployTo, engine.ReleasesDir) }

func (h *Host) errorf(op string, err error) error {
	return fmt.Errorf("%s: %s: %w", h.name, op, err)
}

// remote is one attempt of an operation over a live link.
type remote struct {
	*link
	h    *Host
	kick func() // reports progress to the idle watchdog
}

// run performs fn over the host's connection under the command timeout.
// The timeout is an idle timeout: fn calls r.kick after each completed
// remote step, and the connection is closed (unblocking every request)
// when no step completes within CommandTimeout. Cancelling ctx closes the
// connection too. When the connection is lost during fn, it is redialled
// once and fn runs again from the start (every fn is idempotent).
func (h *Host) run(ctx context.Context, op string, fn func(ctx context.Context, r *remote) error) error {
	var lost error
	for attempt := 0; attempt < 2; attempt++ {
		if err := ctx.Err(); err != nil {
			return h.errorf(op, err)
		}
		l, err := h.conn.get(ctx)
		if err != nil {
			if lost != nil {
				return h.errorf(op, fmt.Errorf("connection lost (%v), redial failed: %w", lost, err))
			}
			return h.errorf(op, err)
		}
		err, timedOut := h.guard(ctx, l, fn)
		switch {
		case err == nil:
			return nil
		case timedOut:
			h.conn.drop(l)
			return h.errorf(op, fmt.Errorf("no answer from the host within %s (command_timeout): %w", h.timeout(), err))
		case ctx.Err() != nil:
			h.conn.drop(l)
			return h.errorf(op, ctx.Err())
		case !l.lost():
			return err // the layout's errors name the host and the operation
		}
		h.conn.drop(l)
		lost = err
	}
	return h.errorf(op, fmt.Errorf("connection lost twice: %w", lost))
}

func (h *Host) timeout() time.Duration {
	if h.t.CommandTimeout > 0 {
		return h.t.CommandTimeout
	}
	return DefaultCommandTimeout
}

// guard runs fn with the idle watchdog and ctx both closing l.
func (h *Host) guard(ctx context.Context, l *link, fn func(context.Context, *remote) error) (error, bool) {
	w := newWatchdog(h.timeout(), l.close)
	stop := context.AfterFunc(ctx, l.close)
	err := fn(ctx, &remote{link: l, h: h, kick: w.kick})
	stop()
	return err, w.stop()
}

// lost reports whether the connection is gone: closed, ended, or silent
// for its keepalive tolerance with a keepalive unanswered (one that is
// slow to answer but still sending is not lost: redialling a busy server
// would only add to its load).
func (l *link) lost() bool {
	if l.closed.Load() || l.dead() {
		return true
	}
	switch l.answers() {
	case answered:
		return false
	case silent:
		l.closeBecause(fmt.Sprintf("nothing heard from the server for %s after an error, a keepalive unanswered", l.silence))
	}
	return true
}

// watchdog calls onFire when kick was not called for d.
type watchdog struct {
	d       time.Duration
	last    atomic.Int64
	fired   atomic.Bool
	stopped atomic.Bool
	timer   *time.Timer
	onFire  func()
}

func newWatchdog(d time.Duration, onFire func()) *watchdog {
	w := &watchdog{d: d, onFire: onFire}
	w.kick()
	w.timer = time.AfterFunc(d, w.check)
	return w
}

func (w *watchdog) kick() { w.last.Store(time.Now().UnixNano()) }

func (w *watchdog) check() {
	if w.stopped.Load() {
		return
	}
	idle := time.Since(time.Unix(0, w.last.Load()))
	if idle >= w.d {
		w.fired.Store(true)
		w.onFire()
		return
	}
	w.timer.Reset(w.d - idle)
}

// stop disarms the watchdog and reports whether it fired.
func (w *watchdog) stop() bool {
	w.stopped.Store(true)
	w.timer.Stop()
	return w.fired.Load()
}

// The layout's operations run over the host's connection: each is one
// attempt of h.run (redialled and run again once when the connection is
// lost; every one is idempotent).

// Inspect reports current and the releases present; it changes nothing
// (see layout.Layout.Inspect).
func (h *Host) Inspect(ctx context.Context) (engine.HostStatus, error) {
	var st engine.HostStatus
	err := h.run(ctx, "inspect", func(ctx context.Context, r *remote) error {
		var err error
		st, err = h.lay.Inspect(ctx, r.fs())
		return err
	})
	return st, err
}

// Survey cleans, inspects and checks target in one pass (see
// layout.Layout.Survey).
func (h *Host) Survey(ctx context.Context, target string) (st engine.HostStatus, check error, err error) {
	err = h.run(ctx, "inspect", func(ctx context.Context, r *remote) error {
		var err error
		st, check, err = h.lay.Survey(ctx, r.fs(), target)
		if err == nil && check != nil && r.lost() {
			return check // the connection went during the check: run again
		}
		return err
	})
	return st, check, err
}

// Clean removes leftovers of interrupted work (see layout.Layout.Clean).
func (h *Host) Clean(ctx context.Context) error {
	return h.run(ctx, "clean", func(ctx context.Context, r *remote) error {
		return h.lay.Clean(ctx, r.fs())
	})
}

// Prepare makes releases/<a.ID> complete (see layout.Layout.Prepare):
// changed files are sent over SFTP or as a tar stream (PoolOptions.Transfer),
// unchanged ones hard-linked (cp -l on the host, or hardlink@openssh.com).
func (h *Host) Prepare(ctx context.Context, a *engine.Artifact, progress func(engine.Progress)) error {
	op := "prepare"
	if a != nil {
		op += " " + a.ID
	}
	return h.run(ctx, op, func(ctx context.Context, r *remote) error {
		return h.lay.Prepare(ctx, r.fs(), a, progress)
	})
}

// Check reports whether releases/<id> is complete (see layout.Layout.Check).
func (h *Host) Check(ctx context.Context, id string) error {
	return h.run(ctx, "check "+id, func(ctx context.Context, r *remote) error {
		return h.lay.Check(ctx, r.fs(), id)
	})
}

// Verify checks releases/<id> against its manifest, hashing on the host
// with openssl or sha256sum the files changed since its last verification
// (every file with PoolOptions.FullVerify; see layout.Layout.Verify), or
// only checks it, when Target.VerifySizesOnly.
func (h *Host) Verify(ctx context.Context, id string) error {
	return h.run(ctx, "verify "+id, func(ctx context.Context, r *remote) error {
		if h.t.VerifySizesOnly {
			return h.lay.Check(ctx, r.fs(), id)
		}
		return h.lay.Verify(ctx, r.fs(), id)
	})
}

// Switch points current at a complete release with SFTP symlink and
// posix-rename@openssh.com, no shell (see layout.Layout.Switch).
func (h *Host) Switch(ctx context.Context, info engine.SwitchInfo) error {
	return h.run(ctx, "switch to "+info.Release, func(ctx context.Context, r *remote) error {
		return h.lay.Switch(ctx, r.fs(), info)
	})
}

// Adopt makes a release made by another tool (Capistrano) one of
// flightdeck's (see layout.Layout.Adopt): files hashed on the host with
// sha256sum, write bits removed over SFTP.
func (h *Host) Adopt(ctx context.Context, id string) (engine.AdoptResult, error) {
	var a engine.AdoptResult
	err := h.run(ctx, "adopt "+id, func(ctx context.Context, r *remote) error {
		var err error
		a, err = h.lay.Adopt(ctx, r.fs(), id)
		return err
	})
	return a, err
}

// Prune removes old releases (see layout.Layout.Prune).
func (h *Host) Prune(ctx context.Context, keep int, protect []string) ([]string, error) {
	var removed []string
	err := h.run(ctx, "prune", func(ctx context.Context, r *remote) error {
		var err error
		removed, err = h.lay.Prune(ctx, r.fs(), keep, protect)
		return err
	})
	return removed, err
}

func isNotExist(err error) bool {
	return err != nil && errors.Is(err, fs.ErrNotExist)
}

// syncWriter serialises writes of stdout and stderr to one writer.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// exitError describes a command's failure with its exit status.
func exitError(err error) error {
	var ee *gossh.ExitError
	if errors.As(err, &ee) {
		if ee.Signal() != "" {
			return fmt.Errorf("killed by signal %s", ee.Signal())
		}
		return fmt.Errorf("exited with status %d", ee.ExitStatus())
	}
	var em *gossh.ExitMissingError
	if errors.As(err, &em) {
		return errors.New("the connection ended before the command reported its exit status")
	}
	return err
}
