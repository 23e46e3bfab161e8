package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// StartRequest asks the supervisor to (re)start the service of one host slot.
type StartRequest struct {
	Host    string `json:"host"`
	Slot    string `json:"slot"`
	Port    string `json:"port"`
	Release string `json:"release"`
	// Dir is the release directory (or, with Follow, the current link).
	Dir    string `json:"dir"`
	Follow bool   `json:"follow,omitempty"`
	// StopAll, instead of a start, stops every service of the supervisor
	// and forgets them (a lab host handed to the next demo).
	StopAll bool `json:"stop_all,omitempty"`
}

// StartReply is the supervisor's answer.
type StartReply struct {
	PID   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
}

// Supervisor runs the demo's service processes (the flightdeck binary in
// its hidden demo-service mode), one per host slot. Restart hooks reach it
// over a unix socket (`flightdeck demo-ctl`). Children die with the demo:
// they get SIGKILL if the demo process dies (Pdeathsig) and SIGTERM, then
// SIGKILL, when it stops.
type Supervisor struct {
	bin    string
	logDir string
	host   string
	record func(StartRequest)
	ln     net.Listener

	mu    sync.Mutex
	procs map[string]*proc
	dead  map[string]bool
	wg    sync.WaitGroup
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// NewSupervisor listens on sock and starts services with bin; they
// listen on 127.0.0.1.
func NewSupervisor(bin, sock, logDir string) (*Supervisor, error) {
	return NewSupervisorWith(SupervisorOptions{Binary: bin, Sock: sock, LogDir: logDir})
}

// SupervisorOptions configure a supervisor.
type SupervisorOptions struct {
	// Binary is the flightdeck executable run in demo-service mode.
	Binary string
	// Sock is the unix socket `flightdeck demo-ctl` reaches it on.
	Sock string
	// LogDir receives one log file per host slot.
	LogDir string
	// ListenHost is the address services listen on (default 127.0.0.1;
	// a lab host's services listen on every address).
	ListenHost string
	// Record, when set, is called with every request that came over the
	// socket and succeeded, so that a host can start the same services
	// again after a reboot.
	Record func(StartRequest)
}

// NewSupervisorWith starts a supervisor with options.
func NewSupervisorWith(o SupervisorOptions) (*Supervisor, error) {
	_ = os.Remove(o.Sock)
	ln, err := net.Listen("unix", o.Sock)
	if err != nil {
		return nil, fmt.Errorf("supervisor socket: %w", err)
	}
	if err := os.MkdirAll(o.LogDir, 0o755); err != nil {
		ln.Close()
		return nil, err
	}
	if o.ListenHost == "" {
		o.ListenHost = "127.0.0.1"
	}
	s := &Supervisor{bin: o.Binary, logDir: o.LogDir, host: o.ListenHost, record: o.Record, ln: ln,
		procs: map[string]*proc{}, dead: map[string]bool{}}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

func (s *Supervisor) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(60 * time.Second))
			var req StartRequest
			if err := json.NewDecoder(bufio.NewReader(c)).Decode(&req); err != nil {
				_ = json.NewEncoder(c).Encode(StartReply{Error: "bad request: " + err.Error()})
				return
			}
			var pid int
			var err error
			if req.StopAll {
				s.StopAll(30 * time.Second)
			} else {
				pid, err = s.Start(req)
			}
			rep := StartReply{PID: pid}
			if err != nil {
				rep.Error = err.Error()
			} else if s.record != nil {
				s.record(req)
			}
			_ = json.NewEncoder(c).Encode(rep)
		}()
	}
}

func key(host, slot string) string { return host + "/" + slot }

// Start stops the slot's running service gracefully (SIGTERM: it finishes
// its in-flight requests) and starts the requested release in its place.
func (s *Supervisor) Start(req StartRequest) (int, error) {
	if req.Slot == "" {
		req.Slot = "main"
	}
	k := key(req.Host, req.Slot)
	s.mu.Lock()
	if s.dead[req.Host] {
		s.mu.Unlock()
		return 0, fmt.Errorf("host %s is down: connection refused", req.Host)
	}
	old := s.procs[k]
	s.mu.Unlock()
	if old != nil {
		stop(old, 30*time.Second)
	}
	logf, err := os.OpenFile(filepath.Join(s.logDir, req.Host+"-"+req.Slot+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	args := []string{"demo-service", "--listen", net.JoinHostPort(s.host, req.Port), "--release-dir", req.Dir, "--name", k}
	if req.Follow {
		args = append(args, "--follow")
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Env = append(os.Environ(), "RELEASE_VERSION="+req.Release)
	if req.Follow {
		cmd.Env = append(os.Environ(), "RELEASE_VERSION=")
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return 0, fmt.Errorf("start service for %s: %w", k, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	s.mu.Lock()
	s.procs[k] = p
	s.mu.Unlock()
	return cmd.Process.Pid, nil
}

func stop(p *proc, grace time.Duration) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// KillHost kills every service of a host abruptly and refuses to start
// them again: the host is down.
func (s *Supervisor) KillHost(host string) {
	s.mu.Lock()
	s.dead[host] = true
	var victims []*proc
	for k, p := range s.procs {
		if len(k) > len(host) && k[:len(host)+1] == host+"/" {
			victims = append(victims, p)
		}
	}
	s.mu.Unlock()
	for _, p := range victims {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// PIDs returns the pids of the running services.
func (s *Supervisor) PIDs() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for _, p := range s.procs {
		select {
		case <-p.done:
		default:
			out = append(out, p.cmd.Process.Pid)
		}
	}
	return out
}

// Close stops every service (SIGTERM, then SIGKILL after grace) and the socket.
func (s *Supervisor) Close(grace time.Duration) {
	s.ln.Close()
	s.StopAll(grace)
	s.wg.Wait()
}

// StopAll stops every service (SIGTERM, then SIGKILL after grace) and
// forgets them; hosts marked dead stay dead.
func (s *Supervisor) StopAll(grace time.Duration) {
	s.mu.Lock()
	procs := make([]*proc, 0, len(s.procs))
	for _, p := range s.procs {
		procs = append(procs, p)
	}
	s.procs = map[string]*proc{}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); stop(p, grace) }()
	}
	wg.Wait()
}

// Ctl sends a start request to the supervisor at sock (used by the hidden
// `flightdeck demo-ctl` command that restart hooks run).
func Ctl(ctx context.Context, sock string, req StartRequest) (StartReply, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return StartReply{}, fmt.Errorf("reach the demo supervisor: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return StartReply{}, err
	}
	var rep StartReply
	if err := json.NewDecoder(c).Decode(&rep); err != nil {
		return StartReply{}, fmt.Errorf("supervisor reply: %w", err)
	}
	if rep.Error != "" {
		return rep, errors.New(rep.Error)
	}
	return rep, nil
}
