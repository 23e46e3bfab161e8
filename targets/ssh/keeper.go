package ssh

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"flightdeck/internal/atomicfile"
)

// The keeper keeps SSH connections open between flightdeck processes, as
// OpenSSH's ControlMaster with ControlPersist does (and Ansible with it):
// the first command of a plan with `ssh: {persist: 60s}` starts it, and
// the commands that follow within the persist time reuse its connections
// instead of paying a handshake per host (on a loaded server that is tens
// of milliseconds of its CPU each, and the round trips to reach it).
//
// It is one process per user and control directory. A process reaches it
// over one Unix socket connection in that directory, whatever the number
// of targets: one request line (the protocol version, as JSON), one answer
// line ("ok"), and then the socket speaks SSH, with the keeper as the
// server. On it the process attaches each target with a channel of type
// target@flightdeck (its extra data: a number the process chose and the
// target as JSON), which the keeper accepts once it holds a connection to
// the target (or rejects with the dial's error) and closes when that
// connection ends. Every session the process opens on a target is a
// channel of type session@flightdeck naming that number; the keeper opens
// a session channel on its connection to the target and relays it, its
// requests (exec, subsystem sftp) and exit status included. So a fleet of
// N hosts costs the keeper and the process one SSH connection between
// them, not N (at 500 hosts that was ~150 KB of buffers and goroutines per
// host on each side, and a key exchange per host per command).
//
// Trust: the directory must belong to this user and be private (0700);
// the keeper also checks each client's credentials (SO_PEERCRED) and
// serves only its own user. Its SSH host key is made at start and its
// public half is written beside the socket; clients accept no other. The
// keeper verifies every target's host key against the target's own
// known_hosts files, as a direct dial does, and never trusts a new key (a
// plan that accepts new host keys dials directly, so that what it trusts
// is journaled). It forwards no agent and accepts only session channels.
const (
	keeperSocket = "keeper.sock"
	keeperPub    = "keeper.pub"
	keeperLock   = "keeper.lock"
	keeperLog    = "keeper.log"
	keeperPID    = "keeper.pid"
	// keeperMaxRequest bounds a client's request line.
	keeperMaxRequest = 64 << 10
)

// ErrKeeperRunning is returned by ServeKeeper when another keeper serves
// the directory.
var ErrKeeperRunning = errors.New("a connection keeper already serves this directory")

// KeeperOptions configure ServeKeeper.
type KeeperOptions struct {
	// Dir is the control directory (created 0700 when missing).
	Dir string
	// Persist is how long the keeper stays without any client before it
	// closes its connections and exits.
	Persist time.Duration
	// Ready, when set, is told "ready" once clients can connect.
	Ready io.Writer
	// Log, when set, gets one line per connection made or lost, and per
	// client come and gone.
	Log io.Writer
	// Held, when set, is told how many host connections the keeper holds
	// each time that number changes (cmd/flightdeck sizes the process's
	// memory limit by it).
	Held func(n int)

	// onWarm, for tests, is told "ready KIND" when a warm session is kept
	// and "used KIND" when one is handed to a client (KIND: sftp, shell).
	onWarm func(event string)
}

// keeperProtocol is the version of the socket's protocol: a keeper
// answers a client that asks for another with a line that is neither "ok"
// nor an error, so that the client dials directly (as it does when no
// keeper runs). Version 1 was one socket connection per target.
const keeperProtocol = 2

// keeperHello is the client's request line.
type keeperHello struct {
	Protocol int `json:"protocol"`
}

// Channel types on the keeper's socket, and what their extra data holds.
const (
	// targetChannel attaches a target: keeperAttach.
	targetChannel = "target@flightdeck"
	// sessionChannel opens a session on an attached target: keeperSession.
	sessionChannel = "session@flightdeck"
	// keepaliveRequest, on a target's channel, is relayed to the target as
	// keepalive@openssh.com, answered with its answer.
	keepaliveRequest = "keepalive@flightdeck"
)

// keeperAttach is the extra data of a target channel.
type keeperAttach struct {
	ID     uint32
	Target string // JSON
}

