package demo

import (
	"context"
	"fmt"
	"sync"
	"time"

	"flightdeck/engine"
)

// faultHost is the scenario's fault host: the real host (local or over
// SSH), whose first switch or command of the scenario's release is
// preceded by the fault (its services killed, or on a lab the container
// killed, paused or cut off the network). The operation then goes to the
// real host and fails, or hangs until its timeout, for real. Firing on the
// host's own turn makes the fault land mid-wave whatever the strategy's
// timing: the hosts switched before it must be reverted.
type faultHost struct {
	engine.Host
	fire func(ctx context.Context)

	mu    sync.Mutex
	armed bool
}

func (h *faultHost) arm()    { h.mu.Lock(); h.armed = true; h.mu.Unlock() }
func (h *faultHost) disarm() { h.mu.Lock(); h.armed = false; h.mu.Unlock() }

// trigger fires the fault once per arming, before the operation.
func (h *faultHost) trigger(ctx context.Context) {
	h.mu.Lock()
	fire := h.armed
	h.armed = false
	h.mu.Unlock()
	if fire {
		h.fire(ctx)
	}
}

// Switch fires the fault, then switches the real host.
func (h *faultHost) Switch(ctx context.Context, info engine.SwitchInfo) error {
	h.trigger(ctx)
	return h.Host.Switch(ctx, info)
}

// Exec fires the fault, then runs the command on the real host (a
// blue/green slot's restart comes before any switch).
func (h *faultHost) Exec(ctx context.Context, req engine.ExecRequest) error {
	h.trigger(ctx)
	return h.Host.Exec(ctx, req)
}

// wrapFaultHost puts the scenario's fault in front of its host.
func (f *Fleet) wrapFaultHost() {
	sc := f.opts.Scenario
	if sc.FaultHost == "" {
		return
	}
	for i, h := range f.Hosts {
		if h.Name() != sc.FaultHost {
			continue
		}
		fh := &faultHost{Host: h}
		fh.fire = func(ctx context.Context) {
			if f.onLab != nil {
				f.onLab.fault(ctx, f, sc.FaultHost, sc.Fault)
				return
			}
			f.sup.KillHost(sc.FaultHost)
			f.note(ctx, engine.Actor{Name: "demo", Role: engine.RoleOperator, Via: "demo"},
				fmt.Sprintf("demo: host %s dies now: its services are killed and it refuses restarts", sc.FaultHost))
		}
		f.faulty = fh
		f.Hosts[i] = fh
	}
}

// note journals msg in the run as actor's: the headless lines and the
// cockpit's event pane show it from there. It is printed to the fleet's
// log only when the run could not journal it, and never while the
// cockpit owns the terminal (a stray line would be drawn over its panes).
func (f *Fleet) note(ctx context.Context, actor engine.Actor, msg string) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := f.Engine.Send(sctx, engine.Command{Kind: engine.CmdNote, Actor: actor, Reason: msg}); err != nil && !f.opts.Interactive {
		fmt.Fprintf(f.opts.Log, "%s\ndemo: the run did not journal it: %v\n", msg, err)
	}
}
