package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"flightdeck/engine"
	"flightdeck/engine/plan"
	"flightdeck/targets/lab"
	"flightdeck/targets/ssh"
)

// SSH timeouts of the demo plan on a lab. They bound what a partitioned
// or hung host can cost: a dial gives up after LabConnectTimeout, any
// other operation after LabCommandTimeout without an answer.
const (
	LabConnectTimeout = 5 * time.Second
	LabCommandTimeout = 10 * time.Second
)

// LabActor is who the demo's faults on a lab are journaled as.
var LabActor = engine.Actor{Name: "lab", Role: engine.RoleOperator, Via: "demo"}

// checkScenario refuses a scenario the fleet cannot play.
func checkScenario(opts Options) error {
	sc := opts.Scenario
	if sc.LabOnly && opts.Lab == nil {
		return fmt.Errorf("scenario %s needs real hosts: run it with --lab", sc.Name)
	}
	if sc.FaultHost != "" {
		var names []string
		for i := range opts.Hosts {
			names = append(names, fmt.Sprintf("web-%d", i+1))
		}
		if !slices.Contains(names, sc.FaultHost) {
			return fmt.Errorf("scenario %s hits %s: it needs more hosts than %d", sc.Name, sc.FaultHost, opts.Hosts)
		}
	}
	return nil
}

// onLab is what a fleet on a lab needs besides the local fleet's parts.
type onLab struct {
	lab      *lab.Lab
	keep     bool
	deployTo string
	pool     *ssh.Pool

	mu         sync.Mutex
	faulted    []string
	conditions map[string]string
	stopWatch  func()
}

func newOnLab(l *lab.Lab, keep bool) *onLab {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	o := &onLab{lab: l, keep: keep, deployTo: "/srv/demo/" + hex.EncodeToString(b), conditions: map[string]string{}}
	for _, h := range l.Hosts {
		o.conditions[h.Name] = h.Condition()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go o.watch(ctx, l.Clone(), done)
	o.stopWatch = func() { cancel(); <-done }
	return o
}

// watch keeps the hosts' container states for the cockpit, once a second.
func (o *onLab) watch(ctx context.Context, l *lab.Lab, done chan struct{}) {
	defer close(done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := l.Refresh(rctx)
		cancel()
		if err != nil {
			continue
		}
		o.mu.Lock()
		for _, h := range l.Hosts {
			o.conditions[h.Name] = h.Condition()
		}
		o.mu.Unlock()
	}
}

// writeSSH writes the environment's ssh settings: the lab's key and
// known_hosts (host keys verified), and short timeouts.
func (o *onLab) writeSSH(b *strings.Builder, q func(string) string) {
	fmt.Fprintf(b, "    ssh:\n      identity_file: %s\n      known_hosts: %s\n      connect_timeout: %s\n      command_timeout: %s\n",
		q(o.lab.KeyFile()), q(o.lab.KnownHostsFile()), LabConnectTimeout, LabCommandTimeout)
}

// writeHost writes lab host i: root over SSH, the fleet's deploy_to, and
// the service's port (or the two slots' ports) at the host's address.
func (o *onLab) writeHost(b *strings.Builder, i int, slots bool) {
	h := o.lab.Hosts[i]
	fmt.Fprintf(b, "      - name: %s\n        ssh: root@%s\n        deploy_to: %s\n", h.Name, h.Addr, o.deployTo)
	if slots {
		fmt.Fprintf(b, "        slots: {blue: '%s', green: '%s'}\n", h.Backend(lab.ServicePort+1), h.Backend(lab.ServicePort+2))
	} else {
		fmt.Fprintf(b, "        backend: '%s'\n", h.Backend(lab.ServicePort))
	}
}

// hosts builds the engine's hosts: one SSH connection per lab host.
func (o *onLab) hosts(env *plan.Environment) ([]engine.Host, error) {
	r, err := ssh.NewResolver(ssh.ResolveOptions{ConfigFile: "none"})
	if err != nil {
		return nil, err
	}
	o.pool = ssh.NewPool(ssh.PoolOptions{}.WithSettings(env.SSH))
	var hs []engine.Host
	for _, h := range env.Hosts {
		t, err := r.Resolve(h, env)
		if err != nil {
			return nil, fmt.Errorf("demo plan: %w", err)
		}
		hs = append(hs, o.pool.Host(h.Name, t))
	}
	return hs, nil
}

// serveCurrent starts host's service on port reading through current
// (symlink strategy), over SSH like a restart hook.
func (o *onLab) serveCurrent(ctx context.Context, h engine.Host, port string) error {
	return h.Exec(ctx, engine.ExecRequest{
		Command: lab.BinaryPath + " demo-ctl --follow --sock " + lab.CtlSock,
		Env:     map[string]string{"HOST": h.Name(), "PORT": port, "RELEASE_PATH": path.Join(o.deployTo, engine.CurrentLink)},
		Dir:     o.deployTo, Timeout: time.Minute, Output: io.Discard,
	})
}

// fault puts host into a real fault, records it in the lab's fault log
// and journals it in the run.
func (o *onLab) fault(ctx context.Context, f *Fleet, host, fault string) {
	detail, err := o.lab.Fault(ctx, host, lab.Fault(fault), LabActor.Name)
	msg := fmt.Sprintf("lab: %s %s: %s", fault, host, detail)
	if err != nil {
		msg = fmt.Sprintf("lab: could not %s %s: %v", fault, host, err)
	} else {
		o.mu.Lock()
		o.faulted = append(o.faulted, host)
		o.conditions[host] = lab.Fault(fault).Condition()
		o.mu.Unlock()
	}
	f.note(ctx, LabActor, msg)
}

// close closes the SSH connections and, when the lab is kept, heals the
// faults the fleet caused and stops its services (through the engine, not
// SSH, so that it works whatever state the host is in). Its releases stay
// under deploy_to (/srv/demo/<id>) until the lab is removed.
func (o *onLab) close() error {
	o.stopWatch()
	if o.pool != nil {
		_ = o.pool.Close()
	}
	if !o.keep {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var errs []error
	o.mu.Lock()
	faulted := slices.Clone(o.faulted)
	o.mu.Unlock()
	slices.Sort(faulted)
	for _, h := range slices.Compact(faulted) {
		if _, err := o.lab.Heal(ctx, h, LabActor.Name); err != nil {
			errs = append(errs, err)
		}
	}
	for _, h := range o.lab.Hosts {
		if out, code, err := o.lab.Exec(ctx, h.Name, []string{lab.BinaryPath, "demo-ctl", "--stop-all", "--sock", lab.CtlSock}); err != nil || code != 0 {
			errs = append(errs, fmt.Errorf("reset %s: exit %d %v: %s", h.Name, code, err, strings.TrimSpace(out)))
		}
	}
	return errors.Join(errs...)
}

// HostConditions returns each lab host's container state in a word (up,
// paused, killed, offline, slow-net …), refreshed every second; nil when
// the fleet is not on a lab. It never blocks on the engine.
func (f *Fleet) HostConditions() map[string]string {
	if f.onLab == nil {
		return nil
	}
	f.onLab.mu.Lock()
	defer f.onLab.mu.Unlock()
	out := make(map[string]string, len(f.onLab.conditions))
	for k, v := range f.onLab.conditions {
		out[k] = v
	}
	return out
}

// Lab is the lab the fleet runs on (nil for local hosts).
func (f *Fleet) Lab() *lab.Lab {
	if f.onLab == nil {
		return nil
	}
	return f.onLab.lab
}
