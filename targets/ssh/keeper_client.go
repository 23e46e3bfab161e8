package ssh

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// errNoKeeper wraps every reason the connection keeper could not be used
// (none runs and none could be started, its directory is not private, it
// did not speak as expected): the pool then dials directly.
var errNoKeeper = errors.New("no connection keeper")

// keeperStartTimeout bounds the start of a keeper.
const keeperStartTimeout = 10 * time.Second

// keeperClient reaches the keeper of one control directory, starting one
// when none runs.
type keeperClient struct {
	dir     string
	persist time.Duration
	command []string

	mu sync.Mutex // one start at a time in this process

	// The process's connection to the keeper (mux), one for all targets.
	muxMu  sync.Mutex
	cur    *keeperMux
	closed bool
}

// acceptsNewKeys reports whether t (or a jump host on the way) trusts new
// host keys: such a plan dials directly, so that each key trusted on first
// use is journaled by the process that trusted it.
func acceptsNewKeys(t Target) bool {
	for j := &t; j != nil; j = j.Jump {
		if j.AcceptNewHostKeys {
			return true
		}
	}
	return false
}

// dialKeeper connects to t through the keeper: it attaches t on this
// process's connection to the keeper (made with the first target). An
// error that wraps errNoKeeper means the keeper could not be used; any
// other is t's own (refused, unknown host key…), as a direct dial would
// have met it.
func (p *Pool) dialKeeper(ctx context.Context, t Target) (*link, error) {
	where := t.User + "@" + t.Addr
	timeout := t.connectTimeout()
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	timedOut := func() error {
		if ctx.Err() == nil {
			// The target did not answer in time (the keeper dials with
			// the same timeout): not a reason to dial it again directly.
			return fmt.Errorf("connect to %s through the connection keeper: timed out after %s", where, timeout)
		}
		return fmt.Errorf("connect to %s: %w", where, ctx.Err())
	}
	m, err := p.keeper.mux(dctx)
	if err != nil {
		if dctx.Err() != nil {
			return nil, timedOut()
		}
		return nil, fmt.Errorf("connect to %s through the connection keeper: %w", where, err)
	}
	req, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	vt, err := m.attach(dctx, string(req), t.User)
	if err != nil {
		var oe *gossh.OpenChannelError
		switch {
		case errors.As(err, &oe) && oe.Message == keeperExiting:
			return nil, fmt.Errorf("%w: it is exiting", errNoKeeper)
		case errors.As(err, &oe):
			// The target's own error, from the keeper's dial.
			return nil, fmt.Errorf("connect to %s through the connection keeper: %s", where, oe.Message)
		case dctx.Err() != nil:
			return nil, timedOut()
		default:
			return nil, fmt.Errorf("%w: %v", errNoKeeper, err)
		}
	}
	closed := make(chan gossh.NewChannel)
	close(closed)
	noReqs := make(chan *gossh.Request)
	close(noReqs)
	client := gossh.NewClient(vt, closed, noReqs)
	// SFTP starts within the dial's time too.
	stop := context.AfterFunc(dctx, func() { vt.Close() })
	l, err := p.newLink(t, client, &vt.heard, true, stop)
	if err != nil {
		if dctx.Err() != nil {
			return nil, timedOut()
		}
		return nil, fmt.Errorf("connect to %s through the connection keeper: %w", where, err)
	}
	return l, nil
}

// keeperMux is a process's connection to the keeper.
type keeperMux struct {
	client *gossh.Client
	done   chan struct{} // closed when the connection has ended
	nextID atomic.Uint32
}

