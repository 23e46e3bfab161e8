// Package etcdtest starts a real etcd cluster (the Debian package
// "etcd-server", binary etcd) on loopback ports for tests: members can be
// killed, stopped and started again, the leader found, and a member's
// client traffic cut through a Proxy. When the binary is missing the test
// is skipped, unless the environment has CI=true, in which case it fails.
package etcdtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"flightdeck/internal/freeport"
	"flightdeck/internal/syncbuf"
)

// Binary finds the etcd binary, or skips (fails under CI=true).
func Binary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("etcd"); err == nil {
		return p
	}
	msg := "etcd binary not found: install the Debian package etcd-server (apt-get install etcd-server)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// Cluster is a running etcd cluster.
type Cluster struct {
	t       testing.TB
	bin     string
	Members []*Member
	// rootPassword is set by EnableAuth.
	rootPassword string
	tls          *TLSFiles
}

// Member is one etcd process.
type Member struct {
	Name string
	// Client is the member's client address (host:port).
	Client  string
	peer    string
	dataDir string
	args    []string
	bin     string
	log     *syncbuf.Buffer
	cmd     *exec.Cmd
	exited  chan struct{}
}

// Options tune a cluster.
type Options struct {
	// TLS, when set, serves clients over TLS with these files (server
	// certificate for 127.0.0.1, key, and the CA that signs client
	// certificates; ClientCertAuth demands one).
	TLS *TLSFiles
}

// TLSFiles are the PEM files of a TLS cluster: the CA, the server's
// certificate (for 127.0.0.1) and key, and a client certificate and key
// signed by the same CA. ClientCertAuth makes the members demand one.
type TLSFiles struct {
	CA, Cert, Key         string
	ClientCert, ClientKey string
	ClientCertAuth        bool
}

// Start runs an n-member cluster and waits until it has a leader. It is
// stopped (and its data removed) at the end of the test.
func Start(t testing.TB, n int) *Cluster { return StartWith(t, n, Options{}) }

// StartWith is Start with options.
func StartWith(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	bin := Binary(t)
	var lastErr error
	// A port taken between freeport.Addrs and etcd's bind fails the start: try
	// again on fresh ports.
	for attempt := 0; attempt < 3; attempt++ {
		c := &Cluster{t: t, bin: bin}
		err := c.start(n, opts)
		if err == nil {
			t.Cleanup(c.stopAll)
			return c
		}
		lastErr = err
		c.stopAll()
	}
	t.Fatalf("etcd cluster did not start: %v", lastErr)
	return nil
}

func (c *Cluster) start(n int, opts Options) error {
	dir := c.t.TempDir()
	scheme := "http"
	if opts.TLS != nil {
		scheme = "https"
	}
	var initial []string
	addrs, err := freeport.Addrs(2 * n)
	if err != nil {
		return err
	}
	for i := range n {
		m := &Member{Name: fmt.Sprintf("m%d", i), Client: addrs[2*i], peer: addrs[2*i+1], bin: c.bin,
			dataDir: filepath.Join(dir, fmt.Sprintf("m%d", i)), log: &syncbuf.Buffer{}}
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"=http://"+m.peer)
	}
	for _, m := range c.Members {
		m.args = []string{
			"--name", m.Name, "--data-dir", m.dataDir,
			"--listen-client-urls", scheme + "://" + m.Client, "--advertise-client-urls", scheme + "://" + m.Client,
			"--listen-peer-urls", "http://" + m.peer, "--initial-advertise-peer-urls", "http://" + m.peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "flightdeck-test",
			"--logger", "zap", "--log-outputs", "stderr",
		}
		if opts.TLS != nil {
			m.args = append(m.args, "--cert-file", opts.TLS.Cert, "--key-file", opts.TLS.Key, "--trusted-ca-file", opts.TLS.CA)
			if opts.TLS.ClientCertAuth {
				m.args = append(m.args, "--client-cert-auth")
			}
		}
		if err := m.run(); err != nil {
			return err
		}
	}
	c.tls = opts.TLS
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = c.waitLeader(ctx, nil)
	return err
}

func (m *Member) run() error {
	cmd := exec.Command(m.bin, m.args...)
	cmd.Stdout, cmd.Stderr = m.log, m.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start etcd member %s: %w", m.Name, err)
	}
	m.cmd = cmd
	m.exited = make(chan struct{})
	go func() { _ = cmd.Wait(); close(m.exited) }()
	return nil
}

