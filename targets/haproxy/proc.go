package haproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"flightdeck/internal/child"
)

// Setup describes an HAProxy configuration in the shape this package
// drives: one frontend, one backend holding every server (and, for A/B, a
// cohort backend with the same servers and a map choosing it), health
// checks on every server, and the request log in a ring. The demo fleet,
// the benchmarks and the tests run HAProxy from it; the README shows the
// same configuration for an operator to adapt.
type Setup struct {
	// Dir holds the configuration, the Runtime API socket and the cohort map.
	Dir string
	// Listen is the frontend's address, host:port.
	Listen string
	// Backend and CohortBackend name the backends (default app, app_cohort).
	Backend, CohortBackend string
	// CohortHeader or CohortCookie is what the cohort map is looked up
	// with; CohortHash looks up a bucket 0..99 of the value's hash instead
	// of the value (percent cohorts). Without either, no cohort backend.
	CohortHeader, CohortCookie string
	CohortHash                 bool
	// Servers are the backend's servers.
	Servers []SetupServer
	// HealthPath is the servers' health check path (default /healthz).
	HealthPath string
	// CheckInterval is the health check interval (default 100 ms),
	// CheckTimeout how long a check may take (default 2 s) and Fall how
	// many failed checks take a server down (default 3): slow to give up
	// on a server, so that a loaded machine does not flap.
	CheckInterval time.Duration
	CheckTimeout  time.Duration
	Fall          int
}

// SetupServer is one server: a name and its host:port.
type SetupServer struct {
	Name, Addr string
	// Disabled starts the server in maintenance (an idle slot).
	Disabled bool
}

// Files of a Setup's directory.
const (
	SocketFile = "admin.sock"
	MapFile    = "cohort.map"
	ConfigFile = "haproxy.cfg"
	// RingName is the log ring of a Setup.
	RingName = "flightdeck"
)

func (s *Setup) defaults() {
	if s.Backend == "" {
		s.Backend = "app"
	}
	if s.CohortBackend == "" {
		s.CohortBackend = s.Backend + "_cohort"
	}
	if s.HealthPath == "" {
		s.HealthPath = "/healthz"
	}
	if s.CheckInterval <= 0 {
		s.CheckInterval = 100 * time.Millisecond
	}
	if s.CheckTimeout <= 0 {
		s.CheckTimeout = 2 * time.Second
	}
	if s.Fall <= 0 {
		s.Fall = 3
	}
}

// Cohorts reports whether the setup has a cohort backend and map.
func (s Setup) Cohorts() bool { return s.CohortHeader != "" || s.CohortCookie != "" }

// Socket is the Runtime API socket's path.
func (s Setup) Socket() string { return filepath.Join(s.Dir, SocketFile) }

// Map is the cohort map's path.
func (s Setup) Map() string { return filepath.Join(s.Dir, MapFile) }

// Config returns the configuration text.
func (s Setup) Config() string {
	s.defaults()
	var b strings.Builder
	ms := func(d time.Duration) string { return fmt.Sprintf("%dms", d.Milliseconds()) }
	fmt.Fprintf(&b, "# Written by flightdeck: HAProxy driven through its Runtime API.\n")
	fmt.Fprintf(&b, "global\n    stats socket %s mode 600 level admin\n    stats timeout 2m\n\n", s.Socket())
	fmt.Fprintf(&b, "# flightdeck reads request latency from this ring (show events %s -w).\n", RingName)
	fmt.Fprintf(&b, "ring %s\n    format raw\n    size 4194304\n\n", RingName)
	fmt.Fprintf(&b, "defaults\n    mode http\n    timeout connect 2s\n    timeout client 1m\n    timeout server 1m\n    timeout http-keep-alive 10s\n")
	fmt.Fprintf(&b, "    timeout check %s\n    retries 2\n    option redispatch 1\n\n", ms(s.CheckTimeout))
	fmt.Fprintf(&b, "frontend web\n    bind %s\n    log ring@%s local0\n    log-format \"%s\"\n", s.Listen, RingName, LogFormat)
	if s.Cohorts() {
		key := "req.hdr(" + s.CohortHeader + ")"
		if s.CohortCookie != "" {
			key = "req.cook(" + s.CohortCookie + ")"
		}
		if s.CohortHash {
			key += ",xxh32,mod(100)"
		}
		fmt.Fprintf(&b, "    use_backend %%[%s,map(%s,%s)]\n", key, s.Map(), s.Backend)
	}
	fmt.Fprintf(&b, "    default_backend %s\n", s.Backend)
	backends := []string{s.Backend}
	if s.Cohorts() {
		backends = append(backends, s.CohortBackend)
	}
	for _, be := range backends {
		fmt.Fprintf(&b, "\nbackend %s\n    balance roundrobin\n    option httpchk GET %s\n", be, s.HealthPath)
		fmt.Fprintf(&b, "    default-server check inter %s fastinter %s downinter %s rise 1 fall %d\n",
			ms(s.CheckInterval), ms(s.CheckInterval/2), ms(s.CheckInterval), s.Fall)
		for _, sv := range s.Servers {
			dis := ""
			if sv.Disabled {
				dis = " disabled"
			}
			fmt.Fprintf(&b, "    server %s %s%s\n", sv.Name, sv.Addr, dis)
		}
	}
	return b.String()
}

