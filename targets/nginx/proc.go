package nginx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"flightdeck/internal/child"
	"flightdeck/targets/pools"
)

// Setup describes an nginx configuration in the shape this package
// drives: one server proxying to the upstream flightdeck writes (through
// the cohort map's variable when there are cohorts), the access log in
// flightdeck's format, retries to the next server on errors. The demo
// fleet, the benchmarks and the tests run nginx from it; the README
// shows the same configuration for an operator to adapt.
type Setup struct {
	// Dir holds nginx.conf, the pid file, logs, temporary files and the
	// files flightdeck writes.
	Dir string
	// Listen is the server's address, host:port.
	Listen string
	// Upstream names the upstream (default app).
	Upstream string
	// Cohorts includes the cohort map and proxies through its variable.
	Cohorts bool
	// Servers are written to the first upstream file, before flightdeck
	// owns it (nginx refuses to start without it).
	Servers []string
	// Workers is worker_processes (default 2).
	Workers int
}

func (s *Setup) defaults() {
	if s.Upstream == "" {
		s.Upstream = "app"
	}
	if s.Workers <= 0 {
		s.Workers = 2
	}
}

// Paths of a Setup's directory.
func (s Setup) ConfFile() string     { return filepath.Join(s.Dir, "nginx.conf") }
func (s Setup) PIDFile() string      { return filepath.Join(s.Dir, "nginx.pid") }
func (s Setup) UpstreamFile() string { return filepath.Join(s.Dir, "flightdeck-upstream.conf") }
func (s Setup) MapFile() string      { return filepath.Join(s.Dir, "flightdeck-cohort.conf") }
func (s Setup) AccessLog() string    { return filepath.Join(s.Dir, "access.log") }
func (s Setup) ErrorLog() string     { return filepath.Join(s.Dir, "error.log") }

// TestCommand and ReloadCommand are the commands for this setup's nginx.
func (s Setup) TestCommand(bin string) string {
	return fmt.Sprintf("%s -q -t -c %s", shellQuote(bin), shellQuote(s.ConfFile()))
}

// ReloadCommand reloads this setup's nginx.
func (s Setup) ReloadCommand(bin string) string {
	return fmt.Sprintf("%s -s reload -c %s", shellQuote(bin), shellQuote(s.ConfFile()))
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Config returns nginx.conf.
func (s Setup) Config() string {
	s.defaults()
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by flightdeck: nginx driven through an upstream file and graceful reloads.\n")
	if os.Geteuid() == 0 {
		fmt.Fprintf(&b, "user root;\n") // the test and demo files live in a root-only directory
	}
	fmt.Fprintf(&b, "worker_processes %d;\npid %s;\nerror_log %s warn;\n", s.Workers, s.PIDFile(), s.ErrorLog())
	fmt.Fprintf(&b, "events { worker_connections 4096; }\n\nhttp {\n")
	for _, t := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&b, "    %s_temp_path %s;\n", t, filepath.Join(s.Dir, "tmp", t))
	}
	fmt.Fprintf(&b, "    %s\n", logFormatLine)
	fmt.Fprintf(&b, "    include %s;\n", s.UpstreamFile())
	target := "http://" + s.Upstream
	if s.Cohorts {
		fmt.Fprintf(&b, "    include %s;\n", s.MapFile())
		target = "http://$" + Variable(s.Upstream)
	}
	fmt.Fprintf(&b, "    server {\n        listen %s;\n        access_log %s flightdeck;\n", s.Listen, s.AccessLog())
	fmt.Fprintf(&b, "        location / {\n            proxy_pass %s;\n", target)
	fmt.Fprintf(&b, "            proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n")
	fmt.Fprintf(&b, "            proxy_connect_timeout 2s;\n")
	fmt.Fprintf(&b, "            proxy_next_upstream error timeout http_502 http_503 http_504;\n")
	fmt.Fprintf(&b, "        }\n    }\n}\n")
	return b.String()
}