func (m *keeperMux) dead() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// mux returns this process's connection to the keeper, connecting (and
// starting a keeper) when there is none or it ended.
func (kc *keeperClient) mux(ctx context.Context) (*keeperMux, error) {
	kc.muxMu.Lock()
	defer kc.muxMu.Unlock()
	if kc.closed {
		return nil, ErrPoolClosed
	}
	if kc.cur != nil && !kc.cur.dead() {
		return kc.cur, nil
	}
	nc, pub, err := kc.connect(ctx)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	fail := func(err error) (*keeperMux, error) {
		stop()
		nc.Close()
		return nil, fmt.Errorf("%w: %v", errNoKeeper, err)
	}
	hello, err := json.Marshal(keeperHello{Protocol: keeperProtocol})
	if err != nil {
		return fail(err)
	}
	if _, err := nc.Write(append(hello, '\n')); err != nil {
		return fail(err)
	}
	answer, err := readLine(nc, keeperMaxRequest)
	switch {
	case err != nil:
		return fail(fmt.Errorf("no answer: %v", err))
	case answer == "exiting":
		return fail(errors.New("it is exiting"))
	case answer != "ok":
		return fail(fmt.Errorf("it answered %q", answer))
	}
	cfg := &gossh.ClientConfig{User: "flightdeck", HostKeyCallback: gossh.FixedHostKey(pub)}
	sc, chans, reqs, err := gossh.NewClientConn(nc, "keeper", cfg)
	if err != nil {
		return fail(err)
	}
	if !stop() {
		sc.Close()
		return nil, ctx.Err()
	}
	m := &keeperMux{client: gossh.NewClient(sc, chans, reqs), done: make(chan struct{})}
	go func() {
		_ = sc.Wait()
		close(m.done)
	}()
	kc.cur = m
	return m, nil
}

// close closes the connection to the keeper: its targets end with it.
func (kc *keeperClient) close() {
	kc.muxMu.Lock()
	defer kc.muxMu.Unlock()
	kc.closed = true
	if kc.cur != nil {
		kc.cur.client.Close()
		kc.cur = nil
	}
}

// attach attaches a target (as JSON) and returns it as an SSH connection
// of its own.
func (m *keeperMux) attach(ctx context.Context, target, user string) (*keeperTarget, error) {
	id := m.nextID.Add(1)
	// The keeper answers once its dial ends.
	ch, reqs, err := openChannel(m.client, targetChannel, gossh.Marshal(keeperAttach{ID: id, Target: target}), ctx.Done())
	if errors.Is(err, errAbandoned) {
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, err
	}
	go gossh.DiscardRequests(reqs)
	vt := &keeperTarget{mux: m, id: id, ctl: ch, user: user,
		ended: make(chan struct{}), chans: map[*trackedChannel]struct{}{}}
	vt.heard.note()
	go func() {
		_, _ = io.Copy(io.Discard, ch) // the keeper closes it when the target's connection ends
		vt.Close()
	}()
	return vt, nil
}

// errAbandoned: openChannel gave up waiting for the channel.
var errAbandoned = errors.New("channel open abandoned")

// openChannel opens a channel on c, giving up (errAbandoned) when abandon
// is closed first; a channel opened after that is closed once it comes.
func openChannel(c *gossh.Client, typ string, data []byte, abandon <-chan struct{}) (gossh.Channel, <-chan *gossh.Request, error) {
	type opened struct {
		ch   gossh.Channel
		reqs <-chan *gossh.Request
		err  error
	}
	res := make(chan opened, 1)
	go func() {
		ch, reqs, err := c.OpenChannel(typ, data)
		res <- opened{ch, reqs, err}
	}()
	select {
	case o := <-res:
		return o.ch, o.reqs, o.err
	case <-abandon:
		go func() {
			if o := <-res; o.err == nil {
				o.ch.Close()
			}
		}()
		return nil, nil, errAbandoned
	}
}

// keeperTarget is a target attached through the keeper, as a gossh.Conn:
// its sessions are channels on the connection to the keeper, relayed by
// it to the target. It ends when the keeper closes its target channel
// (the keeper's connection to the target ended), when the connection to
// the keeper ends, or when it is closed here.
type keeperTarget struct {
	mux   *keeperMux
	id    uint32
	ctl   gossh.Channel
	user  string
	heard heardClock // what the target's sessions and keepalives bring

	mu    sync.Mutex
	ended chan struct{}
	chans map[*trackedChannel]struct{} // its open sessions' channels
}

