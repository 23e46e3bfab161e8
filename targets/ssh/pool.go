package ssh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	gossh "golang.org/x/crypto/ssh"

	"flightdeck/engine/plan"
	"flightdeck/targets/layout"
)

// PoolOptions configure a Pool. Zero values mean the defaults.
type PoolOptions struct {
	// MaxParallelDials bounds connections being set up at once, to all
	// servers together (default DefaultMaxParallelDials): each holds a
	// handshake's CPU and memory here. To one server (one address) at most
	// MaxDialsPerServer are set up at once whatever this says.
	MaxParallelDials int
	// KeepaliveInterval is how often a connection from which nothing was
	// heard is sent keepalive@openssh.com (default 15s; negative disables
	// keepalives), and KeepaliveCountMax how many such intervals of
	// silence it is given before it is closed as lost (default 3): as
	// OpenSSH's ServerAliveInterval and ServerAliveCountMax, a server that
	// is busy but still sending is never cut off.
	KeepaliveInterval time.Duration
	KeepaliveCountMax int
	// OnHostKeyAccepted is called when an unknown host key was trusted and
	// recorded because of AcceptNewHostKeys, so that it can be journalled.
	OnHostKeyAccepted func(host, fingerprint string)
	// OnWarning is told, once per pool and subject, of something that
	// works but should not be so (an identity file readable by others),
	// so that it can be shown and journalled. Nil: not reported.
	OnWarning func(msg string)
	// Transfer chooses how Prepare sends files (default TransferAuto).
	Transfer Transfer
	// Workers is the number of SFTP requests a host operation keeps in
	// flight for links, stats and removals (default 64).
	Workers int
	// UploadWorkers is the number of files a Prepare uploads at once over
	// SFTP (default 16); each holds packet buffers, so this bounds memory.
	UploadWorkers int
	// MaxUploads bounds the files sent over SFTP at once by all the pool's
	// hosts together (default 128), so that memory does not grow with the
	// hosts prepared at once: each file in flight holds up to 64 packets
	// of 32 KB (a cold deploy of 500 hosts at once held ~1.5 MB per host).
	MaxUploads int
	// FullVerify makes Verify hash every file of a release, not only those
	// changed since the host's last verification (the plan's
	// verify_releases: full; see layout.Layout.Verify).
	FullVerify bool
	// Persist, when positive, connects through the connection keeper of
	// ControlDir (keeper.go), which keeps the connections open for Persist
	// after the last process used them; KeeperCommand starts one when none
	// runs (nil: a missing keeper is not started). Without a keeper the
	// pool dials directly, and says so once through OnWarning.
	Persist       time.Duration
	ControlDir    string
	KeeperCommand []string

	// noSFTP: the keeper's own pools relay sessions and start no SFTP.
	noSFTP bool
	// onDial is told of each connection made, onLost of each that ended
	// and why.
	onDial func(Target)
	onLost func(t Target, why string)
}

// WithSettings returns opts with the environment's max_parallel_dials,
// persist and control_dir applied where opts does not set them.
func (opts PoolOptions) WithSettings(sc *plan.SSHConfig) PoolOptions {
	if sc == nil {
		return opts
	}
	if opts.MaxParallelDials == 0 && sc.MaxParallelDials > 0 {
		opts.MaxParallelDials = sc.MaxParallelDials
	}
	if opts.Persist == 0 && sc.Persist.Duration > 0 {
		opts.Persist = sc.Persist.Duration
	}
	if opts.ControlDir == "" {
		opts.ControlDir = ControlDir(sc.ControlDir)
	}
	return opts
}

