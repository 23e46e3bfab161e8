package ssh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/sync/errgroup"

	"flightdeck/engine"
)

// Host is a server reached over SSH. It implements engine.Host.
type Host struct {
	name string
	t    Target
	pool *Pool
	conn *conn
}

var _ engine.Host = (*Host)(nil)

// Name is the host's display name from the plan.
func (h *Host) Name() string { return h.name }

// Target is where the host is reached.
func (h *Host) Target() Target { return h.t }

// ReleasePath is the absolute path of releases/<id> on the host.
func (h *Host) ReleasePath(id string) string {
	return path.Join(h.t.DeployTo, engine.ReleasesDir, id)
}

// Close closes the host's connection (a later call dials again).
func (h *Host) Close() error {
	h.conn.close()
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
			return h.errorf(op, err)
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

// lost reports whether the connection is gone: closed, ended, or not
// answering a keepalive within a few seconds.
func (l *link) lost() bool {
	if l.closed.Load() || l.dead() {
		return true
	}
	reply := make(chan error, 1)
	go func() {
		_, _, err := l.client.SendRequest("keepalive@openssh.com", true, nil)
		reply <- err
	}()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case err := <-reply:
		return err != nil
	case <-l.done:
		return true
	case <-t.C:
		l.close()
		return true
	}
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

// Inspect reports current and the complete releases (sorted by name, as
// targets/local does: release ids default to UTC timestamps, which sort
// oldest first; rollback always names an explicit id) and removes leftovers of interrupted work:
// releases/.tmp-* directories and current.tmp-* links.
func (h *Host) Inspect(ctx context.Context) (engine.HostStatus, error) {
	var st engine.HostStatus
	err := h.run(ctx, "inspect", func(ctx context.Context, r *remote) error {
		var err error
		st = engine.HostStatus{}
		if st.Current, err = r.current(); err != nil {
			return err
		}
		if err := r.removeLeftovers(ctx); err != nil {
			return err
		}
		st.Releases, err = r.releases()
		return err
	})
	return st, err
}

// current returns the release id current points to, "" when there is none.
func (r *remote) current() (string, error) {
	dt := r.h.t.DeployTo
	target, err := r.sftp.ReadLink(path.Join(dt, engine.CurrentLink))
	r.kick()
	if isNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s link: %w", engine.CurrentLink, err)
	}
	if !path.IsAbs(target) {
		target = path.Join(dt, target)
	}
	target = path.Clean(target)
	dir, id := path.Split(target)
	if path.Clean(dir) != r.h.releasesDir() || engine.ValidateReleaseID(id) != nil {
		return "", fmt.Errorf("%s points to %s, which is not a release under %s", engine.CurrentLink, target, r.h.releasesDir())
	}
	return id, nil
}

// releaseInfo is a complete release seen on the host.
type releaseInfo struct {
	id string
}

// listReleases returns the complete releases (any directory under
// releases/ named like a release id), sorted by name.
func (r *remote) listReleases() ([]releaseInfo, error) {
	entries, err := r.sftp.ReadDir(r.h.releasesDir())
	r.kick()
	if isNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list releases: %w", err)
	}
	var out []releaseInfo
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") || engine.ValidateReleaseID(e.Name()) != nil {
			continue
		}
		out = append(out, releaseInfo{id: e.Name()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out, nil
}

func (r *remote) releases() ([]string, error) {
	infos, err := r.listReleases()
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(infos))
	for i, in := range infos {
		ids[i] = in.id
	}
	return ids, nil
}

// removeLeftovers removes temporary release directories and links.
func (r *remote) removeLeftovers(ctx context.Context) error {
	entries, err := r.sftp.ReadDir(r.h.releasesDir())
	r.kick()
	if err != nil && !isNotExist(err) {
		return fmt.Errorf("list releases: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), engine.TempPrefix) {
			if err := r.removeAll(ctx, path.Join(r.h.releasesDir(), e.Name())); err != nil {
				return fmt.Errorf("remove leftover %s: %w", e.Name(), err)
			}
		}
	}
	top, err := r.sftp.ReadDir(r.h.t.DeployTo)
	r.kick()
	if err != nil && !isNotExist(err) {
		return fmt.Errorf("list %s: %w", r.h.t.DeployTo, err)
	}
	for _, e := range top {
		if strings.HasPrefix(e.Name(), engine.CurrentLink+engine.TempPrefix) && e.Mode()&fs.ModeSymlink != 0 {
			if err := r.sftp.Remove(path.Join(r.h.t.DeployTo, e.Name())); err != nil && !isNotExist(err) {
				return fmt.Errorf("remove leftover %s: %w", e.Name(), err)
			}
			r.kick()
		}
	}
	return nil
}