var _ gossh.Conn = (*keeperTarget)(nil)

func (t *keeperTarget) User() string          { return t.user }
func (t *keeperTarget) SessionID() []byte     { return t.mux.client.SessionID() }
func (t *keeperTarget) ClientVersion() []byte { return t.mux.client.ClientVersion() }
func (t *keeperTarget) ServerVersion() []byte { return t.mux.client.ServerVersion() }
func (t *keeperTarget) RemoteAddr() net.Addr  { return t.mux.client.RemoteAddr() }
func (t *keeperTarget) LocalAddr() net.Addr   { return t.mux.client.LocalAddr() }

// SendRequest relays keepalive@openssh.com to the target; no other global
// request is sent to a target.
func (t *keeperTarget) SendRequest(name string, wantReply bool, payload []byte) (bool, []byte, error) {
	if name != "keepalive@openssh.com" {
		return false, nil, fmt.Errorf("request %s is not relayed by the connection keeper", name)
	}
	ok, err := t.ctl.SendRequest(keepaliveRequest, true, nil)
	if err == nil {
		t.heard.note()
	}
	return ok, nil, err
}

// OpenChannel opens a session on the target (the only channel the keeper
// relays). It gives up when the target ends meanwhile.
func (t *keeperTarget) OpenChannel(name string, data []byte) (gossh.Channel, <-chan *gossh.Request, error) {
	if name != "session" || len(data) != 0 {
		return nil, nil, &gossh.OpenChannelError{Reason: gossh.Prohibited, Message: "the connection keeper relays session channels only"}
	}
	ch, reqs, err := openChannel(t.mux.client, sessionChannel, gossh.Marshal(keeperSession{ID: t.id}), t.ended)
	if errors.Is(err, errAbandoned) {
		return nil, nil, io.EOF
	}
	if err != nil {
		return nil, nil, err
	}
	t.heard.note()
	tc := &trackedChannel{Channel: ch, t: t}
	t.mu.Lock()
	select {
	case <-t.ended:
		t.mu.Unlock()
		ch.Close()
		return nil, nil, io.EOF
	default:
	}
	t.chans[tc] = struct{}{}
	t.mu.Unlock()
	return tc, reqs, nil
}

// Close detaches the target: its sessions' channels are closed with it.
func (t *keeperTarget) Close() error {
	t.mu.Lock()
	select {
	case <-t.ended:
		t.mu.Unlock()
		return nil
	default:
	}
	close(t.ended)
	chans := t.chans
	t.chans = nil
	t.mu.Unlock()
	for c := range chans {
		c.Channel.Close()
	}
	return t.ctl.Close()
}

// Wait waits until the target ends.
func (t *keeperTarget) Wait() error {
	<-t.ended
	return nil
}

// trackedChannel is a session's channel of a keeperTarget: reading it (or
// its stderr) notes that the target was heard; closing it forgets it.
type trackedChannel struct {
	gossh.Channel
	t *keeperTarget
}

func (c *trackedChannel) Read(p []byte) (int, error) {
	n, err := c.Channel.Read(p)
	if n > 0 {
		c.t.heard.note()
	}
	return n, err
}

func (c *trackedChannel) Stderr() io.ReadWriter {
	return heardStream{c.Channel.Stderr(), &c.t.heard}
}

func (c *trackedChannel) Close() error {
	c.t.mu.Lock()
	delete(c.t.chans, c)
	c.t.mu.Unlock()
	return c.Channel.Close()
}

// heardStream notes when a stream's data comes in.
type heardStream struct {
	io.ReadWriter
	heard *heardClock
}

func (s heardStream) Read(p []byte) (int, error) {
	n, err := s.ReadWriter.Read(p)
	if n > 0 {
		s.heard.note()
	}
	return n, err
}

// readLine reads one line from r byte by byte: what follows the line is the
// SSH stream, which must stay unread.
func readLine(r io.Reader, limit int) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for len(b) < limit {
		if _, err := io.ReadFull(r, one); err != nil {
			return "", err
		}
		if one[0] == '\n' {
			return string(b), nil
		}
		b = append(b, one[0])
	}
	return "", errors.New("answer too long")
}

