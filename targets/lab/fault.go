package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"golang.org/x/sync/errgroup"
)

// Fault is a training fault a lab host can be put in.
type Fault string

// The faults.
const (
	// FaultKill kills the container (SIGKILL to every process): the host is dead.
	FaultKill Fault = "kill"
	// FaultPause freezes every process of the container (cgroup freezer):
	// a hung host whose TCP connections stay open but nothing answers.
	FaultPause Fault = "pause"
	// FaultPartition disconnects the container from the lab network.
	FaultPartition Fault = "partition"
	// FaultSlowNet slows the host's link: netem delay where the kernel has
	// it, else a tbf rate limit.
	FaultSlowNet Fault = "slow-net"
	// FaultRestart reboots the host (its processes stop, then its init
	// starts sshd and its services again).
	FaultRestart Fault = "restart"
)

// Faults lists the faults.
func Faults() []Fault {
	return []Fault{FaultKill, FaultPause, FaultPartition, FaultSlowNet, FaultRestart}
}

// ParseFault checks a fault name.
func ParseFault(s string) (Fault, error) {
	for _, f := range Faults() {
		if string(f) == s {
			return f, nil
		}
	}
	var names []string
	for _, f := range Faults() {
		names = append(names, string(f))
	}
	return "", fmt.Errorf("unknown fault %q: choose %s", s, strings.Join(names, ", "))
}

// Condition is the host condition the fault leaves (see Host.Condition).
func (f Fault) Condition() string {
	switch f {
	case FaultKill:
		return "killed"
	case FaultPause:
		return "paused"
	case FaultPartition:
		return "offline"
	case FaultSlowNet:
		return "slow-net"
	}
	return "up"
}

// StateError refuses a fault the host's state does not allow.
type StateError struct{ Msg string }

func (e *StateError) Error() string { return e.Msg }

// FaultRecord is one line of the lab's fault log.
type FaultRecord struct {
	Time   time.Time `json:"time"`
	Host   string    `json:"host"`
	Action string    `json:"action"` // a fault, or "heal"
	Actor  string    `json:"actor"`
	Detail string    `json:"detail,omitempty"`
}

