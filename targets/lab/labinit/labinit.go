// Package labinit is the init of a lab host: the process a lab container
// runs (`flightdeck lab-init`, under the engine's minimal init, which
// reaps orphans and forwards signals). It runs the OpenSSH server and the
// host's demo services: a supervisor that restart hooks reach with
// `flightdeck demo-ctl`, whose requests are recorded so that a rebooted
// host starts the same services again, and, on a host no hook has asked
// anything of yet, the demo service of the release current points to as
// soon as a deploy creates it.
package labinit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"flightdeck/engine"
	"flightdeck/targets/demo"
	"flightdeck/targets/lab"
)

// Config configures the init. Zero values mean the lab's defaults.
type Config struct {
	// Binary is the flightdeck executable (default: this one).
	Binary string
	// SSHD is the OpenSSH server (default /usr/sbin/sshd).
	SSHD string
	// Sock is the supervisor's socket (default /run/flightdeck/ctl.sock).
	Sock string
	// StateDir keeps the recorded service requests (default /var/lib/flightdeck).
	StateDir string
	// LogDir receives the services' logs (default /var/log/flightdeck).
	LogDir string
	// DeployTo is the deploy directory whose current release is served
	// when no hook has asked for anything (default /srv/app).
	DeployTo string
	// Port is that service's port (default 8080).
	Port int
	// Host is this host's name (default $FLIGHTDECK_LAB_HOST, else the hostname).
	Host string
	// Keys is the read-only directory with the host key, sshd's
	// configuration and the authorized key, installed at every boot
	// (default /run/flightdeck-lab).
	Keys string
	// Root is prefixed to the paths they are installed to (tests; default "").
	Root string
	// PollEvery is how often DeployTo/current is looked for (default 500ms).
	PollEvery time.Duration
	// Log receives the init's and sshd's messages (default stderr).
	Log io.Writer
}

func (c *Config) fill() error {
	if c.Binary == "" {
		b, err := os.Executable()
		if err != nil {
			return err
		}
		c.Binary = b
	}
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&c.SSHD, "/usr/sbin/sshd")
	def(&c.Sock, lab.CtlSock)
	def(&c.StateDir, "/var/lib/flightdeck")
	def(&c.LogDir, "/var/log/flightdeck")
	def(&c.DeployTo, lab.DeployTo)
	def(&c.Keys, lab.KeysMount)
	def(&c.Host, os.Getenv("FLIGHTDECK_LAB_HOST"))
	if c.Host == "" {
		c.Host, _ = os.Hostname()
	}
	if c.Port == 0 {
		c.Port = lab.ServicePort
	}
	if c.PollEvery == 0 {
		c.PollEvery = 500 * time.Millisecond
	}
	if c.Log == nil {
		c.Log = os.Stderr
	}
	return nil
}

// records keeps the last successful request of each slot in StateDir.
type records struct {
	dir string
	mu  sync.Mutex
}

func (r *records) path(slot string) string { return filepath.Join(r.dir, slot+".json") }

func (r *records) save(req demo.StartRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if req.StopAll {
		entries, _ := os.ReadDir(r.dir)
		for _, e := range entries {
			_ = os.Remove(filepath.Join(r.dir, e.Name()))
		}
		return
	}
	slot := req.Slot
	if slot == "" {
		slot = "main"
	}
	b, _ := json.Marshal(req)
	tmp := r.path(slot) + ".tmp"
	if os.WriteFile(tmp, b, 0o644) == nil {
		_ = os.Rename(tmp, r.path(slot))
	}
}

func (r *records) load() []demo.StartRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	entries, _ := os.ReadDir(r.dir)
	var out []demo.StartRequest
	for _, e := range entries {
		if filepath.Ext(e.Name()) != ".json" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(r.dir, e.Name()))
		var req demo.StartRequest
		if err == nil && json.Unmarshal(b, &req) == nil {
			out = append(out, req)
		}
	}
	return out
}