// Running reports whether the member's process runs.
func (m *Member) Running() bool {
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// PID is the member's process id (0 when it never ran).
func (m *Member) PID() int {
	if m.cmd == nil || m.cmd.Process == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// Kill ends the member with SIGKILL and waits for it.
func (m *Member) Kill() { m.signal(syscall.SIGKILL) }

// Stop ends the member with SIGTERM and waits for it.
func (m *Member) Stop() { m.signal(syscall.SIGTERM) }

func (m *Member) signal(sig syscall.Signal) {
	if !m.Running() {
		return
	}
	_ = m.cmd.Process.Signal(sig)
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
}

// Restart starts a stopped member again on its data.
func (m *Member) Restart(t testing.TB) {
	t.Helper()
	if m.Running() {
		t.Fatalf("etcd member %s is running", m.Name)
	}
	if err := m.run(); err != nil {
		t.Fatal(err)
	}
}

// Log returns what the member printed (for failure messages).
func (m *Member) Log() string {
	s := m.log.String()
	if len(s) > 8<<10 {
		s = "…" + s[len(s)-8<<10:]
	}
	return s
}

func (c *Cluster) stopAll() {
	for _, m := range c.Members {
		m.Kill()
	}
}

// Endpoints are the members' client addresses.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.Members))
	for i, m := range c.Members {
		eps[i] = m.Client
	}
	return eps
}

// Client returns a client of the whole cluster (closed at the end of the
// test). With EnableAuth done, it logs in as root.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := c.client(c.Endpoints())
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func (c *Cluster) client(eps []string) (*clientv3.Client, error) {
	cfg := clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if c.rootPassword != "" {
		cfg.Username, cfg.Password = "root", c.rootPassword
	}
	if c.tls != nil {
		tc, err := c.tls.ClientConfig()
		if err != nil {
			return nil, err
		}
		cfg.TLS = tc
	}
	return clientv3.New(cfg)
}

// Leader returns the index of the current leader, waiting (up to 30 s)
// until the running members agree on one.
func (c *Cluster) Leader(t testing.TB) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	i, err := c.waitLeader(ctx, nil)
	if err != nil {
		t.Fatalf("etcd: %v", err)
	}
	return i
}

// WaitLeaderNot waits until the running members agree on a leader other
// than member old, and returns it.
func (c *Cluster) WaitLeaderNot(t testing.TB, old int) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	i, err := c.waitLeader(ctx, func(i int) bool { return i != old })
	if err != nil {
		t.Fatalf("etcd: %v", err)
	}
	return i
}

// waitLeader polls every running member's status until they all name the
// same leader (accepted by ok, when set) and a majority of members runs.
func (c *Cluster) waitLeader(ctx context.Context, ok func(int) bool) (int, error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		i, err := c.leaderOnce(ctx)
		if err == nil && (ok == nil || ok(i)) {
			return i, nil
		}
		if err != nil {
			last = err
		}
		for _, m := range c.Members {
			if m.cmd != nil && !m.Running() && strings.Contains(m.log.String(), "address already in use") {
				return -1, fmt.Errorf("member %s: port taken", m.Name)
			}
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("no agreed leader (last: %v)\n%s", last, c.logs())
		case <-tick.C:
		}
	}
}

func (c *Cluster) leaderOnce(ctx context.Context) (int, error) {
	ids := map[uint64]int{}
	leaders := map[uint64]bool{}
	running := 0
	for i, m := range c.Members {
		if !m.Running() {
			continue
		}
		running++
		cli, err := c.client([]string{m.Client})
		if err != nil {
			return -1, fmt.Errorf("member %s: %w", m.Name, err)
		}
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := cli.Status(sctx, m.Client)
		cancel()
		cli.Close()
		if err != nil {
			return -1, fmt.Errorf("member %s: %w", m.Name, err)
		}
		ids[st.Header.MemberId] = i
		leaders[st.Leader] = true
	}
	if running*2 <= len(c.Members) {
		return -1, fmt.Errorf("only %d of %d members run", running, len(c.Members))
	}
	if len(leaders) != 1 {
		return -1, fmt.Errorf("members disagree on the leader")
	}
	for l := range leaders {
		if i, ok := ids[l]; ok && l != 0 {
			return i, nil
		}
	}
	return -1, fmt.Errorf("no leader among the running members")
}

func (c *Cluster) logs() string {
	var b strings.Builder
	for _, m := range c.Members {
		fmt.Fprintf(&b, "--- %s:\n%s\n", m.Name, m.Log())
	}
	return b.String()
}

// EnableAuth creates the root user with password and a user name with
// password (read-write on every key), then turns authentication on.
func (c *Cluster) EnableAuth(t testing.TB, rootPassword, name, password string) {
	t.Helper()
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	steps := []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", rootPassword); return err },
		func() error { _, err := cli.RoleAdd(ctx, "root"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.UserAdd(ctx, name, password); return err },
		func() error { _, err := cli.RoleAdd(ctx, "rw"); return err },
		func() error {
			_, err := cli.RoleGrantPermission(ctx, "rw", "\x00", "\x00", clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := cli.UserGrantRole(ctx, name, "rw"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	}
	for i, s := range steps {
		if err := s(); err != nil {
			t.Fatalf("enable auth, step %d: %v", i+1, err)
		}
	}
	c.rootPassword = rootPassword
}