func (l *Lab) logFault(r FaultRecord) {
	r.Time = time.Now().UTC()
	b, _ := json.Marshal(r)
	f, err := os.OpenFile(l.FaultLog(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.Write(append(b, '\n'))
}

// hostNow is host as the engine reports it now.
func (l *Lab) hostNow(ctx context.Context, host string) (*Host, error) {
	if err := l.Refresh(ctx); err != nil {
		return nil, err
	}
	return l.Host(host)
}

// Fault puts host into fault f and records it in the fault log with
// actor. It returns what was done, in words.
func (l *Lab) Fault(ctx context.Context, host string, f Fault, actor string) (string, error) {
	h, err := l.hostNow(ctx, host)
	if err != nil {
		return "", err
	}
	cctx, cancel := apiCtx(ctx)
	defer cancel()
	var detail string
	switch f {
	case FaultKill:
		if h.State != "running" && h.State != "paused" {
			return "", &StateError{fmt.Sprintf("%s is %s already: there is nothing to kill", h.Name, h.State)}
		}
		if h.State == "paused" {
			if _, err := l.d.c.ContainerUnpause(cctx, h.ID, client.ContainerUnpauseOptions{}); err != nil {
				return "", fmt.Errorf("kill %s: unpause first: %w", h.Name, err)
			}
		}
		if _, err := l.d.c.ContainerKill(cctx, h.ID, client.ContainerKillOptions{Signal: "SIGKILL"}); err != nil {
			return "", fmt.Errorf("kill %s: %w", h.Name, err)
		}
		l.clearSlow(h.Name)
		detail = "container killed (SIGKILL to every process)"
	case FaultPause:
		if h.State != "running" {
			return "", &StateError{fmt.Sprintf("%s is %s: only a running host can hang", h.Name, h.State)}
		}
		if _, err := l.d.c.ContainerPause(cctx, h.ID, client.ContainerPauseOptions{}); err != nil {
			return "", fmt.Errorf("pause %s: %w", h.Name, err)
		}
		detail = "container paused: every process frozen, TCP connections stay open"
	case FaultPartition:
		if !h.OnNetwork {
			return "", &StateError{fmt.Sprintf("%s is off the network already", h.Name)}
		}
		if _, err := l.d.c.NetworkDisconnect(cctx, l.Network, client.NetworkDisconnectOptions{Container: h.ID, Force: true}); err != nil {
			return "", fmt.Errorf("partition %s: %w", h.Name, err)
		}
		detail = fmt.Sprintf("disconnected from %s: %s no longer answers", l.Network, h.Addr)
	case FaultSlowNet:
		if h.State != "running" {
			return "", &StateError{fmt.Sprintf("%s is %s: slow-net needs a running host", h.Name, h.State)}
		}
		out, code, err := l.Exec(cctx, h.Name, []string{"/bin/sh", "-c", slowNetScript})
		if err != nil {
			return "", fmt.Errorf("slow-net on %s: %w", h.Name, err)
		}
		if code != 0 {
			return "", fmt.Errorf("slow-net on %s: tc failed (exit %d): %s", h.Name, code, strings.TrimSpace(out))
		}
		detail = strings.TrimSpace(out)
		if err := os.MkdirAll(filepath.Join(l.Dir, "slow"), 0o755); err == nil {
			_ = os.WriteFile(filepath.Join(l.Dir, "slow", h.Name), []byte(detail+"\n"), 0o644)
		}
	case FaultRestart:
		if h.State == "paused" {
			if _, err := l.d.c.ContainerUnpause(cctx, h.ID, client.ContainerUnpauseOptions{}); err != nil {
				return "", fmt.Errorf("restart %s: unpause first: %w", h.Name, err)
			}
		}
		grace := 3
		if _, err := l.d.c.ContainerRestart(cctx, h.ID, client.ContainerRestartOptions{Timeout: &grace}); err != nil {
			return "", fmt.Errorf("restart %s: %w", h.Name, err)
		}
		l.clearSlow(h.Name)
		detail = "rebooted: processes stopped (SIGTERM, SIGKILL after 3s), then sshd and the services started again"
	default:
		return "", fmt.Errorf("unknown fault %q", f)
	}
	l.logFault(FaultRecord{Host: h.Name, Action: string(f), Actor: actor, Detail: detail})
	// The fault is done: its outcome does not depend on ctx any more.
	return detail, l.Refresh(cctx)
}

// slowNetScript slows every interface but lo: netem delay where the
// kernel has it, else a token bucket at 128 kbit/s (a slow link: a
// 1500-byte packet then takes ~94 ms, queued up to 300 ms). It runs
// iproute2's tc by its path: busybox's shell prefers its own tc applet,
// which has neither netem nor tbf.
const slowNetScript = `for dev in $(ls /sys/class/net); do
  [ "$dev" = lo ] && continue
  if /usr/sbin/tc qdisc replace dev "$dev" root netem delay 100ms 20ms 2>/dev/null; then
    echo "netem delay 100ms ±20ms on $dev"
  elif /usr/sbin/tc qdisc replace dev "$dev" root tbf rate 128kbit burst 1600 latency 300ms; then
    echo "tbf rate 128kbit burst 1600 latency 300ms on $dev (this kernel has no netem)"
  else
    exit 1
  fi
done`

const healNetScript = `for dev in $(ls /sys/class/net); do
  [ "$dev" = lo ] || /usr/sbin/tc qdisc del dev "$dev" root 2>/dev/null
done; true`

func (l *Lab) clearSlow(host string) { _ = os.Remove(filepath.Join(l.Dir, "slow", host)) }

// slowNets reads which hosts a slow-net fault is on.
func (l *Lab) slowNets() map[string]string {
	out := map[string]string{}
	if l.Dir == "" {
		return out
	}
	entries, _ := os.ReadDir(filepath.Join(l.Dir, "slow"))
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(l.Dir, "slow", e.Name()))
		out[e.Name()] = strings.TrimSpace(string(b))
	}
	return out
}

// Heal undoes every fault of host (unpause, start, reconnect with its
// address, remove the slow-net queue), records it, and waits until the
// host answers SSH again. It returns what was done.
func (l *Lab) Heal(ctx context.Context, host, actor string) (string, error) {
	h, err := l.hostNow(ctx, host)
	if err != nil {
		return "", err
	}
	cctx, cancel := apiCtx(ctx)
	defer cancel()
	var did []string
	switch h.State {
	case "paused":
		if _, err := l.d.c.ContainerUnpause(cctx, h.ID, client.ContainerUnpauseOptions{}); err != nil {
			return "", fmt.Errorf("heal %s: unpause: %w", h.Name, err)
		}
		did = append(did, "unpaused")
	case "running":
	default:
		if _, err := l.d.c.ContainerStart(cctx, h.ID, client.ContainerStartOptions{}); err != nil {
			return "", fmt.Errorf("heal %s: start: %w", h.Name, err)
		}
		l.clearSlow(h.Name)
		h.SlowNet = ""
		did = append(did, "started (it was "+h.State+")")
	}
	if !h.OnNetwork {
		_, err := l.d.c.NetworkConnect(cctx, l.Network, client.NetworkConnectOptions{Container: h.ID,
			EndpointConfig: &network.EndpointSettings{IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: h.Addr}, Aliases: []string{h.Name}}})
		if err != nil {
			return "", fmt.Errorf("heal %s: reconnect to %s: %w", h.Name, l.Network, err)
		}
		did = append(did, "reconnected to "+l.Network+" as "+h.Addr.String())
	}
	if h.SlowNet != "" {
		if _, code, err := l.Exec(cctx, h.Name, []string{"/bin/sh", "-c", healNetScript}); err != nil || code != 0 {
			return "", fmt.Errorf("heal %s: remove the slow-net queue: exit %d %v", h.Name, code, err)
		}
		l.clearSlow(h.Name)
		did = append(did, "slow-net removed")
	}
	if len(did) == 0 {
		return "nothing to heal: " + h.Name + " is up", l.WaitSSH(ctx, 30*time.Second, h.Name)
	}
	detail := strings.Join(did, ", ")
	l.logFault(FaultRecord{Host: h.Name, Action: "heal", Actor: actor, Detail: detail})
	if err := l.WaitSSH(ctx, 30*time.Second, h.Name); err != nil {
		return detail, err
	}
	return detail, l.Refresh(cctx)
}