// keeperSession is the extra data of a session channel.
type keeperSession struct {
	ID uint32
}

// keeperExiting is the reason a keeper gives for a target it will not
// attach because it is exiting: the client dials directly.
const keeperExiting = "the connection keeper is exiting"

// keeper is a running connection keeper.
type keeper struct {
	opts   KeeperOptions
	signer gossh.Signer
	log    func(format string, args ...any)

	mu      sync.Mutex
	pools   map[string]*Pool // by the target's credentials
	clients int
	idle    *time.Timer

	// heldMu serialises the count of host connections held and what
	// opts.Held is told of it.
	heldMu sync.Mutex
	held   int

	bufs relayBuffers
	// warm holds the target connections' warm sessions, ready or being
	// started: warmUp.
	warm map[warmKey]*warmSession
}

// ServeKeeper runs a connection keeper in opts.Dir until ctx ends or it
// has had no client for opts.Persist.
func ServeKeeper(ctx context.Context, opts KeeperOptions) error {
	if opts.Persist <= 0 {
		return errors.New("the keeper needs a persist time")
	}
	if err := privateDir(opts.Dir, true); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(opts.Dir, keeperLock), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("keeper lock: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return ErrKeeperRunning
		}
		return fmt.Errorf("keeper lock: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		return err
	}
	sock := filepath.Join(opts.Dir, keeperSocket)
	// A socket left by a keeper that died: this one holds the lock now.
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := atomicfile.Write(filepath.Join(opts.Dir, keeperPub), gossh.MarshalAuthorizedKey(signer.PublicKey()), 0o600); err != nil {
		return err
	}
	_ = atomicfile.Write(filepath.Join(opts.Dir, keeperPID), fmt.Appendf(nil, "%d\n", os.Getpid()), 0o600)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("keeper socket: %w", err)
	}
	defer func() {
		ln.Close()
		os.Remove(sock)
		os.Remove(filepath.Join(opts.Dir, keeperPub))
		os.Remove(filepath.Join(opts.Dir, keeperPID))
	}()
	if err := os.Chmod(sock, 0o600); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	k := &keeper{opts: opts, signer: signer, pools: map[string]*Pool{}, warm: map[warmKey]*warmSession{}, log: func(string, ...any) {}}
	if opts.Log != nil {
		var lmu sync.Mutex
		k.log = func(format string, args ...any) {
			lmu.Lock()
			defer lmu.Unlock()
			fmt.Fprintf(opts.Log, time.Now().UTC().Format("2006-01-02T15:04:05.000Z ")+format+"\n", args...)
		}
	}
	var wg sync.WaitGroup
	defer func() {
		// Clients first (their connections close with ctx), then the
		// targets' connections.
		cancel()
		wg.Wait()
		k.closePools()
	}()
	var idled atomic.Bool
	k.idle = time.AfterFunc(opts.Persist, func() {
		idled.Store(true)
		cancel()
	})
	context.AfterFunc(ctx, func() { ln.Close() })
	if opts.Ready != nil {
		fmt.Fprintln(opts.Ready, "ready")
	}
	k.log("keeper %d serving %s, persist %s", os.Getpid(), opts.Dir, opts.Persist)
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				why := "stopped"
				if idled.Load() {
					why = fmt.Sprintf("no client for %s", opts.Persist)
				}
				k.log("keeper %d exits: %s", os.Getpid(), why)
				return nil
			}
			return fmt.Errorf("keeper accept: %w", err)
		}
		uc := c.(*net.UnixConn)
		pid, err := sameUser(uc)
		if err != nil {
			k.log("refused a client: %v", err)
			c.Close()
			continue
		}
		k.enter()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer k.leave()
			k.log("client pid %d connected", pid)
			k.serve(ctx, uc)
			k.log("client pid %d left", pid)
		}()
	}
}

// enter and leave count clients; the persist time runs while there is none.
func (k *keeper) enter() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.clients++
	k.idle.Stop()
}