// ControlDir returns the connection keeper's directory for the plan's
// control_dir: ~/ expanded; by default $XDG_RUNTIME_DIR/flightdeck (a
// per-user tmpfs the system removes at logout), else
// ~/.cache/flightdeck/ssh.
func ControlDir(configured string) string {
	if configured != "" {
		home, _ := os.UserHomeDir()
		return expandHome(home, configured)
	}
	if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" && filepath.IsAbs(rt) {
		return filepath.Join(rt, "flightdeck")
	}
	if cache, err := os.UserCacheDir(); err == nil {
		return filepath.Join(cache, "flightdeck", "ssh")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("flightdeck-ssh-%d", os.Geteuid()))
}

// Pool owns one SSH connection per target for the whole run. It is safe
// for concurrent use.
type Pool struct {
	opts  PoolOptions
	dials chan struct{}
	// uploads bounds the files sent at once (MaxUploads).
	uploads chan struct{}

	mu    sync.Mutex
	conns map[string]*conn
	// servers bounds the dials to each address (MaxDialsPerServer).
	servers  map[string]*serverDials
	hostKeys map[string]*hostKeys
	warned   map[string]bool
	closed   bool
	// manifests are shared by the pool's hosts: a release's manifest is
	// parsed once for the fleet.
	manifests layout.Manifests
	// keeper reaches the connection keeper (nil without Persist).
	keeper *keeperClient
	// sums are the digests of manifests hashed on the hosts, by the
	// identity of the file hashed (kept in ControlDir between processes).
	sums *manifestSums
}

// warn passes msg to OnWarning the first time it is given.
func (p *Pool) warn(msg string) {
	if p.opts.OnWarning == nil {
		return
	}
	p.mu.Lock()
	first := !p.warned[msg]
	if first {
		if p.warned == nil {
			p.warned = map[string]bool{}
		}
		p.warned[msg] = true
	}
	p.mu.Unlock()
	if first {
		p.opts.OnWarning(msg)
	}
}

// NewPool returns a pool with no connections yet; hosts dial on first use.
func NewPool(opts PoolOptions) *Pool {
	if opts.MaxParallelDials <= 0 {
		opts.MaxParallelDials = DefaultMaxParallelDials
	}
	if opts.KeepaliveInterval == 0 {
		opts.KeepaliveInterval = defaultKeepaliveInterval
	}
	if opts.KeepaliveCountMax <= 0 {
		opts.KeepaliveCountMax = defaultKeepaliveCountMax
	}
	if opts.Workers <= 0 {
		opts.Workers = 64
	}
	if opts.UploadWorkers <= 0 {
		opts.UploadWorkers = 16
	}
	if opts.MaxUploads <= 0 {
		opts.MaxUploads = 128
	}
	var kc *keeperClient
	if opts.Persist > 0 {
		kc = &keeperClient{dir: opts.ControlDir, persist: opts.Persist, command: opts.KeeperCommand}
	}
	return &Pool{
		keeper:   kc,
		sums:     newManifestSums(opts.ControlDir),
		opts:     opts,
		dials:    make(chan struct{}, opts.MaxParallelDials),
		uploads:  make(chan struct{}, opts.MaxUploads),
		conns:    map[string]*conn{},
		servers:  map[string]*serverDials{},
		hostKeys: map[string]*hostKeys{},
	}
}

// MaxDialsPerServer bounds the connections set up at once to one server:
// OpenSSH's MaxStartups (10 by default) drops unauthenticated connections
// beyond it. Hosts with the same user and address share one connection,
// so it binds only logins of several users on one server (or one address
// that forwards to several).
const MaxDialsPerServer = 8

// serverDials is the dial slots of one address and how many dials hold
// or wait for them (the entry is dropped when none does).
type serverDials struct {
	slots chan struct{}
	users int
}