// Faults reads the lab's fault log.
func (l *Lab) Faults() ([]FaultRecord, error) {
	b, err := os.ReadFile(l.FaultLog())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []FaultRecord
	for _, line := range bytes.Split(b, []byte("\n")) {
		var r FaultRecord
		if len(line) > 0 && json.Unmarshal(line, &r) == nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// Exec runs a command inside a host's container through the engine (not
// over SSH: it works while the host is off the network) and returns its
// combined output and exit code.
func (l *Lab) Exec(ctx context.Context, host string, cmd []string) (string, int, error) {
	h, err := l.Host(host)
	if err != nil {
		return "", 0, err
	}
	ex, err := l.d.c.ExecCreate(ctx, h.ID, client.ExecCreateOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return "", 0, err
	}
	att, err := l.d.c.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		return "", 0, err
	}
	var out bytes.Buffer
	_, err = stdcopy.StdCopy(&out, &out, att.Reader)
	att.Close()
	if err != nil {
		return out.String(), 0, err
	}
	ins, err := l.d.c.ExecInspect(ctx, ex.ID, client.ExecInspectOptions{})
	if err != nil {
		return out.String(), 0, err
	}
	return out.String(), ins.ExitCode, nil
}

// WaitSSH waits until each named host completes an SSH login with the
// lab's key, its host key verified against the lab's known_hosts.
func (l *Lab) WaitSSH(ctx context.Context, timeout time.Duration, hosts ...string) error {
	signer, err := loadSigner(l.KeyFile())
	if err != nil {
		return err
	}
	check, err := knownhosts.New(l.KnownHostsFile())
	if err != nil {
		return fmt.Errorf("the lab's known_hosts: %w", err)
	}
	cfg := &gossh.ClientConfig{User: "root", Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)}, HostKeyCallback: check, Timeout: 3 * time.Second}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	for _, name := range hosts {
		h, err := l.Host(name)
		if err != nil {
			return err
		}
		addr := h.SSHAddr()
		g.Go(func() error {
			var last error
			for {
				err := sshLogin(gctx, addr, cfg)
				if err == nil {
					return nil
				}
				var ke *knownhosts.KeyError
				if errors.As(err, &ke) && len(ke.Want) > 0 {
					return fmt.Errorf("%s (%s): host key does not match the lab's known_hosts: %w", name, addr, err)
				}
				last = err
				select {
				case <-gctx.Done():
					if ctx.Err() == context.DeadlineExceeded || gctx.Err() == context.DeadlineExceeded {
						return fmt.Errorf("%s (%s) does not answer SSH within %s: %v", name, addr, timeout, last)
					}
					return gctx.Err()
				case <-time.After(50 * time.Millisecond): // next attempt; bounded by timeout
				}
			}
		})
	}
	return g.Wait()
}

// sshLogin logs in once and closes the connection.
func sshLogin(ctx context.Context, addr string, cfg *gossh.ClientConfig) error {
	d := net.Dialer{Timeout: 2 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	c, chans, reqs, err := gossh.NewClientConn(nc, addr, cfg)
	if err != nil {
		return err
	}
	gossh.NewClient(c, chans, reqs).Close()
	return nil
}

// Memory returns each running host's memory use in bytes, as `docker
// stats` counts it (the cgroup's usage less its inactive page cache).
func (l *Lab) Memory(ctx context.Context) (map[string]uint64, error) {
	out := map[string]uint64{}
	for _, h := range l.Hosts {
		if h.State != "running" {
			continue
		}
		res, err := l.d.c.ContainerStats(ctx, h.ID, client.ContainerStatsOptions{})
		if err != nil {
			return nil, fmt.Errorf("stats of %s: %w", h.Name, err)
		}
		var st struct {
			MemoryStats struct {
				Usage uint64            `json:"usage"`
				Stats map[string]uint64 `json:"stats"`
			} `json:"memory_stats"`
		}
		err = json.NewDecoder(res.Body).Decode(&st)
		res.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("stats of %s: %w", h.Name, err)
		}
		m := st.MemoryStats
		cache := m.Stats["total_inactive_file"] // cgroup v1
		if v, ok := m.Stats["inactive_file"]; ok && cache == 0 {
			cache = v // cgroup v2
		}
		if cache < m.Usage {
			m.Usage -= cache
		}
		out[h.Name] = m.Usage
	}
	return out, nil
}