func (k *keeper) leave() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.clients--; k.clients == 0 {
		k.idle.Reset(k.opts.Persist)
	}
}

func (k *keeper) closePools() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, p := range k.pools {
		p.Close()
	}
}

// pool returns the keeper's pool for t's credentials: targets that log in
// with other keys or check other known_hosts files never share a
// connection.
func (k *keeper) pool(t Target) *Pool {
	id, _ := json.Marshal([]any{t.IdentityFiles, t.ExplicitIdentity, t.AgentSocket, t.KnownHosts})
	k.mu.Lock()
	defer k.mu.Unlock()
	p, ok := k.pools[string(id)]
	if !ok {
		p = NewPool(PoolOptions{noSFTP: true,
			onDial: func(t Target) {
				k.log("connected to %s", t.Key())
				k.countHeld(+1)
			},
			onLost: func(t Target, why string) {
				k.log("connection to %s closed: %s", t.Key(), why)
				k.countHeld(-1)
			},
		})
		k.pools[string(id)] = p
	}
	return p
}

// countHeld adds d to the host connections held and tells opts.Held.
func (k *keeper) countHeld(d int) {
	k.heldMu.Lock()
	defer k.heldMu.Unlock()
	k.held += d
	if k.opts.Held != nil {
		k.opts.Held(k.held)
	}
}

// serve answers one client: its request line, then SSH over the socket.
func (k *keeper) serve(ctx context.Context, c net.Conn) {
	defer c.Close()
	br := bufio.NewReaderSize(io.LimitReader(c, keeperMaxRequest), 4096)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return
	}
	var hello keeperHello
	if err := json.Unmarshal(line, &hello); err != nil || hello.Protocol != keeperProtocol {
		// Neither "ok" nor "error: …": a client of another version
		// dials directly.
		fmt.Fprintf(c, "unsupported: this keeper speaks protocol %d\n", keeperProtocol)
		return
	}
	if br.Buffered() > 0 {
		return // the client must wait for the answer before speaking SSH
	}
	if _, err := io.WriteString(c, "ok\n"); err != nil {
		return
	}
	cfg := &gossh.ServerConfig{NoClientAuth: true}
	cfg.AddHostKey(k.signer)
	sc, chans, reqs, err := gossh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	stop := context.AfterFunc(ctx, func() { sc.Close() })
	defer stop()
	go gossh.DiscardRequests(reqs)
	cl := &keeperConn{targets: map[uint32]*link{}}
	var wg sync.WaitGroup
	defer wg.Wait()
	for nc := range chans {
		switch nc.ChannelType() {
		case targetChannel:
			wg.Add(1)
			go func() {
				defer wg.Done()
				k.attach(ctx, cl, nc)
			}()
		case sessionChannel:
			var req keeperSession
			if err := gossh.Unmarshal(nc.ExtraData(), &req); err != nil {
				nc.Reject(gossh.Prohibited, "bad session request")
				continue
			}
			l := cl.target(req.ID)
			if l == nil {
				nc.Reject(gossh.ConnectionFailed, "no such target (its connection ended)")
				continue
			}
			go k.relayChannel(nc, l)
		default:
			nc.Reject(gossh.Prohibited, "the connection keeper relays session channels only")
		}
	}
}

// keeperConn is what one client has attached: its targets by number.
type keeperConn struct {
	mu      sync.Mutex
	targets map[uint32]*link
}

func (c *keeperConn) target(id uint32) *link {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.targets[id]
}