// connect returns a connection to the keeper and the host key it must
// show, starting a keeper when none answers.
func (kc *keeperClient) connect(ctx context.Context) (net.Conn, gossh.PublicKey, error) {
	if err := privateDir(kc.dir, true); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", errNoKeeper, err)
	}
	c, pub, err := kc.dial(ctx)
	if err == nil {
		return c, pub, nil
	}
	if len(kc.command) == 0 {
		return nil, nil, fmt.Errorf("%w in %s: %v", errNoKeeper, kc.dir, err)
	}
	if err := kc.start(ctx); err != nil {
		// One may have started outside this process's turn.
		if c, pub, derr := kc.dial(ctx); derr == nil {
			return c, pub, nil
		}
		return nil, nil, fmt.Errorf("%w: start one in %s: %v", errNoKeeper, kc.dir, err)
	}
	c, pub, err = kc.dial(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("%w in %s: %v", errNoKeeper, kc.dir, err)
	}
	return c, pub, nil
}

// dial connects to the keeper's socket and reads its host key (written
// before it listened, so the key read after connecting is the key of the
// keeper connected to, or of a newer one, which the handshake refuses).
func (kc *keeperClient) dial(ctx context.Context) (net.Conn, gossh.PublicKey, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", filepath.Join(kc.dir, keeperSocket))
	if err != nil {
		return nil, nil, err
	}
	b, err := os.ReadFile(filepath.Join(kc.dir, keeperPub))
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	pub, _, _, _, err := gossh.ParseAuthorizedKey(b)
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("keeper key: %w", err)
	}
	return c, pub, nil
}

// start starts a keeper and waits until it is ready. Processes starting
// at once take turns (a lock file): the second finds the first's keeper.
func (kc *keeperClient) start(ctx context.Context) error {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	lf, err := os.OpenFile(filepath.Join(kc.dir, "start.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer lf.Close()
	if err := flockContext(ctx, lf); err != nil {
		return err
	}
	if c, _, err := kc.dial(ctx); err == nil {
		c.Close()
		return nil // started meanwhile
	}
	logf, err := os.OpenFile(filepath.Join(kc.dir, keeperLog), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	defer pr.Close()
	args := append(kc.command[1:len(kc.command):len(kc.command)], "--dir", kc.dir, "--persist", kc.persist.String())
	cmd := exec.Command(kc.command[0], args...)
	cmd.Stdout, cmd.Stderr = pw, logf
	cmd.Dir = kc.dir // not the starting command's directory, which it would hold
	// Its own session: it outlives this process and its terminal.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		pw.Close()
		return err
	}
	pw.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ready := make(chan error, 1)
	go func() {
		line, err := readLine(pr, 64)
		if err == nil && line != "ready" {
			err = fmt.Errorf("it said %q", line)
		}
		ready <- err
	}()
	sctx, cancel := context.WithTimeout(ctx, keeperStartTimeout)
	defer cancel()
	select {
	case err := <-ready:
		if err != nil {
			<-exited
			return fmt.Errorf("the keeper did not start (%v): %s", err, lastLine(filepath.Join(kc.dir, keeperLog)))
		}
		return nil
	case <-sctx.Done():
		_ = cmd.Process.Kill()
		return fmt.Errorf("the keeper was not ready within %s", keeperStartTimeout)
	}
}

// flockContext takes an exclusive lock on f, giving up when ctx ends.
func flockContext(ctx context.Context, f *os.File) error {
	done := make(chan error, 1)
	go func() { done <- unix.Flock(int(f.Fd()), unix.LOCK_EX) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err() // the lock is dropped when f is closed
	}
}

// lastLine returns the last line of a log file, for an error message.
func lastLine(name string) string {
	b, err := os.ReadFile(name)
	if err != nil {
		return ""
	}
	b = bytes.TrimSpace(b)
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	return string(b)
}
