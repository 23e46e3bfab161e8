package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"golang.org/x/sync/errgroup"

	"flightdeck/internal/fsutil"
)

// Labels every lab object carries.
const (
	// LabelLab names the lab an object belongs to (containers, volumes,
	// the network). Down removes exactly the objects with this label.
	LabelLab = "flightdeck.lab"
	// LabelHost is a container's (or volume's) host name in the lab.
	LabelHost = "flightdeck.lab.host"
	// LabelAddr is a container's address on the lab network, kept so that
	// a partitioned host gets the same address back.
	LabelAddr = "flightdeck.lab.addr"
	// LabelDir is the lab's directory (keys, known_hosts, plan snippet).
	LabelDir = "flightdeck.lab.dir"
)

// Defaults.
const (
	DefaultName  = "lab"
	DefaultHosts = 8
	MaxHosts     = 64
	// DefaultMemory is each container's memory limit.
	DefaultMemory = 256 << 20
	// apiTimeout bounds one engine call that is not cancelled by Ctrl-C.
	apiTimeout = 60 * time.Second
	// ReadyTimeout bounds how long Up waits for every host to answer SSH.
	ReadyTimeout = 60 * time.Second
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,29}$`)

// ValidateName checks a lab name: 1 to 30 lowercase letters, digits and
// dashes, starting with a letter or digit.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("lab name %q: use 1 to 30 lowercase letters, digits and dashes, starting with a letter or digit", name)
	}
	return nil
}

// DefaultRoot is the directory under which labs keep their files:
// $FLIGHTDECK_LABS, else $XDG_STATE_HOME/flightdeck/labs, else
// ~/.local/state/flightdeck/labs.
func DefaultRoot() (string, error) {
	if d := os.Getenv("FLIGHTDECK_LABS"); d != "" {
		return filepath.Abs(d)
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "flightdeck", "labs"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the labs directory: %w", err)
	}
	return filepath.Join(home, ".local", "state", "flightdeck", "labs"), nil
}

// Lab is a fleet of containers on a network of their own.
type Lab struct {
	Name string
	// Dir holds the lab's SSH key, known_hosts, plan snippet, a copy of the
	// flightdeck binary the hosts run, and the fault log.
	Dir       string
	Network   string
	NetworkID string
	Subnet    netip.Prefix
	Image     string
	Hosts     []Host

	d *Docker
}

// Host is one container of a lab.
type Host struct {
	// Name is the host's name in the lab and its hostname (web-1 …).
	Name      string
	Container string
	ID        string
	Addr      netip.Addr
	// State is the container's state: running, paused, exited, created,
	// restarting, dead (from the engine).
	State string
	// OnNetwork is false while the host is partitioned off the lab network.
	OnNetwork bool
	// SlowNet is the queueing discipline a slow-net fault put on the
	// host's link ("" when none).
	SlowNet string
	// ExitCode is the container's exit code when it is not running.
	ExitCode int
}

// Condition is a short word for the host's state as an operator sees it:
// up, paused, killed/exited, offline (partitioned), slow.
func (h Host) Condition() string {
	switch {
	case h.State == "paused":
		return "paused"
	case h.State == "exited" && h.ExitCode == 137:
		return "killed"
	case h.State != "running":
		return h.State
	case !h.OnNetwork:
		return "offline"
	case h.SlowNet != "":
		return "slow-net"
	}
	return "up"
}

// Addr:port helpers.

// SSHAddr is the host's SSH address.
func (h Host) SSHAddr() string { return net.JoinHostPort(h.Addr.String(), "22") }

// Backend is the host's service address on port.
func (h Host) Backend(port int) string { return net.JoinHostPort(h.Addr.String(), strconv.Itoa(port)) }

// Files of a lab directory.

// KeyFile is the lab's SSH private key (0600).
func (l *Lab) KeyFile() string { return filepath.Join(l.Dir, "id_ed25519") }

// KnownHostsFile lists every host's key at its address.
func (l *Lab) KnownHostsFile() string { return filepath.Join(l.Dir, "known_hosts") }

// SnippetFile is the plan snippet `lab up` writes.
func (l *Lab) SnippetFile() string { return filepath.Join(l.Dir, "plan.yaml") }

// FaultLog is the lab's fault log (JSON lines).
func (l *Lab) FaultLog() string { return filepath.Join(l.Dir, "faults.log") }

func (l *Lab) binaryCopy() string { return filepath.Join(l.Dir, "bin", "flightdeck") }
func (l *Lab) metaFile() string   { return filepath.Join(l.Dir, "lab.json") }

// Clone returns a copy of the lab handle (its own host list), for a
// goroutine that refreshes states while another acts on the lab.
func (l *Lab) Clone() *Lab {
	c := *l
	c.Hosts = slices.Clone(l.Hosts)
	return &c
}

// Host returns the named host.
func (l *Lab) Host(name string) (*Host, error) {
	for i := range l.Hosts {
		if l.Hosts[i].Name == name {
			return &l.Hosts[i], nil
		}
	}
	return nil, &UnknownHostError{Lab: l.Name, Host: name, Hosts: l.HostNames()}
}

// HostNames lists the lab's hosts.
func (l *Lab) HostNames() []string {
	var out []string
	for _, h := range l.Hosts {
		out = append(out, h.Name)
	}
	return out
}

// UnknownHostError names a host the lab does not have.
type UnknownHostError struct {
	Lab, Host string
	Hosts     []string
}

func (e *UnknownHostError) Error() string {
	return fmt.Sprintf("lab %s has no host %q; its hosts: %s", e.Lab, e.Host, strings.Join(e.Hosts, ", "))
}

// InUseError refuses to create a lab whose name is taken.
type InUseError struct {
	Name    string
	Objects int
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("lab %s already exists (%d objects carry the label %s=%s): `flightdeck lab status --name %s` shows it, `flightdeck lab down --name %s` removes it; or choose another --name",
		e.Name, e.Objects, LabelLab, e.Name, e.Name, e.Name)
}

// NotFoundError says that no lab of that name exists.
type NotFoundError struct {
	Name   string
	Others []string
}

func (e *NotFoundError) Error() string {
	msg := fmt.Sprintf("no lab named %s (no container or network carries %s=%s)", e.Name, LabelLab, e.Name)
	if len(e.Others) > 0 {
		msg += "; labs: " + strings.Join(e.Others, ", ")
	} else {
		msg += "; start one with `flightdeck lab up`"
	}
	return msg
}

func labFilter(name string) client.Filters {
	return make(client.Filters).Add("label", LabelLab+"="+name)
}

// apiCtx is a context for one engine call that finishes even when the
// operator interrupts: Up and Down check for interruption between calls,
// never in the middle of one, so nothing is left half-created.
func apiCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), apiTimeout)
}

// Objects counts the containers, volumes and networks labelled for a lab.
func (d *Docker) Objects(ctx context.Context, name string) (int, error) {
	cs, err := d.c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: labFilter(name)})
	if err != nil {
		return 0, fmt.Errorf("list containers: %w", err)
	}
	ns, err := d.c.NetworkList(ctx, client.NetworkListOptions{Filters: labFilter(name)})
	if err != nil {
		return 0, fmt.Errorf("list networks: %w", err)
	}
	vs, err := d.c.VolumeList(ctx, client.VolumeListOptions{Filters: labFilter(name)})
	if err != nil {
		return 0, fmt.Errorf("list volumes: %w", err)
	}
	return len(cs.Items) + len(ns.Items) + len(vs.Items), nil
}

// Names lists the labs that exist (by the label of their objects).
func (d *Docker) Names(ctx context.Context) ([]string, error) {
	f := make(client.Filters).Add("label", LabelLab)
	seen := map[string]bool{}
	cs, err := d.c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	for _, c := range cs.Items {
		seen[c.Labels[LabelLab]] = true
	}
	ns, err := d.c.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	for _, n := range ns.Items {
		seen[n.Labels[LabelLab]] = true
	}
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// Options configure a new lab.
type Options struct {
	Name  string
	Hosts int
	// Root is the directory of lab directories (default DefaultRoot).
	Root string
	// Binary is the flightdeck binary the hosts run (default: this
	// executable). The lab keeps a copy of it.
	Binary string
	// Sources override where the image's files come from.
	Sources Sources
	// Memory limits each container (default DefaultMemory).
	Memory int64
	// Log receives progress lines.
	Log io.Writer
}

// UpReport says what Up did and how long it took.
type UpReport struct {
	Image ImageResult
	// Created is the time from the image being ready to every container
	// started; Ready the time to every host answering SSH, from the start.
	Created, Ready time.Duration
}

// Up creates a lab: its directory and keys, a network of its own, and one
// container per host running sshd and the host's init, and returns once
// every host answers SSH (its host key verified). When ctx is cancelled
// (Ctrl-C) or anything fails, every object created so far is removed
// before Up returns: nothing is left half-created.
func Up(ctx context.Context, d *Docker, opts Options) (_ *Lab, rep UpReport, err error) {
	start := time.Now()
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if err := ValidateName(opts.Name); err != nil {
		return nil, rep, err
	}
	if opts.Hosts == 0 {
		opts.Hosts = DefaultHosts
	}
	if opts.Hosts < 1 || opts.Hosts > MaxHosts {
		return nil, rep, fmt.Errorf("--hosts %d: choose 1 to %d", opts.Hosts, MaxHosts)
	}
	if opts.Memory == 0 {
		opts.Memory = DefaultMemory
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.Binary == "" {
		if opts.Binary, err = os.Executable(); err != nil {
			return nil, rep, fmt.Errorf("find the flightdeck binary: %w", err)
		}
	}
	if opts.Root == "" {
		if opts.Root, err = DefaultRoot(); err != nil {
			return nil, rep, err
		}
	}
	n, err := d.Objects(ctx, opts.Name)
	if err != nil {
		return nil, rep, err
	}
	if n > 0 {
		return nil, rep, &InUseError{Name: opts.Name, Objects: n}
	}
	src := opts.Sources
	src.Binary = opts.Binary
	fmt.Fprintf(opts.Log, "lab %s: image…\n", opts.Name)
	if rep.Image, err = d.EnsureImage(ctx, src); err != nil {
		return nil, rep, err
	}
	if rep.Image.Built {
		fmt.Fprintf(opts.Log, "lab %s: built image %s (%.1f MB) in %s\n", opts.Name, rep.Image.Ref, float64(rep.Image.Size)/1e6, rep.Image.Took.Round(time.Millisecond))
	}
	if err := ctx.Err(); err != nil {
		return nil, rep, err
	}
	l := &Lab{Name: opts.Name, Dir: filepath.Join(opts.Root, opts.Name), Network: "fdlab-" + opts.Name, Image: rep.Image.Ref, d: d}
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*apiTimeout)
			defer cancel()
			if derr := Down(cctx, d, l.Name, opts.Root); derr != nil {
				err = fmt.Errorf("%w (and removing what was created failed: %v)", err, derr)
			}
		}
	}()
	created := time.Now()
	if err := l.prepareDir(opts.Binary); err != nil {
		return nil, rep, err
	}
	userKey, err := newKeyPair("flightdeck-lab-" + l.Name)
	if err != nil {
		return nil, rep, err
	}
	if err := os.WriteFile(l.KeyFile(), userKey.private, 0o600); err != nil {
		return nil, rep, err
	}
	if err := os.WriteFile(l.KeyFile()+".pub", userKey.authorizedLine("flightdeck-lab-"+l.Name), 0o644); err != nil {
		return nil, rep, err
	}
	if err := ctx.Err(); err != nil {
		return nil, rep, err
	}
	if err := l.createNetwork(ctx, opts.Hosts); err != nil {
		return nil, rep, err
	}
	fmt.Fprintf(opts.Log, "lab %s: network %s %s; starting %d hosts…\n", l.Name, l.Network, l.Subnet, opts.Hosts)
	l.Hosts = make([]Host, opts.Hosts)
	hostKeys := make([]keyPair, opts.Hosts)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range opts.Hosts {
		g.Go(func() error {
			t0 := time.Now()
			kp, err := l.startHost(gctx, i, userKey, opts.Memory)
			hostKeys[i] = kp
			if err == nil {
				fmt.Fprintf(opts.Log, "lab %s: %s started (%s) in %s\n", l.Name, l.Hosts[i].Name, l.Hosts[i].Addr, time.Since(t0).Round(time.Millisecond))
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, rep, err
	}
	if err := ctx.Err(); err != nil {
		return nil, rep, err
	}
	var known bytes.Buffer
	for i, h := range l.Hosts {
		fmt.Fprintf(&known, "%s %s", h.Addr, gosshAuthorized(hostKeys[i]))
	}
	if err := os.WriteFile(l.KnownHostsFile(), known.Bytes(), 0o600); err != nil {
		return nil, rep, err
	}
	if err := os.WriteFile(l.SnippetFile(), []byte(l.Snippet()), 0o644); err != nil {
		return nil, rep, err
	}
	if err := l.writeMeta(); err != nil {
		return nil, rep, err
	}
	rep.Created = time.Since(created)
	if err := l.WaitSSH(ctx, ReadyTimeout, l.HostNames()...); err != nil {
		return nil, rep, err
	}
	rep.Ready = time.Since(start)
	return l, rep, nil
}

func gosshAuthorized(k keyPair) []byte { return k.authorizedLine("") }

// prepareDir creates the lab directory (a stale one of a lab whose
// objects are gone is replaced) with a copy of the flightdeck binary.
func (l *Lab) prepareDir(binary string) error {
	if err := removeLabDir(l.Dir); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(l.Dir, "bin"), 0o700); err != nil {
		return fmt.Errorf("create the lab directory: %w", err)
	}
	// A copy, not the original: a rebuilt or deleted binary must not
	// change what a running lab's hosts run (a hard link when possible).
	if err := os.Link(binary, l.binaryCopy()); err != nil {
		if err := fsutil.CopyFile(binary, l.binaryCopy(), 0o755); err != nil {
			return fmt.Errorf("copy the flightdeck binary into the lab: %w", err)
		}
	}
	return nil
}

// meta is what lab.json records.
type meta struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Image   string    `json:"image"`
	Network string    `json:"network"`
	Subnet  string    `json:"subnet"`
	Hosts   []string  `json:"hosts"`
}

func (l *Lab) writeMeta() error {
	b, _ := json.MarshalIndent(meta{Name: l.Name, Created: time.Now().UTC(), Image: l.Image, Network: l.Network,
		Subnet: l.Subnet.String(), Hosts: l.HostNames()}, "", "  ")
	return os.WriteFile(l.metaFile(), append(b, '\n'), 0o644)
}

// removeLabDir removes a lab directory, but only one that looks like a lab
// directory (it has lab.json or the lab's key), never anything else.
func removeLabDir(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	ours := false
	for _, f := range []string{"lab.json", "id_ed25519", "bin"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			ours = true
		}
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) == 0 {
		ours = true
	}
	if !ours {
		return fmt.Errorf("%s exists and is not a lab directory: not removing it", dir)
	}
	return os.RemoveAll(dir)
}

// candidateSubnets are the /24 networks a lab may take, in order.
func candidateSubnets() []netip.Prefix {
	var out []netip.Prefix
	for i := range 256 {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 30, byte(i), 0}), 24))
	}
	return out
}

// usedPrefixes are the networks of the engine and of this machine's
// interfaces, which a lab network must not overlap.
func (d *Docker) usedPrefixes(ctx context.Context) []netip.Prefix {
	var used []netip.Prefix
	if ns, err := d.c.NetworkList(ctx, client.NetworkListOptions{}); err == nil {
		for _, n := range ns.Items {
			for _, c := range n.IPAM.Config {
				if c.Subnet.IsValid() {
					used = append(used, c.Subnet)
				}
			}
		}
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				used = append(used, p.Masked())
			}
		}
	}
	return used
}

// createNetwork creates the lab's bridge network on the first free /24
// (an explicit subnet, so that a host keeps its address when it is
// reconnected after a partition).
func (l *Lab) createNetwork(ctx context.Context, hosts int) error {
	cctx, cancel := apiCtx(ctx)
	defer cancel()
	used := l.d.usedPrefixes(cctx)
	var lastErr error
	for _, p := range candidateSubnets() {
		if slices.ContainsFunc(used, p.Overlaps) {
			continue
		}
		gw := p.Addr().Next()
		res, err := l.d.c.NetworkCreate(cctx, l.Network, client.NetworkCreateOptions{
			Driver: "bridge",
			IPAM:   &network.IPAM{Config: []network.IPAMConfig{{Subnet: p, Gateway: gw}}},
			Labels: map[string]string{LabelLab: l.Name, LabelDir: l.Dir},
		})
		if err != nil {
			lastErr = err
			if strings.Contains(err.Error(), "overlap") {
				continue
			}
			return fmt.Errorf("create the lab network %s: %w", l.Network, err)
		}
		l.NetworkID, l.Subnet = res.ID, p
		return nil
	}
	return fmt.Errorf("create the lab network %s: no free /24 in 172.30.0.0/16: %v", l.Network, lastErr)
}

// hostAddr is host i's address: .2, .3 … (.1 is the gateway, this machine).
func (l *Lab) hostAddr(i int) netip.Addr {
	a := l.Subnet.Addr().Next()
	for range i + 1 {
		a = a.Next()
	}
	return a
}

func (l *Lab) containerName(host string) string { return "fdlab-" + l.Name + "-" + host }

// sshdConfigText is each host's sshd configuration: public keys only,
// root may log in with a key, no forwarding of any kind.
const sshdConfigText = `# Written by flightdeck lab.
Port 22
HostKey ` + hostKeyPath + `
PidFile /run/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowAgentForwarding no
AllowTcpForwarding no
X11Forwarding no
PermitTunnel no
MaxStartups 100
MaxSessions 100
ClientAliveInterval 15
Subsystem sftp internal-sftp
LogLevel ERROR
`

// startHost creates host i's volume and container, copies its host key,
// sshd configuration and authorized key into it, and starts it. It
// returns the host key.
func (l *Lab) startHost(ctx context.Context, i int, user keyPair, memory int64) (keyPair, error) {
	name := fmt.Sprintf("web-%d", i+1)
	h := Host{Name: name, Container: l.containerName(name), Addr: l.hostAddr(i)}
	labels := map[string]string{LabelLab: l.Name, LabelHost: name, LabelAddr: h.Addr.String(), LabelDir: l.Dir}
	hk, err := newKeyPair("root@" + name)
	if err != nil {
		return hk, err
	}
	step := func(what string, fn func(context.Context) error) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		cctx, cancel := apiCtx(ctx)
		defer cancel()
		if err := fn(cctx); err != nil {
			return fmt.Errorf("%s: %s: %w", name, what, err)
		}
		return nil
	}
	keys := filepath.Join(l.Dir, "hosts", name)
	if err := writeHostFiles(keys, hk, user); err != nil {
		return hk, fmt.Errorf("%s: %w", name, err)
	}
	vol := h.Container
	if err := step("create volume", func(c context.Context) error {
		_, err := l.d.c.VolumeCreate(c, client.VolumeCreateOptions{Name: vol, Labels: labels})
		return err
	}); err != nil {
		return hk, err
	}
	init := true
	if err := step("create container", func(c context.Context) error {
		res, err := l.d.c.ContainerCreate(c, client.ContainerCreateOptions{
			Name: h.Container,
			Config: &container.Config{
				Image: l.Image, Hostname: name, Labels: labels,
				Cmd: []string{BinaryPath, "lab-init"},
				Env: []string{"FLIGHTDECK_LAB_HOST=" + name, "FLIGHTDECK_LAB=" + l.Name},
			},
			HostConfig: &container.HostConfig{
				Init:   &init,
				CapAdd: []string{"NET_ADMIN"}, // tc, for slow-net
				Mounts: []mount.Mount{
					{Type: mount.TypeBind, Source: l.binaryCopy(), Target: BinaryPath, ReadOnly: true},
					{Type: mount.TypeBind, Source: keys, Target: KeysMount, ReadOnly: true},
					{Type: mount.TypeVolume, Source: vol, Target: "/srv"},
				},
				Resources: container.Resources{Memory: memory},
			},
			NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
				l.Network: {IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: h.Addr}, Aliases: []string{name}},
			}},
		})
		h.ID = res.ID
		return err
	}); err != nil {
		return hk, err
	}
	if err := step("start", func(c context.Context) error {
		_, err := l.d.c.ContainerStart(c, h.ID, client.ContainerStartOptions{})
		return err
	}); err != nil {
		return hk, err
	}
	h.State, h.OnNetwork = "running", true
	l.Hosts[i] = h
	return hk, nil
}

// writeHostFiles writes what a host's init installs at every boot (the
// directory is mounted read-only at KeysMount): its host key, sshd's
// configuration and the lab key authorized for root. They stay in the
// lab's directory (0700) until the lab is removed. Mounting them instead
// of copying them into the container before it starts saves the engine a
// mount and unmount of the container's file system per host.
func writeHostFiles(dir string, hostKey, user keyPair) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		mode os.FileMode
		data []byte
	}{
		{HostKeyFile, 0o600, hostKey.private},
		{HostKeyFile + ".pub", 0o644, hostKey.authorizedLine("")},
		{SSHDConfigFile, 0o644, []byte(sshdConfigText)},
		{AuthorizedKeysFile, 0o644, user.authorizedLine("flightdeck-lab")},
	} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// Open finds a lab that exists (after a restart of flightdeck too): its
// containers and network by their label, its directory from the network's
// label (else under root).
func Open(ctx context.Context, d *Docker, name, root string) (*Lab, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	l := &Lab{Name: name, Network: "fdlab-" + name, d: d}
	ns, err := d.c.NetworkList(ctx, client.NetworkListOptions{Filters: labFilter(name)})
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	for _, n := range ns.Items {
		l.Network, l.NetworkID, l.Dir = n.Name, n.ID, n.Labels[LabelDir]
		for _, c := range n.IPAM.Config {
			l.Subnet = c.Subnet
		}
	}
	if err := l.Refresh(ctx); err != nil {
		return nil, err
	}
	if l.NetworkID == "" && len(l.Hosts) == 0 {
		others, _ := d.Names(ctx)
		return nil, &NotFoundError{Name: name, Others: others}
	}
	if l.Dir == "" {
		if root == "" {
			if root, err = DefaultRoot(); err != nil {
				return nil, err
			}
		}
		l.Dir = filepath.Join(root, name)
	}
	return l, nil
}

// Refresh reads every host's state from the engine.
func (l *Lab) Refresh(ctx context.Context) error {
	cs, err := l.d.c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: labFilter(l.Name)})
	if err != nil {
		return fmt.Errorf("list the lab's containers: %w", err)
	}
	slow := l.slowNets()
	var hosts []Host
	for _, c := range cs.Items {
		h := Host{Name: c.Labels[LabelHost], ID: c.ID, State: string(c.State)}
		if len(c.Names) > 0 {
			h.Container = strings.TrimPrefix(c.Names[0], "/")
		}
		h.Addr, _ = netip.ParseAddr(c.Labels[LabelAddr])
		if c.NetworkSettings != nil {
			_, h.OnNetwork = c.NetworkSettings.Networks[l.Network]
		}
		if h.State != "running" && h.State != "paused" {
			h.ExitCode = exitCodeOf(c.Status)
		}
		if h.State == "running" || h.State == "paused" {
			h.SlowNet = slow[h.Name]
		}
		if l.Dir == "" {
			l.Dir = c.Labels[LabelDir]
		}
		if l.Image == "" {
			l.Image = c.Image
		}
		hosts = append(hosts, h)
	}
	slices.SortFunc(hosts, func(a, b Host) int { return hostOrder(a.Name, b.Name) })
	l.Hosts = hosts
	return nil
}

// exitCodeOf reads the exit code from a container status like
// "Exited (137) 3 seconds ago".
func exitCodeOf(status string) int {
	i := strings.Index(status, "(")
	j := strings.Index(status, ")")
	if i < 0 || j < i {
		return 0
	}
	n, _ := strconv.Atoi(status[i+1 : j])
	return n
}

// hostOrder sorts web-2 before web-10.
func hostOrder(a, b string) int {
	na, ea := strconv.Atoi(a[strings.LastIndex(a, "-")+1:])
	nb, eb := strconv.Atoi(b[strings.LastIndex(b, "-")+1:])
	if ea == nil && eb == nil && na != nb {
		return na - nb
	}
	return strings.Compare(a, b)
}

// Down removes every object carrying the lab's label (containers first,
// then volumes and the network) and the lab's directory. Objects without
// the label are never touched. It is idempotent.
func Down(ctx context.Context, d *Docker, name, root string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	dir := ""
	var errs []error
	cs, err := d.c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: labFilter(name)})
	if err != nil {
		return fmt.Errorf("list the lab's containers: %w", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, c := range cs.Items {
		if dir == "" {
			dir = c.Labels[LabelDir]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := d.c.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
			if err != nil && !isNotFound(err) {
				mu.Lock()
				errs = append(errs, fmt.Errorf("remove container %s: %w", strings.Join(c.Names, ","), err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	vs, err := d.c.VolumeList(ctx, client.VolumeListOptions{Filters: labFilter(name)})
	if err != nil {
		errs = append(errs, fmt.Errorf("list the lab's volumes: %w", err))
	} else {
		for _, v := range vs.Items {
			if _, err := d.c.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{Force: true}); err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("remove volume %s: %w", v.Name, err))
			}
		}
	}
	ns, err := d.c.NetworkList(ctx, client.NetworkListOptions{Filters: labFilter(name)})
	if err != nil {
		errs = append(errs, fmt.Errorf("list the lab's networks: %w", err))
	} else {
		for _, n := range ns.Items {
			if dir == "" {
				dir = n.Labels[LabelDir]
			}
			if _, err := d.c.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("remove network %s: %w", n.Name, err))
			}
		}
	}
	if dir == "" {
		if root == "" {
			root, _ = DefaultRoot()
		}
		if root != "" {
			dir = filepath.Join(root, name)
		}
	}
	if dir != "" && filepath.Base(dir) == name {
		if err := removeLabDir(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Down removes the lab (see Down).
func (l *Lab) Down(ctx context.Context) error { return Down(ctx, l.d, l.Name, filepath.Dir(l.Dir)) }

// Snippet is the plan environment that releases to the lab's hosts over
// SSH with the lab's key and known_hosts.
func (l *Lab) Snippet() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# flightdeck lab %s: %d hosts on %s (%s), reached over SSH with host keys verified.\n", l.Name, len(l.Hosts), l.Network, l.Subnet)
	fmt.Fprintf(&b, "# Put this environment into your plan (beside app: and source:) and deploy to it:\n")
	fmt.Fprintf(&b, "#   flightdeck deploy --env %s\n", l.Name)
	fmt.Fprintf(&b, "# Each host serves the release current points to on :%d (the demo service, started after the\n", ServicePort)
	fmt.Fprintf(&b, "# first deploy); a plan with health: {url: \"http://{backend}/healthz\"} has each deploy wait for it.\n")
	fmt.Fprintf(&b, "environments:\n  %s:\n    deploy_to: %s\n", l.Name, DeployTo)
	fmt.Fprintf(&b, "    ssh:\n      identity_file: %s\n      known_hosts: %s\n      connect_timeout: 5s\n      command_timeout: 30s\n",
		yamlQuote(l.KeyFile()), yamlQuote(l.KnownHostsFile()))
	fmt.Fprintf(&b, "    hosts:\n")
	for _, h := range l.Hosts {
		fmt.Fprintf(&b, "      - {name: %s, ssh: root@%s, backend: '%s'}\n", h.Name, h.Addr, h.Backend(ServicePort))
	}
	return b.String()
}

// yamlQuote single-quotes s for YAML when it needs it.
func yamlQuote(s string) string {
	if regexp.MustCompile(`^[A-Za-z0-9_./-]+$`).MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