// removeAll removes a tree over SFTP without following symlinks, making
// directories writable first (release files and directories may be
// read-only). Files are removed concurrently.
func (r *remote) removeAll(ctx context.Context, root string) error {
	st, err := r.sftp.Lstat(root)
	r.kick()
	if isNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return r.sftp.Remove(root)
	}
	var files []string
	dirs := []string{root}
	for i := 0; i < len(dirs); i++ {
		d := dirs[i]
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := r.sftp.Chmod(d, 0o700); err != nil && !isNotExist(err) {
			return fmt.Errorf("make %s writable: %w", d, err)
		}
		entries, err := r.sftp.ReadDir(d)
		r.kick()
		if err != nil && !isNotExist(err) {
			return fmt.Errorf("list %s: %w", d, err)
		}
		for _, e := range entries {
			p := path.Join(d, e.Name())
			if e.IsDir() {
				dirs = append(dirs, p)
			} else {
				files = append(files, p)
			}
		}
	}
	g, _ := errgroup.WithContext(ctx)
	g.SetLimit(r.h.pool.opts.Workers)
	for _, f := range files {
		g.Go(func() error {
			if err := r.sftp.Remove(f); err != nil && !isNotExist(err) {
				return fmt.Errorf("remove %s: %w", f, err)
			}
			r.kick()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := r.sftp.RemoveDirectory(dirs[i]); err != nil && !isNotExist(err) {
			return fmt.Errorf("remove %s: %w", dirs[i], err)
		}
		r.kick()
	}
	return nil
}

// Switch points current at releases/<info.Release> by renaming a fresh
// symlink (current.tmp-<rand>) over it with posix-rename@openssh.com, then
// appends a line to revisions.log. No shell is used.
func (h *Host) Switch(ctx context.Context, info engine.SwitchInfo) error {
	if err := engine.ValidateReleaseID(info.Release); err != nil {
		return h.errorf("switch", err)
	}
	prevKnown := info.Previous != ""
	return h.run(ctx, "switch to "+info.Release, func(ctx context.Context, r *remote) error {
		dt := h.t.DeployTo
		st, err := r.sftp.Lstat(h.ReleasePath(info.Release))
		r.kick()
		if isNotExist(err) {
			return fmt.Errorf("release %s is not on the host", info.Release)
		}
		if err != nil {
			return fmt.Errorf("stat release: %w", err)
		}
		if !st.IsDir() {
			return fmt.Errorf("%s is not a directory", h.ReleasePath(info.Release))
		}
		if !prevKnown {
			if info.Previous, err = r.current(); err != nil {
				return err
			}
			prevKnown = true
		}
		tmp := path.Join(dt, engine.CurrentLink+engine.TempPrefix+engine.RandomSuffix(6))
		if err := r.sftp.Symlink(path.Join(engine.ReleasesDir, info.Release), tmp); err != nil {
			return fmt.Errorf("create link %s: %w", tmp, err)
		}
		r.kick()
		if err := r.sftp.PosixRename(tmp, path.Join(dt, engine.CurrentLink)); err != nil {
			_ = r.sftp.Remove(tmp)
			return fmt.Errorf("rename %s over %s: %w", tmp, engine.CurrentLink, err)
		}
		r.kick()
		return r.appendRevision(info)
	})
}

func (r *remote) appendRevision(info engine.SwitchInfo) error {
	p := path.Join(r.h.t.DeployTo, engine.RevisionsLog)
	f, err := r.sftp.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE)
	if err != nil {
		return fmt.Errorf("open %s: %w", engine.RevisionsLog, err)
	}
	line := engine.RevisionLine(time.Now(), info) + "\n"
	if _, err := f.Write([]byte(line)); err != nil {
		f.Close()
		return fmt.Errorf("append to %s: %w", engine.RevisionsLog, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("append to %s: %w", engine.RevisionsLog, err)
	}
	r.kick()
	return nil
}

// Prune removes releases older than the newest keep (by name, as Inspect
// lists them), never the current one nor any in protect (as targets/local
// does). Each is first renamed to a temporary name, so an
// interrupted prune never leaves a partial release that looks complete.
func (h *Host) Prune(ctx context.Context, keep int, protect []string) ([]string, error) {
	if keep < 0 {
		return nil, h.errorf("prune", fmt.Errorf("keep must be >= 0, got %d", keep))
	}
	var removed []string
	err := h.run(ctx, "prune", func(ctx context.Context, r *remote) error {
		removed = nil
		cur, err := r.current()
		if err != nil {
			return err
		}
		ids, err := r.releases()
		if err != nil {
			return err
		}
		if len(ids) <= keep {
			return nil
		}
		keepSet := map[string]bool{cur: true}
		for _, p := range protect {
			keepSet[p] = true
		}
		for _, id := range ids[:len(ids)-keep] {
			if keepSet[id] {
				continue
			}
			tmp := path.Join(h.releasesDir(), engine.TempPrefix+id+"-"+engine.RandomSuffix(4))
			if err := r.sftp.PosixRename(h.ReleasePath(id), tmp); err != nil {
				return fmt.Errorf("retire release %s: %w", id, err)
			}
			r.kick()
			removed = append(removed, id)
			if err := r.removeAll(ctx, tmp); err != nil {
				return fmt.Errorf("remove release %s: %w", id, err)
			}
		}
		return nil
	})
	return removed, err
}

// readManifest reads releases/<id>/<engine.ManifestName>.
func (r *remote) readManifest(id string) (*engine.Manifest, error) {
	f, err := r.sftp.Open(path.Join(r.h.ReleasePath(id), engine.ManifestName))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 256<<20))
	if err != nil {
		return nil, err
	}
	r.kick()
	return engine.ParseManifest(b)
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