// attach answers a target channel: it is accepted once the keeper holds a
// connection to the target, and closed when that connection ends (so that
// the client dials again, through the keeper, which dials the target
// again) or when the client closes it. Keepalives on it are answered by
// the target.
func (k *keeper) attach(ctx context.Context, cl *keeperConn, nc gossh.NewChannel) {
	var req keeperAttach
	var t Target
	if err := gossh.Unmarshal(nc.ExtraData(), &req); err != nil || json.Unmarshal([]byte(req.Target), &t) != nil || t.Addr == "" {
		nc.Reject(gossh.Prohibited, "bad target request")
		return
	}
	t.AcceptNewHostKeys = false
	for j := t.Jump; j != nil; j = j.Jump {
		j.AcceptNewHostKeys = false
	}
	l, err := k.pool(t).conn(t).get(ctx)
	if err != nil {
		if ctx.Err() != nil {
			// Its persist time ran out as this client came: not the
			// target's error; the client dials without the keeper.
			nc.Reject(gossh.ResourceShortage, keeperExiting)
		} else {
			nc.Reject(gossh.ConnectionFailed, err.Error())
		}
		return
	}
	cl.mu.Lock()
	if _, taken := cl.targets[req.ID]; taken {
		cl.mu.Unlock()
		nc.Reject(gossh.Prohibited, "target number in use")
		return
	}
	cl.targets[req.ID] = l
	cl.mu.Unlock()
	defer func() {
		cl.mu.Lock()
		delete(cl.targets, req.ID)
		cl.mu.Unlock()
	}()
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		_, _ = io.Copy(io.Discard, ch) // until the client closes it
	}()
	go func() {
		for r := range reqs {
			if r.Type != keepaliveRequest {
				r.Reply(false, nil)
				continue
			}
			_, _, err := l.client.SendRequest("keepalive@openssh.com", true, nil)
			r.Reply(err == nil, nil)
		}
	}()
	select {
	case <-l.done:
	case <-ended:
	case <-ctx.Done():
	}
}

// relayChannel opens a session on the target for nc and relays it: data
// both ways, stderr, end of input, requests and their answers, exit
// status. A session whose first request starts SFTP or a command shell is
// given the target's warm session of that kind when the keeper holds one
// (see warmUp).
func (k *keeper) relayChannel(nc gossh.NewChannel, l *link) {
	// Opened before the client's is accepted, so that the target's
	// refusal reaches the client as its own. A session channel costs the
	// target no process until its first request.
	uch, ureqs, err := l.client.OpenChannel("session", nil)
	if err != nil {
		var oe *gossh.OpenChannelError
		if errors.As(err, &oe) {
			nc.Reject(oe.Reason, oe.Message)
		} else {
			nc.Reject(gossh.ConnectionFailed, err.Error())
		}
		return
	}
	cch, creqs, err := nc.Accept()
	if err != nil {
		uch.Close()
		return
	}
	first, ok := <-creqs
	if !ok {
		cch.Close()
		uch.Close()
		return
	}
	if start, ok := warmStartOf(first); ok {
		defer k.warmUp(l, start) // for the next client, once this one is done
		if w := k.takeWarm(l, start.kind); w != nil {
			k.noteWarm("used " + start.kind)
			uch.Close()
			first.Reply(true, nil) // it was started for this
			if w.pump != nil {
				k.relayShell(cch, creqs, w.pump, l)
				return
			}
			k.relay(cch, creqs, nil, w.ch, w.reqs)
			return
		}
		if start.kind == "shell" {
			ok, err := uch.SendRequest(first.Type, true, first.Payload)
			ok = ok && err == nil
			first.Reply(ok, nil)
			if !ok {
				uch.Close()
				cch.Close()
				return
			}
			k.relayShell(cch, creqs, newShellPump(uch, ureqs, &k.bufs), l)
			return
		}
	}
	k.relay(cch, creqs, first, uch, ureqs)
}

// warmStart is a kind of session the keeper keeps warm, by the first
// request that starts it.
type warmStart struct {
	kind    string
	typ     string
	payload []byte
}

// warmStarts are SFTP, and the command shells of shell.go (whose command
// line never varies through the keeper).
var warmStarts = [...]warmStart{
	{"sftp", "subsystem", gossh.Marshal(struct{ Name string }{"sftp"})},
	{"shell", "exec", gossh.Marshal(struct{ Command string }{shellBootstrap})},
}

// warmStartOf returns the warm session a first request starts, if any.
func warmStartOf(r *gossh.Request) (warmStart, bool) {
	for _, w := range warmStarts {
		if r.Type == w.typ && bytes.Equal(r.Payload, w.payload) {
			return w, true
		}
	}
	return warmStart{}, false
}