// acquire takes a slot to dial addr, first among the dials to addr, then
// among all dials, and returns its release.
func (p *Pool) acquire(ctx context.Context, addr string) (func(), error) {
	p.mu.Lock()
	sd, ok := p.servers[addr]
	if !ok {
		sd = &serverDials{slots: make(chan struct{}, MaxDialsPerServer)}
		p.servers[addr] = sd
	}
	sd.users++
	p.mu.Unlock()
	leave := func() {
		p.mu.Lock()
		if sd.users--; sd.users == 0 {
			delete(p.servers, addr)
		}
		p.mu.Unlock()
	}
	select {
	case sd.slots <- struct{}{}:
	case <-ctx.Done():
		leave()
		return nil, ctx.Err()
	}
	select {
	case p.dials <- struct{}{}:
	case <-ctx.Done():
		<-sd.slots
		leave()
		return nil, ctx.Err()
	}
	return func() {
		<-p.dials
		<-sd.slots
		leave()
	}, nil
}

// Host returns the engine.Host for target t, displayed as name. Hosts with
// the same user and address share one connection.
func (p *Pool) Host(name string, t Target) *Host {
	return &Host{name: name, t: t, pool: p, conn: p.conn(t), lay: layout.New(name, t.DeployTo,
		layout.Options{Manifests: &p.manifests, FullVerify: p.opts.FullVerify})}
}

// Close closes every connection of the pool.
func (p *Pool) Close() error {
	defer p.sums.save()
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = map[string]*conn{}
	p.mu.Unlock()
	// The connection to the keeper first: its hosts' channels end with it
	// at once, where closing each would wait for the keeper's answer (a
	// round trip per host, 9 s for 500 hosts through a busy keeper). The
	// idle command shells go back to it just before (nothing waited for).
	if p.keeper != nil {
		for _, c := range conns {
			c.park()
		}
		p.keeper.close()
	}
	for _, c := range conns {
		c.close("the pool was closed")
	}
	return nil
}

func (p *Pool) conn(t Target) *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := t.Key()
	c, ok := p.conns[k]
	if !ok {
		c = &conn{pool: p, t: t}
		p.conns[k] = c
	}
	return c
}

func (p *Pool) keysFor(t Target) *hostKeys {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := strings.Join(t.KnownHosts, "\x00")
	hk, ok := p.hostKeys[k]
	if !ok {
		hk = newHostKeys(t.KnownHosts, p.opts.OnHostKeyAccepted)
		p.hostKeys[k] = hk
	}
	return hk
}

// conn is the pool's connection to one target; it dials on demand and
// replaces a lost link.
type conn struct {
	pool *Pool
	t    Target

	mu  sync.Mutex
	cur *link
}

// link is one live SSH connection with its SFTP client.
type link struct {
	client *gossh.Client
	sftp   *sftp.Client
	shells shells        // command shells (see shell.go)
	done   chan struct{} // closed when the connection has ended
	closed atomic.Bool
	// heard is when bytes last came from the server; silence is how long
	// a connection may stay silent, a keepalive unanswered, before it is
	// taken as lost.
	heard   *heardClock
	silence time.Duration
	// why says why the link was closed here (for onLost).
	why atomic.Pointer[string]
	// viaKeeper: the connection is the keeper's, which keeps sessions
	// warm for the next process (its shells start with shellBootstrap).
	viaKeeper bool
}

// heardClock is when bytes last came from a server.
type heardClock struct {
	last atomic.Int64 // unix nanoseconds
}

func (h *heardClock) note() { h.last.Store(time.Now().UnixNano()) }

// heardConn notes when bytes last came in.
type heardConn struct {
	net.Conn
	heardClock
}

func newHeardConn(c net.Conn) *heardConn {
	h := &heardConn{Conn: c}
	h.note()
	return h
}

func (c *heardConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.note()
	}
	return n, err
}

// lastHeard is when bytes last came from the server.
func (l *link) lastHeard() time.Time { return time.Unix(0, l.heard.last.Load()) }

func (l *link) dead() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// closeBecause closes the connection, saying why (for onLost).
func (l *link) closeBecause(why string) {
	l.why.CompareAndSwap(nil, &why)
	l.close()
}

