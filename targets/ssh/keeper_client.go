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
	"strconv"
	"strings"
	"sync"
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

// dialKeeper connects to t through the keeper. An error that wraps
// errNoKeeper means the keeper could not be used; any other is t's own
// (refused, unknown host key…), as a direct dial would have met it.
func (p *Pool) dialKeeper(ctx context.Context, t Target) (*link, error) {
	where := t.User + "@" + t.Addr
	timeout := t.connectTimeout()
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	nc, pub, err := p.keeper.connect(dctx)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(dctx, func() { nc.Close() })
	fail := func(err error) (*link, error) {
		stop()
		nc.Close()
		if dctx.Err() != nil {
			// The target did not answer in time (the keeper dials with
			// the same timeout): not a reason to dial it again directly.
			if ctx.Err() == nil {
				return nil, fmt.Errorf("connect to %s through the connection keeper: timed out after %s", where, timeout)
			}
			return nil, fmt.Errorf("connect to %s: %w", where, ctx.Err())
		}
		return nil, fmt.Errorf("connect to %s through the connection keeper: %w", where, err)
	}
	req, err := json.Marshal(keeperRequest{Target: t})
	if err != nil {
		return fail(err)
	}
	if _, err := nc.Write(append(req, '\n')); err != nil {
		return fail(fmt.Errorf("%w: %v", errNoKeeper, err))
	}
	answer, err := readLine(nc, keeperMaxRequest)
	switch {
	case err != nil:
		return fail(fmt.Errorf("%w: no answer: %v", errNoKeeper, err))
	case strings.HasPrefix(answer, "error: "):
		// The target's own error, from the keeper's dial.
		stop()
		nc.Close()
		msg, err := strconv.Unquote(strings.TrimPrefix(answer, "error: "))
		if err != nil {
			msg = answer
		}
		return nil, fmt.Errorf("connect to %s through the connection keeper: %s", where, msg)
	case answer == "exiting":
		return fail(fmt.Errorf("%w: it is exiting", errNoKeeper))
	case answer != "ok":
		return fail(fmt.Errorf("%w: it answered %q", errNoKeeper, answer))
	}
	cfg := &gossh.ClientConfig{User: t.User, HostKeyCallback: gossh.FixedHostKey(pub), Timeout: timeout}
	heard := newHeardConn(nc)
	sc, chans, reqs, err := gossh.NewClientConn(heard, "keeper", cfg)
	if err != nil {
		return fail(fmt.Errorf("%w: %v", errNoKeeper, err))
	}
	l, err := p.newLink(t, gossh.NewClient(sc, chans, reqs), heard, stop)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("connect to %s through the connection keeper: %w", where, err)
	}
	return l, nil
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
