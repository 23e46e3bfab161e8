// Package child runs a server binary (HAProxy, nginx) as a child process
// of flightdeck, its tests, the demo fleet or a benchmark: output
// captured, killed if flightdeck dies, stopped with a signal and a grace
// period.
package child

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"flightdeck/internal/syncbuf"
)

// Find returns the path of binary name: in /usr/sbin (where Debian puts
// servers, often outside a user's PATH) or on the PATH.
func Find(name string) (string, bool) {
	p := filepath.Join("/usr/sbin", name)
	if _, err := os.Stat(p); err == nil {
		return p, true
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	return "", false
}

// Proc is a running child process.
type Proc struct {
	cmd  *exec.Cmd
	log  syncbuf.Buffer
	done chan struct{}
	err  error
}

// Start runs bin with args; its output is kept (Log).
func Start(bin string, args ...string) (*Proc, error) {
	p := &Proc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.log, &p.log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process exited; Err then says how.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is how the process exited (after Done).
func (p *Proc) Err() error { return p.err }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Log returns what the process wrote so far.
func (p *Proc) Log() string { return p.log.String() }

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error {
	if p.Exited() {
		return errors.New("the process has exited")
	}
	return p.cmd.Process.Signal(sig)
}

// Stop sends sig and waits up to grace for the process to exit, then
// kills it.
func (p *Proc) Stop(sig os.Signal, grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}