// ErrNotInstalled is returned when no nginx binary is found.
var ErrNotInstalled = errors.New("nginx is not installed: install the Debian package nginx (apt-get install nginx)")

// Binary finds the nginx binary.
func Binary() (string, error) {
	if p, ok := child.Find("nginx"); ok {
		return p, nil
	}
	return "", ErrNotInstalled
}

// Process is an nginx started from a Setup (master in the foreground).
type Process struct {
	Setup Setup
	Bin   string
	proc  *child.Proc
}

// Start writes the configuration and a first upstream file (and an empty
// cohort map), tests it and runs nginx until Stop; it returns once nginx's
// workers run.
func Start(ctx context.Context, s Setup) (*Process, error) {
	s.defaults()
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	for _, d := range []string{s.Dir, filepath.Join(s.Dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	st := &pools.State{}
	var first strings.Builder
	fmt.Fprintf(&first, "# The first upstream file; flightdeck owns it from its first change.\nupstream %s {\n", s.Upstream)
	for _, a := range s.Servers {
		fmt.Fprintf(&first, "    server %s;\n", a)
	}
	if len(s.Servers) == 0 {
		fmt.Fprintf(&first, "    server 127.0.0.1:9 down;\n")
	}
	fmt.Fprintf(&first, "}\n")
	if s.Cohorts {
		fmt.Fprintf(&first, "upstream %s%s {\n    server 127.0.0.1:9 down;\n}\n", s.Upstream, CohortSuffix)
		if err := pools.WriteFile(s.MapFile(), renderMap(st, s.Upstream, "setup"), 0o644); err != nil {
			return nil, err
		}
	}
	if err := pools.WriteFile(s.UpstreamFile(), []byte(first.String()), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(s.ConfFile(), []byte(s.Config()), 0o644); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, bin, "-q", "-t", "-c", s.ConfFile()).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nginx -t -c %s: %w: %s", s.ConfFile(), err, bytes.TrimSpace(out))
	}
	p := &Process{Setup: s, Bin: bin}
	if p.proc, err = child.Start(bin, "-c", s.ConfFile(), "-g", "daemon off;"); err != nil {
		return nil, fmt.Errorf("starting nginx: %w", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if pid, err := masterPID(s.PIDFile()); err == nil && pid == p.proc.Pid() {
			if ws, err := workers(pid); err == nil && len(ws) > 0 {
				return p, nil
			}
		}
		if p.proc.Exited() {
			return nil, fmt.Errorf("nginx exited: %v: %s%s", p.proc.Err(), p.proc.Log(), readTail(s.ErrorLog()))
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("nginx did not start its workers within 20s: %s", readTail(s.ErrorLog()))
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			p.Stop()
			return nil, err
		}
	}
}

func readTail(path string) string {
	data, _ := os.ReadFile(path)
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return string(data)
}

// Config returns the adapter configuration for this process.
func (p *Process) Config(env string) Config {
	return Config{UpstreamFile: p.Setup.UpstreamFile(), Upstream: p.Setup.Upstream, MapFile: p.mapFile(),
		TestCommand: p.Setup.TestCommand(p.Bin), ReloadCommand: p.Setup.ReloadCommand(p.Bin),
		PIDFile: p.Setup.PIDFile(), AccessLog: p.Setup.AccessLog(), Env: env}
}

func (p *Process) mapFile() string {
	if p.Setup.Cohorts {
		return p.Setup.MapFile()
	}
	return ""
}

// Log returns nginx's error log and output so far.
func (p *Process) Log() string { return p.proc.Log() + readTail(p.Setup.ErrorLog()) }

// Stop stops nginx (SIGQUIT: graceful; SIGKILL after 5 s).
func (p *Process) Stop() error {
	p.proc.Stop(syscall.SIGQUIT, 5*time.Second)
	return nil
}
