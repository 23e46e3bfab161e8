package tui

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"flightdeck/engine"
	"flightdeck/engine/sampler"
)

// Backend is what the cockpit drives. The cockpit only reads the hub's
// snapshots and events and calls these methods from tea.Cmds, never from
// Update, so a slow backend never freezes the screen.
type Backend interface {
	// Hub is the hub of the environment's runs (it outlives runs).
	Hub() *engine.Hub
	// Send forwards an operator command to the run in progress.
	Send(ctx context.Context, c engine.Command) error
	// Rollback rolls the environment back to release to ("" = the release
	// live before the last successful deploy). It returns when the
	// rollback run has finished.
	Rollback(ctx context.Context, a engine.Actor, to string) error
	// Deploy builds and deploys a new release and returns when the run
	// has finished.
	Deploy(ctx context.Context, a engine.Actor) error
	// Presence lists who is connected to this cockpit (local and SSH).
	Presence() []Presence
}

// HostStater is a Backend whose hosts have a state outside any run, such
// as a lab's containers (up, paused, killed, offline, slow-net). The
// cockpit asks it once a second (it must answer at once, from memory) and
// shows the state in the host's row.
type HostStater interface {
	HostStates() map[string]string
}

// LiveSource is a Backend that samples the environment's traffic source
// every second (engine/sampler). The cockpit reads the latest snapshot on
// its clock tick and redraws the SLO pane and the fleet's per-host
// figures when it changed. A nil snapshot means no traffic source.
type LiveSource interface {
	LiveSLO() *sampler.Snapshot
}

// LiveNotifier is a LiveSource that says when a new snapshot is out: the
// cockpit then redraws at once instead of at its next clock tick.
type LiveNotifier interface {
	// LiveChanged returns a channel closed when the next snapshot is out
	// (nil: never).
	LiveChanged() <-chan struct{}
}

// FaultDeployer is a Backend that can deploy a release with a fault, to
// show the gates and the rollback: the demo. The cockpit offers its "bad
// deploy" key only over such a backend.
type FaultDeployer interface {
	// Fault describes the fault the next faulty release carries ("" when
	// none is configured: the key then says so).
	Fault() string
	// DeployFault deploys a release with the fault and returns when the
	// run has finished.
	DeployFault(ctx context.Context, a engine.Actor) error
}

// Historian is a Backend that knows the environment's runs (the journal):
// the cockpit's history overlay lists them and names what a rollback
// goes from and to.
type Historian interface {
	// History returns the environment's runs, oldest first.
	History(ctx context.Context) ([]engine.RunSummary, error)
}

// Presence is one connected operator.
type Presence struct {
	Name string
	Role engine.Role
	// Via is how they are connected: tui (local) or ssh.
	Via string
}

// BuildFunc builds the artifact of a new deploy. cleanup removes the
// build's workspace once the run no longer needs it.
type BuildFunc func(ctx context.Context) (a *engine.Artifact, cleanup func(), err error)

// EngineBackend is a Backend over an engine.Engine in this process.
type EngineBackend struct {
	Engine *engine.Engine
	// Build builds a new release for Deploy; nil disables deploys.
	Build BuildFunc
	// Command is recorded in the environment's lock (e.g. "flightdeck demo").
	Command string
	// Sampler samples the traffic source for the SLO pane (nil: the plan
	// has none). Its owner runs it.
	Sampler *sampler.Sampler

	mu       sync.Mutex
	presence []Presence
}

// Hub returns the engine's hub.
func (b *EngineBackend) Hub() *engine.Hub { return b.Engine.Hub }

// Send forwards a command to the active run.
func (b *EngineBackend) Send(ctx context.Context, c engine.Command) error {
	return b.Engine.Send(ctx, c)
}

// Rollback runs a rollback of the environment to release to.
func (b *EngineBackend) Rollback(ctx context.Context, a engine.Actor, to string) error {
	st, err := b.Engine.Rollback(ctx, a, to, b.Command)
	if err != nil {
		return err
	}
	if st != nil && st.Outcome != engine.OutcomeSucceeded {
		return fmt.Errorf("rollback %s: %s", st.Outcome, st.Err)
	}
	return nil
}

// History returns the runs of the engine's environment, oldest first.
func (b *EngineBackend) History(ctx context.Context) ([]engine.RunSummary, error) {
	runs, err := b.Engine.StateBackend().ListRuns(ctx)
	if err != nil {
		return nil, err
	}
	env := ""
	if b.Engine.Env != nil {
		env = b.Engine.Env.Name
	}
	out := runs[:0]
	for _, r := range runs {
		if env == "" || r.Env == env {
			out = append(out, r)
		}
	}
	return out, nil
}

// Deploy builds a release and deploys it.
func (b *EngineBackend) Deploy(ctx context.Context, a engine.Actor) error {
	if b.Build == nil {
		return errors.New("this cockpit cannot start deploys (no build configured)")
	}
	if err := engine.AuthorizeOwner(a, "start a deploy"); err != nil {
		return err
	}
	art, cleanup, err := b.Build(ctx)
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	if cleanup != nil {
		defer cleanup()
	}
	st, err := b.Engine.Deploy(ctx, a, art, b.Command)
	if err != nil {
		return err
	}
	if st != nil && st.Outcome != engine.OutcomeSucceeded {
		return fmt.Errorf("deploy %s: %s", st.Outcome, st.Err)
	}
	return nil
}

// LiveSLO returns the sampler's latest snapshot, or nil without a sampler.
func (b *EngineBackend) LiveSLO() *sampler.Snapshot {
	if b.Sampler == nil {
		return nil
	}
	return b.Sampler.Snapshot()
}

// LiveChanged is closed when the sampler publishes its next snapshot (nil
// without a sampler).
func (b *EngineBackend) LiveChanged() <-chan struct{} {
	if b.Sampler == nil {
		return nil
	}
	return b.Sampler.Changed()
}

// SetPresence replaces the list of connected operators.
func (b *EngineBackend) SetPresence(p []Presence) {
	b.mu.Lock()
	b.presence = append([]Presence(nil), p...)
	b.mu.Unlock()
}

// Presence returns the connected operators.
func (b *EngineBackend) Presence() []Presence {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Presence(nil), b.presence...)
}