// warmKey names a target connection's warm session of a kind.
type warmKey struct {
	l    *link
	kind string
}

// warmSession is a session started on a target and not yet used. ch and
// reqs, or ch and pump (a command shell: its output already read by the
// pump), are set before ready is closed (ch nil: it could not be started).
type warmSession struct {
	ready chan struct{}
	taken chan struct{} // closed when a client takes it
	ch    gossh.Channel
	reqs  <-chan *gossh.Request
	pump  *shellPump
}

// warmUp starts a session of kind on l for the next client, unless one is
// kept already or being started. Starting one costs the target a process
// (sshd forks the SFTP server, or the login shell that execs sh: 10-15 ms
// of a loaded host's CPU), which a command then no longer waits for; it
// is started once a client's session of that kind has ended, when the
// command that used it is done with the host. Nothing is sent on it before
// it is handed over (not even SFTP's init): the client starts it as it
// would a new one. A client that comes while it is being started waits
// for it rather than starting another (commands run back to back would
// otherwise pay for both).
func (k *keeper) warmUp(l *link, start warmStart) {
	key := warmKey{l, start.kind}
	k.mu.Lock()
	if _, held := k.warm[key]; held || l.dead() {
		k.mu.Unlock()
		return
	}
	w := &warmSession{ready: make(chan struct{}), taken: make(chan struct{})}
	k.warm[key] = w
	k.mu.Unlock()
	ch, reqs, err := l.client.OpenChannel("session", nil)
	started := err == nil
	if started {
		ok, err := ch.SendRequest(start.typ, true, start.payload)
		started = err == nil && ok
	}
	k.mu.Lock()
	if !started || l.dead() {
		if k.warm[key] == w {
			delete(k.warm, key)
		}
		k.mu.Unlock()
		if ch != nil {
			ch.Close()
		}
		close(w.ready) // ch nil: a client waiting for it starts its own
		return
	}
	w.ch = ch
	if start.kind == "shell" {
		w.pump = newShellPump(ch, reqs, &k.bufs)
	} else {
		w.reqs = reqs
	}
	kept := k.warm[key] == w // else a client took it while it started
	k.mu.Unlock()
	close(w.ready)
	if !kept {
		return
	}
	k.noteWarm("ready " + start.kind)
	// Dropped with its connection (or its shell), unless a client took
	// it first.
	go k.dropWhenGone(key, w)
}

func (k *keeper) noteWarm(event string) {
	if k.opts.onWarm != nil {
		k.opts.onWarm(event)
	}
}

// takeWarm returns l's warm session of kind, if it holds one or is
// starting one (waited for).
func (k *keeper) takeWarm(l *link, kind string) *warmSession {
	key := warmKey{l, kind}
	k.mu.Lock()
	w := k.warm[key]
	if w == nil || l.dead() {
		k.mu.Unlock()
		return nil
	}
	delete(k.warm, key)
	close(w.taken)
	k.mu.Unlock()
	<-w.ready
	if w.ch == nil {
		return nil
	}
	if w.pump != nil && w.pump.gone() {
		return nil // ended while parked: the client's session starts one
	}
	return w
}

