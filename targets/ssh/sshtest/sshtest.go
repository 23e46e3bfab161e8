// Package sshtest starts real OpenSSH servers on 127.0.0.1 for tests and
// benchmarks: each with its own generated ed25519 host key, port and
// deploy directory, all trusting one generated client key. It is exported
// so that tests of other packages (the engine, the CLI) can deploy over
// real SSH too.
package sshtest

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"flightdeck/internal/proctest"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHDPath is where Debian's openssh-server installs sshd.
const SSHDPath = "/usr/sbin/sshd"

// Cluster is a set of running sshd servers sharing one client key.
type Cluster struct {
	// Dir holds everything the cluster wrote.
	Dir string
	// User is the login (the user running the tests).
	User string
	// ClientKey is the path of the client's private key (OpenSSH format).
	ClientKey string
	// KnownHosts is a known_hosts file listing every server's host key.
	KnownHosts string
	// Servers are the running servers.
	Servers []*Server
}

// Server is one sshd process.
type Server struct {
	// Addr is 127.0.0.1:port.
	Addr string
	// Port is the TCP port.
	Port int
	// DeployTo is an empty directory for this server's releases.
	DeployTo string
	// HostKey is the server's public host key.
	HostKey gossh.PublicKey
	// KnownHostsLine trusts HostKey at Addr.
	KnownHostsLine string

	dir    string
	config string

	mu  sync.Mutex
	cmd *exec.Cmd
	log *bytes.Buffer
}

// Options tune the servers.
type Options struct {
	// AcceptEnv lists variables sshd accepts from clients (none by default,
	// like a stock server that accepts only LANG and LC_*).
	AcceptEnv []string
	// ForceCommand, when set, is sshd's ForceCommand: every session runs
	// it instead of what the client asked (internal-sftp: an account that
	// can use SFTP only).
	ForceCommand string
}

// Start starts n servers for the test and stops them in t.Cleanup. It
// skips the test when sshd is not installed, unless CI=true, where it fails.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	return StartWith(t, n, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	if _, err := os.Stat(SSHDPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("sshd not found at %s: apt-get install openssh-server", SSHDPath)
		}
		t.Skip("sshd not found: apt-get install openssh-server")
	}
	c, err := New(t.TempDir(), n, opts)
	if err != nil {
		t.Fatalf("start sshd servers: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// New starts n servers under dir. The caller must Close the cluster.
func New(dir string, n int, opts Options) (*Cluster, error) {
	if _, err := os.Stat(SSHDPath); err != nil {
		return nil, fmt.Errorf("sshd not found at %s (apt-get install openssh-server): %w", SSHDPath, err)
	}
	// sshd refuses to start without its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return nil, fmt.Errorf("create /run/sshd: %w", err)
	}
	u, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("current user: %w", err)
	}
	c := &Cluster{Dir: dir, User: u.Username}

	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	c.ClientKey = filepath.Join(dir, "id_ed25519")
	if err := writePrivateKey(c.ClientKey, priv); err != nil {
		return nil, err
	}
	sshPub, err := gossh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	authKeys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authKeys, gossh.MarshalAuthorizedKey(sshPub), 0o600); err != nil {
		return nil, err
	}

	var known strings.Builder
	for i := range n {
		s, err := newServer(filepath.Join(dir, "host"+strconv.Itoa(i)), authKeys, opts)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.Servers = append(c.Servers, s)
		known.WriteString(s.KnownHostsLine + "\n")
	}
	c.KnownHosts = filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(c.KnownHosts, []byte(known.String()), 0o600); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Close stops every server and the connections they serve.
func (c *Cluster) Close() {
	for _, s := range c.Servers {
		_ = s.Kill()
	}
}

func writePrivateKey(path string, priv ed25519.PrivateKey) error {
	block, err := gossh.MarshalPrivateKey(priv, "")
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(block), 0o600)
}

