package ssh

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kevinburke/ssh_config"

	"flightdeck/engine/plan"
)

// Defaults used when neither the plan nor ~/.ssh/config says otherwise.
const (
	DefaultPort             = 22
	DefaultConnectTimeout   = 10 * time.Second
	DefaultCommandTimeout   = 5 * time.Minute
	DefaultMaxParallelDials = 64
)

// Target is everything needed to reach one host and find its deploy_to.
type Target struct {
	// User and Addr (host:port) are where to log in.
	User string
	Addr string
	// DeployTo is the absolute deploy directory on the host.
	DeployTo string
	// IdentityFiles are private keys tried in order (missing files are
	// skipped unless Explicit).
	IdentityFiles []string
	// ExplicitIdentity is set when the plan named the identity file: it must
	// exist and the agent is not used.
	ExplicitIdentity bool
	// AgentSocket is the ssh-agent socket ("" for none).
	AgentSocket string
	// KnownHosts are known_hosts files; accepted new keys go to the first.
	KnownHosts []string
	// AcceptNewHostKeys trusts (and records) keys of hosts not yet known.
	// A changed key is refused regardless.
	AcceptNewHostKeys bool
	ConnectTimeout    time.Duration
	CommandTimeout    time.Duration
	// Jump is a bastion to reach Addr through (nil for a direct dial).
	Jump *Target
	// VerifySizesOnly makes Verify compare sizes instead of hashing files.
	VerifySizesOnly bool
}

// Key identifies the connection a target needs; targets with equal keys
// share it.
func (t Target) Key() string {
	k := t.User + "@" + t.Addr
	if t.Jump != nil {
		k += " via " + t.Jump.Key()
	}
	return k
}

// connectTimeout is t's ConnectTimeout, or DefaultConnectTimeout.
func (t Target) connectTimeout() time.Duration {
	if t.ConnectTimeout > 0 {
		return t.ConnectTimeout
	}
	return DefaultConnectTimeout
}

// ResolveOptions make the environment Resolve reads injectable for tests.
type ResolveOptions struct {
	// Home is the user's home directory (default os.UserHomeDir).
	Home string
	// ConfigFile is the ssh config (default Home/.ssh/config; "none" for none).
	ConfigFile string
	// Getenv reads environment variables (default os.Getenv); it is asked
	// for SSH_AUTH_SOCK.
	Getenv func(string) string
	// DefaultUser is the login when none is given (default the current user).
	DefaultUser string
}

func (o *ResolveOptions) fill() error {
	if o.Home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return fmt.Errorf("find home directory: %w", err)
		}
		o.Home = h
	}
	if o.ConfigFile == "" {
		o.ConfigFile = filepath.Join(o.Home, ".ssh", "config")
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.DefaultUser == "" {
		if u, err := user.Current(); err == nil {
			o.DefaultUser = u.Username
		}
	}
	return nil
}

// Resolver turns plan host entries into Targets. It reads the ssh config
// once.
type Resolver struct {
	opts ResolveOptions
	cfg  *ssh_config.Config
}

// NewResolver reads the ssh config named by opts (a missing file is fine).
func NewResolver(opts ResolveOptions) (*Resolver, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	r := &Resolver{opts: opts}
	if opts.ConfigFile != "none" {
		f, err := os.Open(opts.ConfigFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("read ssh config: %w", err)
		default:
			defer f.Close()
			cfg, err := ssh_config.Decode(f)
			if err != nil {
				return nil, fmt.Errorf("parse ssh config %s: %w", opts.ConfigFile, err)
			}
			r.cfg = cfg
		}
	}
	return r, nil
}

// Resolve builds the Target for a plan host of an environment. The host's
// ssh string is user@address:port (user and port optional; IPv6 in
// brackets) or an alias of the ssh config; deploy_to is the host's or else
// the environment's. Environment ssh settings win over the ssh config.
func (r *Resolver) Resolve(h *plan.Host, env *plan.Environment) (Target, error) {
	if h == nil || h.SSH == "" {
		return Target{}, errors.New("host has no ssh address")
	}
	var sc plan.SSHConfig
	if env != nil && env.SSH != nil {
		sc = *env.SSH
	}
	t, err := r.resolveAddr(h.SSH, sc, 0, true)
	if err != nil {
		return Target{}, fmt.Errorf("host %s: %w", h.Name, err)
	}
	t.DeployTo = h.DeployTo
	if t.DeployTo == "" && env != nil {
		t.DeployTo = env.DeployTo
	}
	if t.DeployTo == "" {
		return Target{}, fmt.Errorf("host %s: deploy_to is not set", h.Name)
	}
	if !path.IsAbs(t.DeployTo) {
		return Target{}, fmt.Errorf("host %s: deploy_to %q must be an absolute path", h.Name, t.DeployTo)
	}
	t.DeployTo = path.Clean(t.DeployTo)
	if sc.Jump != "" {
		if t.Jump, err = r.resolveChain(sc.Jump, sc, 0); err != nil {
			return Target{}, fmt.Errorf("host %s: jump: %w", h.Name, err)
		}
	}
	return t, nil
}

// maxJumpHops bounds a chain of jump hosts, counting those that the hops'
// own ProxyJump settings add: a ProxyJump cycle in ~/.ssh/config ends here.
const maxJumpHops = 8