// relay relays the client's session cch to the target's uch; first, when
// not nil, is the client's first request, not yet passed on.
func (k *keeper) relay(cch gossh.Channel, creqs <-chan *gossh.Request, first *gossh.Request, uch gossh.Channel, ureqs <-chan *gossh.Request) {
	bufs := &k.bufs
	go func() {
		_ = relayCopy(uch, cch, bufs)
		_ = uch.CloseWrite()
	}()
	// fwd is held while a request is relayed with its answer: the target
	// may run a command and close the channel before the relay has passed
	// on its answer to the exec request, and the client must get the
	// answer, then the exit status, then the close, in that order.
	var fwd sync.Mutex
	go func() {
		forward := func(r *gossh.Request) {
			if r.Type == "auth-agent-req@openssh.com" || r.Type == "x11-req" {
				r.Reply(false, nil) // never forwarded
				return
			}
			fwd.Lock()
			ok, err := uch.SendRequest(r.Type, r.WantReply, r.Payload)
			if r.WantReply {
				r.Reply(ok && err == nil, nil)
			}
			fwd.Unlock()
		}
		if first != nil {
			forward(first)
		}
		for r := range creqs {
			forward(r)
		}
		uch.Close() // the client closed its channel
	}()
	var out sync.WaitGroup
	out.Add(2)
	go func() {
		defer out.Done()
		_ = relayCopy(cch, uch, bufs)
	}()
	go func() {
		defer out.Done()
		_ = relayCopy(cch.Stderr(), uch.Stderr(), bufs)
	}()
	out.Wait()
	_ = cch.CloseWrite()
	for r := range ureqs {
		// exit-status, exit-signal: after the output, before the close.
		fwd.Lock()
		ok, err := cch.SendRequest(r.Type, r.WantReply, r.Payload)
		fwd.Unlock()
		if r.WantReply {
			r.Reply(ok && err == nil, nil)
		}
	}
	fwd.Lock()
	cch.Close()
	fwd.Unlock()
}

// Relay buffers: a relayed stream waits for data with a buffer of
// smallRelayBuffer bytes of its own and borrows one of largeRelayBuffer
// (an SSH packet's payload) from the keeper's relayBuffers only while
// reads fill the small one, giving it back as soon as a read comes back
// short (what the channel had buffered is drained). Most streams are idle
// most of the time (a shell waiting for its next command, an SFTP session
// between requests, stderr): a fleet's keeper relays three per channel, a
// few channels per host, and a buffer each that grew to 32 KB and stayed
// was ~100 KB per host for the life of its connection.
const (
	smallRelayBuffer = 512
	largeRelayBuffer = 32 << 10
)

// relayBuffers lends relays their large buffers. The zero value is ready.
type relayBuffers struct {
	pool sync.Pool
	// lent counts the buffers lent so far, out those not given back.
	lent, out atomic.Int64
}

func (b *relayBuffers) get() *[]byte {
	b.lent.Add(1)
	b.out.Add(1)
	if buf, ok := b.pool.Get().(*[]byte); ok {
		return buf
	}
	buf := make([]byte, largeRelayBuffer)
	return &buf
}

func (b *relayBuffers) put(buf *[]byte) {
	b.out.Add(-1)
	b.pool.Put(buf)
}

// relayCopy copies src to dst until src ends (nil) or either fails.
func relayCopy(dst io.Writer, src io.Reader, bufs *relayBuffers) error {
	small := make([]byte, smallRelayBuffer)
	var large *[]byte
	defer func() {
		if large != nil {
			bufs.put(large)
		}
	}()
	for {
		buf := small
		if large != nil {
			buf = *large
		}
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		switch {
		case n == len(buf) && large == nil:
			large = bufs.get() // more is likely waiting
		case n < len(buf) && large != nil:
			bufs.put(large) // drained
			large = nil
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// sameUser checks that the peer of c runs as this process's user, and
// returns the peer's process id.
func sameUser(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	if int(cred.Uid) != os.Geteuid() {
		return 0, fmt.Errorf("peer pid %d runs as uid %d, not %d", cred.Pid, cred.Uid, os.Geteuid())
	}
	return int(cred.Pid), nil
}

// privateDir checks that dir belongs to this user and only this user can
// use it (creating it 0700 when create is set and it is missing).
func privateDir(dir string, create bool) error {
	if dir == "" {
		return errors.New("no control directory")
	}
	fi, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) && create {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("control directory: %w", err)
		}
		fi, err = os.Lstat(dir)
	}
	if err != nil {
		return fmt.Errorf("control directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("control directory %s is not a directory", dir)
	case !ok || int(st.Uid) != os.Geteuid():
		return fmt.Errorf("control directory %s does not belong to this user", dir)
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("control directory %s can be used by others (mode %#o): it must be 0700", dir, fi.Mode().Perm())
	}
	return nil
}
