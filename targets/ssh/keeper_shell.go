package ssh

import (
	"io"
	"sync"

	gossh "golang.org/x/crypto/ssh"
)

// A command shell (shell.go) outlives the client it served: a client that
// is done with an idle shell (its last command's output read to the end
// marker, nothing written since) parks it with a parkRequest before it
// closes its session, and the keeper keeps the target's session as the
// warm shell of the next client instead of closing it and starting
// another. Starting one costs the host a session, the login shell and sh
// (a few milliseconds of its CPU, ~1 s of a 2-CPU machine's for 500 hosts
// after every command); the next command would otherwise wait for that
// work, or compete with it.
//
// The target's output is read by the pump for as long as the session
// lives and written to the client attached at the time. Output while no
// client is attached means the shell is not idle: the session is closed
// (never handed to a client whose command's output it would precede). A
// client that closes its session without parking it, mid-command or not,
// has the target's session closed too.
const parkRequest = "park@flightdeck"

// shellPump is a target's command shell session and the readers of its
// output.
type shellPump struct {
	ch gossh.Channel

	mu sync.Mutex
	// out and errOut are the attached client's channel and its stderr;
	// nil while parked.
	out, errOut io.Writer
	// detach, when set, is told that the session ended while attached.
	detach func()
	dead   bool
	ended  chan struct{} // closed once the session is dead
}

// newShellPump starts reading the output of ch, a session whose first
// request (the shell's command line) was answered; it is parked.
func newShellPump(ch gossh.Channel, reqs <-chan *gossh.Request, bufs *relayBuffers) *shellPump {
	p := &shellPump{ch: ch, ended: make(chan struct{})}
	go gossh.DiscardRequests(reqs) // exit-status: the session ends with it
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = relayCopy(pumpWriter{p, false}, ch, bufs)
	}()
	go func() {
		defer wg.Done()
		_ = relayCopy(pumpWriter{p, true}, ch.Stderr(), bufs)
	}()
	go func() {
		wg.Wait()
		p.kill()
	}()
	return p
}

// pumpWriter writes the pump's output (stderr: the session's stderr) to
// the attached client; output while parked kills the session.
type pumpWriter struct {
	p      *shellPump
	stderr bool
}

func (w pumpWriter) Write(b []byte) (int, error) {
	p := w.p
	p.mu.Lock()
	dst := p.out
	if w.stderr {
		dst = p.errOut
	}
	if dst == nil {
		p.mu.Unlock()
		p.kill()
		return 0, io.ErrClosedPipe
	}
	// Held while writing: a park waits for output in flight.
	defer p.mu.Unlock()
	if _, err := dst.Write(b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// attach hands the session to the client cch; false when it is dead.
// detach is called if the session ends while attached.
func (p *shellPump) attach(cch gossh.Channel, detach func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dead {
		return false
	}
	p.out, p.errOut, p.detach = cch, cch.Stderr(), detach
	return true
}

// gone reports whether the session is dead.
func (p *shellPump) gone() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dead
}

// park detaches the client; false when the session is dead.
func (p *shellPump) park() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.out, p.errOut, p.detach = nil, nil, nil
	return !p.dead
}

// kill closes the session (once), and tells the attached client.
func (p *shellPump) kill() {
	p.mu.Lock()
	if p.dead {
		p.mu.Unlock()
		return
	}
	p.dead = true
	detach := p.detach
	p.out, p.errOut, p.detach = nil, nil, nil
	p.mu.Unlock()
	p.ch.Close()
	close(p.ended)
	if detach != nil {
		detach()
	}
}

// relayShell relays the client's session cch to the target's command
// shell p, until the client closes it: parked (see parkRequest), the
// session is kept as l's warm shell, else closed.
func (k *keeper) relayShell(cch gossh.Channel, creqs <-chan *gossh.Request, p *shellPump, l *link) {
	if !p.attach(cch, func() { cch.Close() }) {
		cch.Close()
		return
	}
	parked := false
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		// Its end (the client's EOF or close) does not end the target's
		// input: the shell may be parked.
		_ = relayCopy(p.ch, cch, &k.bufs)
	}()
	go func() {
		defer wg.Done()
		for r := range creqs {
			switch r.Type {
			case parkRequest:
				parked = p.park()
				if r.WantReply {
					r.Reply(parked, nil)
				}
			default:
				// A shell's session takes no other request: its command
				// line was its first.
				if r.WantReply {
					r.Reply(false, nil)
				}
			}
		}
	}()
	wg.Wait()
	cch.Close()
	if !parked || !k.keepShell(l, p) {
		p.kill()
	}
}

// keepShell makes p, parked, l's warm shell, unless l holds one already
// or is gone; false when it did not.
func (k *keeper) keepShell(l *link, p *shellPump) bool {
	key := warmKey{l, "shell"}
	k.mu.Lock()
	if _, held := k.warm[key]; held || l.dead() {
		k.mu.Unlock()
		return false
	}
	w := &warmSession{ready: make(chan struct{}), taken: make(chan struct{}), ch: p.ch, pump: p}
	close(w.ready)
	k.warm[key] = w
	k.mu.Unlock()
	k.noteWarm("parked shell")
	go k.dropWhenGone(key, w)
	return true
}

// dropWhenGone forgets the warm session w when its connection ends, or
// its shell does, unless a client took it first.
func (k *keeper) dropWhenGone(key warmKey, w *warmSession) {
	var ended <-chan struct{}
	if w.pump != nil {
		ended = w.pump.ended
	}
	select {
	case <-key.l.done:
	case <-ended:
	case <-w.taken:
		return
	}
	k.mu.Lock()
	if k.warm[key] == w {
		delete(k.warm, key)
	}
	k.mu.Unlock()
	if w.pump != nil {
		w.pump.kill()
		k.noteWarm("dropped shell")
	}
}