// resolveChain resolves a jump list "hop1,hop2,..." (as ssh -J and
// ProxyJump take it) into the last hop, each reached through the one
// before it. The first hop is reached as its own settings say (its own
// ProxyJump included); the later ones through the chain only.
func (r *Resolver) resolveChain(list string, sc plan.SSHConfig, depth int) (*Target, error) {
	var prev *Target
	hops, err := plan.SplitJumpList(list)
	if err != nil {
		return nil, err
	}
	for i, hop := range hops {
		d := depth + i + 1
		if d > maxJumpHops {
			return nil, fmt.Errorf("jump list %q: more than %d hops (is there a ProxyJump cycle?)", list, maxJumpHops)
		}
		jsc := sc
		jsc.Jump = ""
		j, err := r.resolveAddr(hop, jsc, d, prev == nil)
		if err != nil {
			return nil, fmt.Errorf("jump host %s: %w", hop, err)
		}
		if prev != nil {
			j.Jump = prev
		}
		prev = &j
	}
	return prev, nil
}

// resolveAddr resolves one "[user@]host[:port]" or alias with settings sc.
// depth is how many jump hops lead to it; with ownJump, its ProxyJump
// setting from the ssh config applies.
func (r *Resolver) resolveAddr(s string, sc plan.SSHConfig, depth int, ownJump bool) (Target, error) {
	userPart, host, port, err := plan.SplitSSHAddress(s)
	if err != nil {
		return Target{}, err
	}
	alias := host
	get := func(key string) string {
		if r.cfg == nil {
			return ""
		}
		v, _ := r.cfg.Get(alias, key)
		return v
	}
	t := Target{
		User:              userPart,
		AcceptNewHostKeys: sc.AcceptNewHostKeys,
		ConnectTimeout:    sc.ConnectTimeout.Duration,
		CommandTimeout:    sc.CommandTimeout.Duration,
	}
	if hn := get("HostName"); hn != "" {
		host = strings.ReplaceAll(hn, "%h", alias)
		if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
			host = host[1 : len(host)-1] // an IPv6 address written as in a URL
		}
		if host == "" || strings.ContainsFunc(host, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '[' || r == ']' || r == '/' }) {
			return Target{}, fmt.Errorf("ssh config: %s: bad HostName %q", alias, hn)
		}
	}
	if port == 0 {
		if p := get("Port"); p != "" {
			n, err := strconv.Atoi(p)
			if err != nil || n <= 0 || n > 65535 {
				return Target{}, fmt.Errorf("ssh config: %s: bad Port %q", alias, p)
			}
			port = n
		} else {
			port = DefaultPort
		}
	}
	t.Addr = net.JoinHostPort(host, strconv.Itoa(port))
	if t.User == "" {
		t.User = get("User")
	}
	if t.User == "" {
		t.User = r.opts.DefaultUser
	}
	if t.User == "" {
		return Target{}, fmt.Errorf("%s: no user given and the current user is unknown", s)
	}
	if t.ConnectTimeout == 0 {
		if v := get("ConnectTimeout"); v != "" {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				t.ConnectTimeout = time.Duration(n) * time.Second
			}
		}
	}
	if t.ConnectTimeout == 0 {
		t.ConnectTimeout = DefaultConnectTimeout
	}
	if t.CommandTimeout == 0 {
		t.CommandTimeout = DefaultCommandTimeout
	}

	if sc.IdentityFile != "" {
		t.IdentityFiles = []string{r.expand(sc.IdentityFile)}
		t.ExplicitIdentity = true
	} else {
		t.AgentSocket = r.opts.Getenv("SSH_AUTH_SOCK")
		if r.cfg != nil {
			ids, _ := r.cfg.GetAll(alias, "IdentityFile")
			for _, id := range ids {
				t.IdentityFiles = append(t.IdentityFiles, r.expand(id))
			}
		}
		if len(t.IdentityFiles) == 0 {
			t.IdentityFiles = []string{
				filepath.Join(r.opts.Home, ".ssh", "id_ed25519"),
				filepath.Join(r.opts.Home, ".ssh", "id_rsa"),
			}
		}
	}
	if sc.KnownHosts != "" {
		t.KnownHosts = []string{r.expand(sc.KnownHosts)}
	} else {
		if v := get("UserKnownHostsFile"); v != "" {
			for _, f := range strings.Fields(v) {
				t.KnownHosts = append(t.KnownHosts, r.expand(f))
			}
		}
		if len(t.KnownHosts) == 0 {
			t.KnownHosts = []string{filepath.Join(r.opts.Home, ".ssh", "known_hosts")}
		}
	}
	if sc.Jump == "" && ownJump {
		if pj := get("ProxyJump"); pj != "" && !strings.EqualFold(pj, "none") {
			j, err := r.resolveChain(pj, sc, depth)
			if err != nil {
				return Target{}, fmt.Errorf("ssh config: %s: ProxyJump %s: %w", alias, pj, err)
			}
			t.Jump = j
		}
	}
	return t, nil
}

// expand resolves ~ and makes relative key paths relative to home, as ssh does.
func (r *Resolver) expand(p string) string { return expandHome(r.opts.Home, p) }

// expandHome replaces a leading ~ of p with home.
func expandHome(home, p string) string {
	switch {
	case p == "~":
		return home
	case strings.HasPrefix(p, "~/"):
		return filepath.Join(home, p[2:])
	}
	return p
}

// splitHostPort splits "host", "host:port", "[v6]" or "[v6]:port"; port 0
// means none was given.
