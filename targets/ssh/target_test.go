package ssh

import (
	"crypto/ed25519"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"flightdeck/engine/plan"
	"flightdeck/targets/ssh/sshtest"
)

func TestResolve(t *testing.T) {
	home := t.TempDir()
	cfg := filepath.Join(home, "config")
	err := os.WriteFile(cfg, []byte(`
Host web-*
  User deploy
  IdentityFile ~/.ssh/deploy_key
Host web-1
  HostName 10.1.0.11
  Port 2201
  ProxyJump ops@bastion.example:2022
Host bastion.example
  IdentityFile ~/.ssh/bastion_key
Host deep
  HostName 10.2.0.5
  ProxyJump outer.example, inner@10.2.0.1:2200
Host inner-alias
  ProxyJump somewhere-else
Host loop-a
  ProxyJump loop-b
Host loop-b
  ProxyJump loop-a
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewResolver(ResolveOptions{Home: home, ConfigFile: cfg, DefaultUser: "me",
		Getenv: func(k string) string {
			if k == "SSH_AUTH_SOCK" {
				return "/run/agent.sock"
			}
			return ""
		}})
	if err != nil {
		t.Fatal(err)
	}
	env := &plan.Environment{DeployTo: "/srv/app"}
	defaultKeys := []string{filepath.Join(home, ".ssh/id_ed25519"), filepath.Join(home, ".ssh/id_rsa")}
	defaultKnown := []string{filepath.Join(home, ".ssh/known_hosts")}
	cases := []struct {
		name      string
		host      plan.Host
		env       *plan.Environment
		user      string
		addr      string
		deployTo  string
		keys      []string
		agent     string
		known     []string
		jump      string // Key() of the jump target (and its own, and so on)
		accept    bool
		wantError string
	}{
		{name: "full", host: plan.Host{Name: "a", SSH: "deploy@10.0.0.5:2222"}, env: env,
			user: "deploy", addr: "10.0.0.5:2222", deployTo: "/srv/app", keys: defaultKeys, agent: "/run/agent.sock", known: defaultKnown},
		{name: "defaults", host: plan.Host{Name: "a", SSH: "10.0.0.5", DeployTo: "/opt/x/"}, env: env,
			user: "me", addr: "10.0.0.5:22", deployTo: "/opt/x", keys: defaultKeys, agent: "/run/agent.sock", known: defaultKnown},
		{name: "ipv6 with port", host: plan.Host{Name: "a", SSH: "root@[::1]:2200"}, env: env,
			user: "root", addr: "[::1]:2200", deployTo: "/srv/app", keys: defaultKeys, agent: "/run/agent.sock", known: defaultKnown},
		{name: "bare ipv6", host: plan.Host{Name: "a", SSH: "::1"}, env: env,
			user: "me", addr: "[::1]:22", deployTo: "/srv/app", keys: defaultKeys, agent: "/run/agent.sock", known: defaultKnown},
		{name: "config alias", host: plan.Host{Name: "a", SSH: "web-1"}, env: env,
			user: "deploy", addr: "10.1.0.11:2201", deployTo: "/srv/app",
			keys: []string{filepath.Join(home, ".ssh/deploy_key")}, agent: "/run/agent.sock", known: defaultKnown,
			jump: "ops@bastion.example:2022"},
		{name: "config wildcard, user given", host: plan.Host{Name: "a", SSH: "bob@web-2"}, env: env,
			user: "bob", addr: "web-2:22", deployTo: "/srv/app",
			keys: []string{filepath.Join(home, ".ssh/deploy_key")}, agent: "/run/agent.sock", known: defaultKnown},
		{name: "explicit settings win", host: plan.Host{Name: "a", SSH: "web-1"},
			env: &plan.Environment{DeployTo: "/srv/app", SSH: &plan.SSHConfig{
				IdentityFile: "~/keys/ci", KnownHosts: "/etc/fd/known_hosts", AcceptNewHostKeys: true,
				Jump: "jump@10.9.9.9"}},
			user: "deploy", addr: "10.1.0.11:2201", deployTo: "/srv/app",
			keys: []string{filepath.Join(home, "keys/ci")}, known: []string{"/etc/fd/known_hosts"},
			jump: "jump@10.9.9.9:22", accept: true},
		{name: "ProxyJump chain from the config", host: plan.Host{Name: "a", SSH: "deep"}, env: env,
			user: "me", addr: "10.2.0.5:22", deployTo: "/srv/app", keys: defaultKeys, agent: "/run/agent.sock", known: defaultKnown,
			jump: "inner@10.2.0.1:2200 via me@outer.example:22"},
		{name: "jump chain from the plan; a later hop's own ProxyJump does not apply", host: plan.Host{Name: "a", SSH: "10.0.0.9"},
			env:  &plan.Environment{DeployTo: "/srv/app", SSH: &plan.SSHConfig{Jump: "web-1, inner-alias"}},
			user: "me", addr: "10.0.0.9:22", deployTo: "/srv/app", keys: defaultKeys, agent: "/run/agent.sock", known: defaultKnown,
			jump: "me@inner-alias:22 via deploy@10.1.0.11:2201 via ops@bastion.example:2022"},
		{name: "ProxyJump cycle", host: plan.Host{Name: "a", SSH: "loop-a"}, env: env, wantError: "ProxyJump cycle"},
		{name: "empty hop", host: plan.Host{Name: "a", SSH: "x"}, env: &plan.Environment{DeployTo: "/srv/app", SSH: &plan.SSHConfig{Jump: "a,,b"}},
			wantError: "empty hop"},
		{name: "no deploy_to", host: plan.Host{Name: "a", SSH: "x"}, env: &plan.Environment{}, wantError: "deploy_to is not set"},
		{name: "relative deploy_to", host: plan.Host{Name: "a", SSH: "x", DeployTo: "srv"}, env: env, wantError: "absolute"},
		{name: "bad port", host: plan.Host{Name: "a", SSH: "x:99999"}, env: env, wantError: "port"},
		{name: "no ssh", host: plan.Host{Name: "a"}, env: env, wantError: "no ssh address"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.Resolve(&tc.host, tc.env)
			if tc.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("err = %v, want %q", err, tc.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.User != tc.user || got.Addr != tc.addr || got.DeployTo != tc.deployTo {
				t.Errorf("got %s@%s %s, want %s@%s %s", got.User, got.Addr, got.DeployTo, tc.user, tc.addr, tc.deployTo)
			}
			if !reflect.DeepEqual(got.IdentityFiles, tc.keys) || got.AgentSocket != tc.agent {
				t.Errorf("keys %v agent %q, want %v %q", got.IdentityFiles, got.AgentSocket, tc.keys, tc.agent)
			}
			if !reflect.DeepEqual(got.KnownHosts, tc.known) || got.AcceptNewHostKeys != tc.accept {
				t.Errorf("known_hosts %v accept %v, want %v %v", got.KnownHosts, got.AcceptNewHostKeys, tc.known, tc.accept)
			}
			jump := ""
			if got.Jump != nil {
				jump = got.Jump.Key()
			}
			if jump != tc.jump {
				t.Errorf("jump %q, want %q", jump, tc.jump)
			}
			if got.ConnectTimeout != DefaultConnectTimeout || got.CommandTimeout != DefaultCommandTimeout {
				t.Errorf("timeouts %v %v", got.ConnectTimeout, got.CommandTimeout)
			}
		})
	}
}

// TestSSHConfigAliasConnects reaches a real sshd through an alias of an
// injected ~/.ssh/config, with the default known_hosts of the injected home.
func TestSSHConfigAliasConnects(t *testing.T) {
	c := sshtest.Start(t, 1)
	s := c.Servers[0]
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(s.Addr)
	conf := "Host app\n  HostName " + host + "\n  Port " + port + "\n  User " + c.User + "\n  IdentityFile " + c.ClientKey + "\n"
	if err := os.WriteFile(filepath.Join(home, ".ssh/config"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".ssh/known_hosts"), []byte(s.KnownHostsLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := NewResolver(ResolveOptions{Home: home, Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	tg, err := r.Resolve(&plan.Host{Name: "app", SSH: "app"}, &plan.Environment{DeployTo: s.DeployTo})
	if err != nil {
		t.Fatal(err)
	}
	p := NewPool(PoolOptions{})
	defer p.Close()
	if _, err := p.Host("app", tg).Inspect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// TestAgentAndJumpHost signs with keys held by an ssh-agent (no key file)
// and reaches the second server through the first as a bastion.
func TestAgentAndJumpHost(t *testing.T) {
	c := sshtest.Start(t, 2)
	b, err := os.ReadFile(c.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := gossh.ParseRawPrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: *raw.(*ed25519.PrivateKey)}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = agent.ServeAgent(keyring, conn)
			}()
		}
	}()
	home := t.TempDir() // no keys in it
	r, err := NewResolver(ResolveOptions{Home: home, Getenv: func(k string) string {
		if k == "SSH_AUTH_SOCK" {
			return sock
		}
		return ""
	}})
	if err != nil {
		t.Fatal(err)
	}
	env := &plan.Environment{SSH: &plan.SSHConfig{
		KnownHosts:     c.KnownHosts,
		Jump:           c.User + "@" + c.Servers[0].Addr,
		ConnectTimeout: plan.Duration{Duration: 10 * time.Second},
	}}
	tg, err := r.Resolve(&plan.Host{Name: "behind", SSH: c.User + "@" + c.Servers[1].Addr, DeployTo: c.Servers[1].DeployTo}, env)
	if err != nil {
		t.Fatal(err)
	}
	if tg.Jump == nil || tg.AgentSocket != sock {
		t.Fatalf("resolved %+v", tg)
	}
	p := NewPool(PoolOptions{})
	defer p.Close()
	h := p.Host("behind", tg)
	ctx := ctxT(t)
	if err := h.Prepare(ctx, release(t, "r1", map[string]string{"a": "1"}), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(c.Servers[1].DeployTo, "releases/r1/a")); err != nil {
		t.Errorf("release not on the host behind the bastion: %v", err)
	}
	// The bastion's connection is shared in the pool: it is the jump's key.
	p.mu.Lock()
	_, hasJump := p.conns[tg.Jump.Key()]
	p.mu.Unlock()
	if !hasJump {
		t.Error("no pooled connection to the bastion")
	}
}

// TestJumpChain deploys to the third of three real sshd servers through
// the first two, as `jump: a,b` (or ProxyJump a,b) asks: every hop's host
// key is checked and each hop's connection is pooled.
func TestJumpChain(t *testing.T) {
	c := sshtest.Start(t, 3)
	r, err := NewResolver(ResolveOptions{Home: t.TempDir(), DefaultUser: c.User, Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	env := &plan.Environment{SSH: &plan.SSHConfig{
		IdentityFile:   c.ClientKey,
		KnownHosts:     c.KnownHosts,
		Jump:           c.Servers[0].Addr + "," + c.User + "@" + c.Servers[1].Addr,
		ConnectTimeout: plan.Duration{Duration: 10 * time.Second},
	}}
	tg, err := r.Resolve(&plan.Host{Name: "deep", SSH: c.Servers[2].Addr, DeployTo: c.Servers[2].DeployTo}, env)
	if err != nil {
		t.Fatal(err)
	}
	p := NewPool(PoolOptions{})
	defer p.Close()
	h := p.Host("deep", tg)
	ctx := ctxT(t)
	if err := h.Prepare(ctx, release(t, "r1", map[string]string{"a": "1"}), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(c.Servers[2].DeployTo, "releases/r1/a")); err != nil {
		t.Errorf("release not on the host behind two bastions: %v", err)
	}
	for _, s := range c.Servers[:2] {
		if _, err := os.Stat(filepath.Join(s.DeployTo, "releases")); err == nil {
			t.Errorf("a bastion (%s) got the release", s.Addr)
		}
	}
	p.mu.Lock()
	_, second := p.conns[tg.Jump.Key()]
	_, first := p.conns[tg.Jump.Jump.Key()]
	p.mu.Unlock()
	if !first || !second {
		t.Errorf("pooled hops: first %v, second %v; want both", first, second)
	}

	// A hop whose host key is unknown stops the chain there.
	empty := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	env.SSH.KnownHosts = empty
	tg, err = r.Resolve(&plan.Host{Name: "deep", SSH: c.Servers[2].Addr, DeployTo: c.Servers[2].DeployTo}, env)
	if err != nil {
		t.Fatal(err)
	}
	p2 := NewPool(PoolOptions{})
	defer p2.Close()
	err = p2.Host("deep", tg).Prepare(ctx, release(t, "r2", map[string]string{"a": "2"}), nil)
	if err == nil || !strings.Contains(err.Error(), "jump host "+c.Servers[0].Addr) {
		t.Fatalf("unknown bastion key: %v, want a refusal naming the first hop", err)
	}
}