// close closes the connection. The SSH connection goes first: closing the
// SFTP client alone waits for the server, which may be the one not
// answering.
func (l *link) close() {
	if l.closed.CompareAndSwap(false, true) {
		l.client.Close()
		l.shells.close()
		if l.sftp != nil {
			if l.viaKeeper {
				// Its channel ends when the keeper answers the close
				// (or its connection ends): not waited for.
				go l.sftp.Close()
			} else {
				l.sftp.Close()
			}
		}
	}
}

// park hands the live link's idle command shells back to the keeper
// (shells.park), when the link goes through it.
func (c *conn) park() {
	c.mu.Lock()
	l := c.cur
	c.mu.Unlock()
	if l != nil && l.viaKeeper && !l.closed.Load() && !l.dead() {
		l.shells.park()
	}
}

// get returns the live link, dialling when there is none or it was lost.
func (c *conn) get(ctx context.Context) (*link, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil && !c.cur.dead() && !c.cur.closed.Load() {
		return c.cur, nil
	}
	if c.cur != nil {
		c.cur.close()
		c.cur = nil
	}
	l, err := c.pool.dial(ctx, c.t)
	if err != nil {
		return nil, err
	}
	c.cur = l
	return l, nil
}

// drop closes l if it is still the current link.
func (c *conn) drop(l *link) {
	l.close()
	c.mu.Lock()
	if c.cur == l {
		c.cur = nil
	}
	c.mu.Unlock()
}

func (c *conn) close(why string) {
	c.mu.Lock()
	l := c.cur
	c.cur = nil
	c.mu.Unlock()
	if l != nil {
		l.closeBecause(why)
	}
}

// ErrPoolClosed is returned by operations on hosts of a closed pool.
var ErrPoolClosed = errors.New("ssh pool is closed")

// dial connects, verifies the host key, authenticates and opens SFTP.
func (p *Pool) dial(ctx context.Context, t Target) (*link, error) {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return nil, ErrPoolClosed
	}
	where := t.User + "@" + t.Addr
	if p.keeper != nil && !acceptsNewKeys(t) {
		l, err := p.dialKeeper(ctx, t)
		if !errors.Is(err, errNoKeeper) {
			return l, err
		}
		p.warn(fmt.Sprintf("ssh persist: %v; connecting directly", err))
	}
	var jump *link
	if t.Jump != nil {
		var err error
		if jump, err = p.conn(*t.Jump).get(ctx); err != nil {
			return nil, fmt.Errorf("connect to %s: jump host %s: %w", where, t.Jump.Addr, err)
		}
	}

	release, err := p.acquire(ctx, t.Addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", where, err)
	}
	defer release()

	timeout := t.connectTimeout()
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var nc net.Conn
	if jump != nil {
		nc, err = jump.client.DialContext(dctx, "tcp", t.Addr)
	} else {
		var d net.Dialer
		nc, err = d.DialContext(dctx, "tcp", t.Addr)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", where, err)
	}
	heard := newHeardConn(nc)
	// The handshake, authentication and SFTP start are bounded too.
	stop := context.AfterFunc(dctx, func() { nc.Close() })
	fail := func(err error) (*link, error) {
		nc.Close()
		if dctx.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("connect to %s: timed out after %s: %w", where, timeout, err)
		}
		return nil, fmt.Errorf("connect to %s: %w", where, err)
	}

	auth, agentConn, err := authMethods(t, p.warn)
	if err != nil {
		stop()
		return fail(err)
	}
	defer agentConn.Close()
	hk := p.keysFor(t)
	cfg := &gossh.ClientConfig{
		User:              t.User,
		Auth:              auth,
		HostKeyCallback:   hk.callback(t.AcceptNewHostKeys),
		HostKeyAlgorithms: hk.algorithms(t.Addr, nc.RemoteAddr()),
		Timeout:           timeout,
	}
	sc, chans, reqs, err := gossh.NewClientConn(heard, t.Addr, cfg)
	if err != nil {
		stop()
		return fail(err)
	}
	l, err := p.newLink(t, gossh.NewClient(sc, chans, reqs), &heard.heardClock, false, stop)
	if err != nil {
		return fail(err)
	}
	if p.opts.onDial != nil {
		p.opts.onDial(t)
	}
	return l, nil
}