func newServer(dir, authKeys string, opts Options) (*Server, error) {
	s := &Server{dir: dir, DeployTo: filepath.Join(dir, "deploy")}
	if err := os.MkdirAll(s.DeployTo, 0o755); err != nil {
		return nil, err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	hostKey := filepath.Join(dir, "ssh_host_ed25519_key")
	if err := writePrivateKey(hostKey, priv); err != nil {
		return nil, err
	}
	if s.HostKey, err = gossh.NewPublicKey(pub); err != nil {
		return nil, err
	}
	// A free port can be taken by someone else before sshd binds it: retry.
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.Port = port
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.config = filepath.Join(dir, "sshd_config")
		// SetEnv SHLVL=1: bash sources ~/.bashrc for a command run by sshd
		// when SHLVL < 2, and a developer machine's rc (pyenv init...) can
		// cost seconds per exec, which would be measured instead of the
		// tools under test.
		cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile %s
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin yes
UsePAM no
StrictModes no
MaxStartups 100
MaxSessions 100
Subsystem sftp internal-sftp
LogLevel ERROR
SetEnv SHLVL=1
`, port, hostKey, filepath.Join(dir, "sshd.pid"), authKeys)
		if len(opts.AcceptEnv) > 0 {
			cfg += "AcceptEnv " + strings.Join(opts.AcceptEnv, " ") + "\n"
		}
		if opts.ForceCommand != "" {
			cfg += "ForceCommand " + opts.ForceCommand + "\n"
		}
		if err := os.WriteFile(s.config, []byte(cfg), 0o600); err != nil {
			return nil, err
		}
		if lastErr = s.Restart(); lastErr == nil {
			s.KnownHostsLine = knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.HostKey)
			return s, nil
		}
	}
	return nil, lastErr
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Restart starts the server's sshd again on the same port (after Kill).
// It returns once the server greets with its SSH banner.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("sshd is already running")
	}
	var log bytes.Buffer
	cmd := exec.Command(SSHDPath, "-D", "-e", "-f", s.config)
	cmd.Stdout = &log
	cmd.Stderr = &log
	// Pdeathsig: a killed test binary does not leave listeners behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start sshd: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("sshd on %s exited: %s", s.Addr, strings.TrimSpace(log.String()))
		default:
		}
		if banner(s.Addr) {
			s.cmd = cmd
			s.log = &log
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return fmt.Errorf("sshd on %s did not answer within 10s: %s", s.Addr, strings.TrimSpace(log.String()))
		}
		time.Sleep(10 * time.Millisecond) // polling for readiness, bounded by deadline
	}
}

// banner reports whether an SSH server answers at addr.
func banner(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "SSH-")
}

// Kill stops the server's sshd and every process it started (the
// per-connection sshd processes and what they run), so that established
// connections drop at once. The listener is stopped first (SIGSTOP) so it
// cannot fork while its descendants are found and killed.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	pid := s.cmd.Process.Pid
	_ = proctest.Freeze(pid)
	killTree(pid)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	s.cmd = nil
	return nil
}

// KillConnections kills the processes serving established connections
// but leaves the listener running, so clients can reconnect.
func (s *Server) KillConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	pid := s.cmd.Process.Pid
	_ = proctest.Freeze(pid)
	killTree(pid)
	_ = syscall.Kill(pid, syscall.SIGCONT)
}

// PauseConnections stops (SIGSTOP) the processes serving established
// connections, so that the client sees a host that no longer answers
// while its TCP connection stays open. ResumeConnections undoes it.
// Each one is frozen (stopped, and waited for until every thread is).
func (s *Server) PauseConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	for _, k := range descendants(s.cmd.Process.Pid) {
		_ = proctest.Freeze(k)
	}
}

// ResumeConnections continues processes stopped by PauseConnections.
func (s *Server) ResumeConnections() { s.signalConnections(syscall.SIGCONT) }

func (s *Server) signalConnections(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	for _, k := range descendants(s.cmd.Process.Pid) {
		_ = syscall.Kill(k, sig)
	}
}

// PID is the process id of the server's listening sshd (0 when it is not
// running); the processes serving connections are its children.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Log returns what sshd printed.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return ""
	}
	return s.log.String()
}

// killTree SIGKILLs every descendant of pid (not pid itself), repeating
// until none is left: the per-connection sshd processes call setsid, so
// they are not in the listener's process group.
func killTree(pid int) {
	for range 50 {
		kids := descendants(pid)
		if len(kids) == 0 {
			return
		}
		for _, k := range kids {
			_ = syscall.Kill(k, syscall.SIGKILL)
		}
		// Reap-free wait: killed processes leave /proc once their parent
		// (killed too, or init) reaps them.
		time.Sleep(5 * time.Millisecond)
	}
}

// descendants lists the live descendants of pid from /proc.
func descendants(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command name (which may hold spaces) in parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 || f[0] == "Z" {
			continue
		}
		ppid, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		children[ppid] = append(children[ppid], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, k := range children[p] {
			out = append(out, k)
			queue = append(queue, k)
		}
	}
	return out
}