// ErrNotInstalled is returned when no haproxy binary is found.
var ErrNotInstalled = errors.New("haproxy is not installed: install the Debian package haproxy (apt-get install haproxy)")

// Binary finds the haproxy binary.
func Binary() (string, error) {
	if p, ok := child.Find("haproxy"); ok {
		return p, nil
	}
	return "", ErrNotInstalled
}

// Process is an HAProxy started from a Setup, in master-worker mode.
type Process struct {
	Setup Setup
	proc  *child.Proc
}

// Start writes the setup's configuration and cohort map, checks the
// configuration (haproxy -c) and runs HAProxy until Stop; it returns once
// the Runtime API answers.
func Start(ctx context.Context, s Setup) (*Process, error) {
	s.defaults()
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return nil, err
	}
	cfg := filepath.Join(s.Dir, ConfigFile)
	if err := os.WriteFile(cfg, []byte(s.Config()), 0o644); err != nil {
		return nil, err
	}
	if s.Cohorts() {
		if err := os.WriteFile(s.Map(), nil, 0o644); err != nil {
			return nil, err
		}
	}
	if out, err := exec.CommandContext(ctx, bin, "-c", "-q", "-f", cfg).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("haproxy -c %s: %w: %s", cfg, err, bytes.TrimSpace(out))
	}
	p := &Process{Setup: s}
	if p.proc, err = child.Start(bin, "-W", "-db", "-S", p.masterSocket(), "-f", cfg); err != nil {
		return nil, fmt.Errorf("starting haproxy: %w", err)
	}
	if err := p.waitIdentity(ctx, Identity{}); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

func (p *Process) masterSocket() string { return filepath.Join(p.Setup.Dir, "master.sock") }

// waitIdentity waits until the Runtime API answers with a process other
// than old.
func (p *Process) waitIdentity(ctx context.Context, old Identity) error {
	rt := NewRuntime(p.Setup.Socket())
	rt.Timeout = time.Second
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for {
		a, err := rt.Do(ctx, "show info")
		if err == nil {
			id, perr := parseInfo(a[0])
			if perr == nil && id != old {
				return nil
			}
			last = fmt.Sprintf("still %s", id)
		} else {
			last = err.Error()
		}
		if p.proc.Exited() {
			return fmt.Errorf("haproxy exited: %v: %s", p.proc.Err(), p.Log())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("haproxy did not answer on %s within 20s (%s): %s", p.Setup.Socket(), last, p.Log())
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// Identity returns the running worker's identity.
func (p *Process) Identity(ctx context.Context) (Identity, error) {
	a, err := NewRuntime(p.Setup.Socket()).Do(ctx, "show info")
	if err != nil {
		return Identity{}, err
	}
	return parseInfo(a[0])
}

// Reload reloads HAProxy gracefully (the master CLI's reload) and waits
// until the new worker answers: every runtime change is forgotten.
func (p *Process) Reload(ctx context.Context) error {
	old, err := p.Identity(ctx)
	if err != nil {
		return err
	}
	// The master takes "reload" on its CLI once it is ready to re-execute;
	// a signal sent while it still starts up would be lost.
	var c net.Conn
	deadline := time.Now().Add(20 * time.Second)
	for c, err = net.DialTimeout("unix", p.masterSocket(), 5*time.Second); err != nil; c, err = net.DialTimeout("unix", p.masterSocket(), 5*time.Second) {
		if time.Now().After(deadline) {
			return fmt.Errorf("reloading haproxy: its master CLI is not listening: %w", err)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "reload\n"); err != nil {
		return fmt.Errorf("reloading haproxy: %w", err)
	}
	_, _ = io.Copy(io.Discard, c) // the master closes the connection as it re-executes
	return p.waitIdentity(ctx, old)
}

// Log returns what HAProxy wrote so far.
func (p *Process) Log() string { return p.proc.Log() }

// Stop stops HAProxy (SIGTERM to the master, SIGKILL after 5 s).
func (p *Process) Stop() error {
	p.proc.Stop(syscall.SIGTERM, 5*time.Second)
	return nil
}