// newLink starts SFTP on client (unless the pool is the keeper's) and
// watches the connection, to t over heard (through the keeper when
// viaKeeper). stop ends the dial's deadline;
// it reports false when the deadline had already fired.
func (p *Pool) newLink(t Target, client *gossh.Client, heard *heardClock, viaKeeper bool, stop func() bool) (*link, error) {
	var fc *sftp.Client
	var err error
	if !p.opts.noSFTP {
		fc, err = sftp.NewClient(client,
			sftp.UseConcurrentWrites(true),
			sftp.MaxConcurrentRequestsPerFile(64),
		)
	}
	if !stop() || err != nil {
		client.Close()
		if err == nil {
			err = errors.New("setting up SFTP")
		}
		return nil, fmt.Errorf("start SFTP: %w", err)
	}
	l := &link{client: client, sftp: fc, done: make(chan struct{}), heard: heard, viaKeeper: viaKeeper,
		silence: defaultKeepaliveInterval * defaultKeepaliveCountMax}
	if p.opts.KeepaliveInterval > 0 {
		l.silence = p.opts.KeepaliveInterval * time.Duration(p.opts.KeepaliveCountMax)
	}
	go func() {
		err := client.Wait()
		if p.opts.onLost != nil { // told before the link is seen dead
			why := "the connection ended"
			if w := l.why.Load(); w != nil {
				why = *w
			} else if err != nil {
				why += ": " + err.Error()
			}
			p.opts.onLost(t, why)
		}
		close(l.done)
	}()
	if p.opts.KeepaliveInterval > 0 {
		go l.keepalive(p.opts.KeepaliveInterval)
	}
	return l, nil
}

// The keepalive defaults (PoolOptions): 45 s of silence is also what a
// connection without keepalives is allowed before an error finds it lost.
const (
	defaultKeepaliveInterval = 15 * time.Second
	defaultKeepaliveCountMax = 3
)

// keepalive sends keepalive@openssh.com when nothing was heard from the
// server for interval, and closes the connection when it stays silent for
// l.silence (KeepaliveCountMax intervals) without answering. A server
// still sending (busy, or slow under load) is alive: only silence counts.
func (l *link) keepalive(interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-tick.C:
		}
		if time.Since(l.lastHeard()) < interval {
			continue
		}
		switch l.answers() {
		case answered:
		case silent:
			l.closeBecause(fmt.Sprintf("nothing heard from the server for %s, a keepalive unanswered", l.silence))
			return
		case ended:
			return
		}
	}
}

// answer is how a keepalive went.
type answer int

const (
	answered answer = iota
	silent          // nothing heard for l.silence
	ended           // the connection ended or refused the request
)

// answers sends a keepalive and waits for its answer, or for the
// connection to end, or for l.silence to pass with nothing heard from the
// server (bytes still arriving mean the answer is queued behind them).
func (l *link) answers() answer {
	reply := make(chan error, 1)
	sent := time.Now()
	go func() {
		_, _, err := l.client.SendRequest("keepalive@openssh.com", true, nil)
		reply <- err
	}()
	t := time.NewTimer(l.silence)
	defer t.Stop()
	for {
		select {
		case err := <-reply:
			if err != nil {
				return ended
			}
			return answered
		case <-l.done:
			return ended
		case <-t.C:
			last := l.lastHeard()
			if last.Before(sent) {
				last = sent
			}
			quiet := time.Since(last)
			if quiet >= l.silence {
				return silent
			}
			t.Reset(l.silence - quiet)
		}
	}
}