// installKeys copies the host key, sshd's configuration and the
// authorized key from the mounted directory to where sshd reads them,
// owned by this user (root) with the modes sshd demands.
func installKeys(from, root string) error {
	for _, f := range []struct {
		src, dst string
		mode     os.FileMode
	}{
		{lab.HostKeyFile, "/etc/ssh/" + lab.HostKeyFile, 0o600},
		{lab.HostKeyFile + ".pub", "/etc/ssh/" + lab.HostKeyFile + ".pub", 0o644},
		{lab.SSHDConfigFile, "/etc/ssh/sshd_config", 0o644},
		{lab.AuthorizedKeysFile, "/root/.ssh/authorized_keys", 0o600},
	} {
		b, err := os.ReadFile(filepath.Join(from, f.src))
		if err != nil {
			return fmt.Errorf("install the host's keys: %w", err)
		}
		dst := filepath.Join(root, f.dst)
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return err
		}
		tmp := dst + ".tmp"
		if err := os.WriteFile(tmp, b, f.mode); err != nil {
			return fmt.Errorf("install %s: %w", dst, err)
		}
		if err := os.Chmod(tmp, f.mode); err != nil { // whatever the umask
			return err
		}
		if err := os.Rename(tmp, dst); err != nil {
			return fmt.Errorf("install %s: %w", dst, err)
		}
	}
	return nil
}

// Run runs sshd and the services until ctx ends (the container is
// stopped) or sshd exits.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.fill(); err != nil {
		return err
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(cfg.Log, "lab-init %s: %s\n", cfg.Host, fmt.Sprintf(format, args...))
	}
	for _, d := range []string{filepath.Dir(cfg.Sock), filepath.Join(cfg.StateDir, "services"), cfg.LogDir, "/run/sshd"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("lab-init: %w", err)
		}
	}
	if err := installKeys(cfg.Keys, cfg.Root); err != nil {
		return fmt.Errorf("lab-init: %w", err)
	}
	recs := &records{dir: filepath.Join(cfg.StateDir, "services")}
	sup, err := demo.NewSupervisorWith(demo.SupervisorOptions{
		Binary: cfg.Binary, Sock: cfg.Sock, LogDir: cfg.LogDir, ListenHost: "0.0.0.0", Record: recs.save,
	})
	if err != nil {
		return fmt.Errorf("lab-init: %w", err)
	}
	defer sup.Close(10 * time.Second)

	sshd := exec.Command(cfg.SSHD, "-D", "-e")
	sshd.Stdout, sshd.Stderr = cfg.Log, cfg.Log
	sshd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := sshd.Start(); err != nil {
		return fmt.Errorf("lab-init: start sshd: %w", err)
	}
	sshdDone := make(chan error, 1)
	go func() { sshdDone <- sshd.Wait() }()

	// A rebooted host starts the services it ran before.
	saved := recs.load()
	for _, req := range saved {
		go func() {
			if _, err := sup.Start(req); err != nil {
				logf("start %s again: %v", req.Slot, err)
			} else {
				logf("started %s again (%s)", req.Slot, req.Dir)
			}
		}()
	}
	if len(saved) == 0 {
		go serveCurrent(ctx, cfg, sup, recs, logf)
	}
	logf("sshd and the service supervisor are running")

	select {
	case err := <-sshdDone:
		return fmt.Errorf("lab-init: sshd exited: %v", err)
	case <-ctx.Done():
	}
	_ = sshd.Process.Signal(syscall.SIGTERM)
	select {
	case <-sshdDone:
	case <-time.After(5 * time.Second):
		_ = sshd.Process.Kill()
		<-sshdDone
	}
	return nil
}

// serveCurrent waits for DeployTo/current (an operator's first deploy)
// and serves it with the demo service in follow mode, unless a restart
// hook asked for a service first.
func serveCurrent(ctx context.Context, cfg Config, sup *demo.Supervisor, recs *records, logf func(string, ...any)) {
	link := filepath.Join(cfg.DeployTo, engine.CurrentLink)
	tick := time.NewTicker(cfg.PollEvery)
	defer tick.Stop()
	for {
		if len(recs.load()) > 0 {
			return
		}
		if _, err := os.Lstat(link); err == nil {
			req := demo.StartRequest{Host: cfg.Host, Slot: "main", Port: strconv.Itoa(cfg.Port), Dir: link, Follow: true}
			if _, err := sup.Start(req); err != nil {
				logf("serve %s: %v", link, err)
			} else {
				recs.save(req)
				logf("serving %s on :%d", link, cfg.Port)
			}
			return
		} else if !errors.Is(err, os.ErrNotExist) {
			logf("look for %s: %v", link, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
