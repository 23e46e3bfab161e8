package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"flightdeck/engine/plan"
)

// Engine drives the runs of one environment: it takes the environment's
// lock, finishes a run left unfinished by a dead process, starts deploys
// and rollbacks, and forwards operator commands to the active run. The
// hub outlives runs, so a cockpit keeps showing the last one.
type Engine struct {
	Plan     *plan.Plan
	Env      *plan.Environment
	Hosts    []Host
	StateDir string
	// State keeps the journal and the environment locks; nil keeps them
	// in files under StateDir.
	State    StateBackend
	Hub      *Hub
	Router   Router
	Backends map[string]string
	Metrics  MetricsSource
	// MinHold paces runs for people (the interactive demo).
	MinHold time.Duration
	// Acks are checklist items acknowledged for the next deploy (id → ack),
	// e.g. destructive migrations accepted with a reason.
	Acks map[string]Ack
	// SkipPromotionCheck, when set, is the reason the 3-2-1 promotion check
	// is overridden (journaled).
	SkipPromotionCheck string
	// SkipRollbackPath, when set, is the reason the rollback-path check is
	// overridden (journaled).
	SkipRollbackPath string
	// Notices, when set, returns what happened before a run that its
	// journal must record (e.g. SSH host keys trusted on first use).
	Notices func() []string
	Now     func() time.Time

	mu  sync.Mutex
	run *Run
	// notes are notices that arrived while a run journals (e.g. that the
	// state backend did not answer for a while); the run journals them
	// with its next events.
	notes []string
}

// Note queues a notice for the journal of the run in progress (or of the
// next run). It never blocks, so a state backend may call it while the run
// waits for it.
func (e *Engine) Note(msg string) {
	e.mu.Lock()
	e.notes = append(e.notes, msg)
	e.mu.Unlock()
}

func (e *Engine) takeNotes() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := e.notes
	e.notes = nil
	return n
}

// StateBackend returns where the journal and the locks live.
func (e *Engine) StateBackend() StateBackend {
	if e.State != nil {
		return e.State
	}
	return FileState{Dir: e.StateDir}
}

// Active returns the run in progress, or nil.
func (e *Engine) Active() *Run {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.run
}

// Send forwards a command to the active run. Without one it answers as
// Check does between runs (ErrNoRun, or ErrNotAllowed for a role that may
// not send c), and ErrNoRun for the commands that start runs (Deploy and
// Rollback start those).
func (e *Engine) Send(ctx context.Context, c Command) error {
	r := e.Active()
	if r == nil {
		if err := Check(nil, c); err != nil {
			return err
		}
		return ErrNoRun
	}
	return r.Send(ctx, c)
}

// Deploy releases an artifact to the environment. A run left unfinished
// by a dead process is finished first.
func (e *Engine) Deploy(ctx context.Context, actor Actor, a *Artifact, command string) (*State, error) {
	if err := Check(nil, Command{Kind: CmdDeploy, Actor: actor}); err != nil {
		return nil, err
	}
	findings, err := MigrationFindings(e.Plan)
	if err != nil {
		return nil, err
	}
	_, acked := e.Acks[ItemMigrations]
	facts := deployFacts{env: e.Env.Name, strategy: e.Env.Strategy.Kind, release: a.ID, actor: actor.Name,
		findings: findings, migrationsAcked: acked, skipPromotion: e.SkipPromotionCheck}
	order := e.Plan.PromotionOrder()
	if i := slices.Index(order, e.Env.Name); i > 0 {
		facts.before = order[i-1]
		if facts.passedBefore, err = finishedIn(ctx, e.StateBackend(), facts.before, a.ID); err != nil {
			return nil, err
		}
	}
	promo, pre, err := admitDeploy(facts)
	if err != nil {
		return nil, err
	}
	id := e.newRunID()
	return e.withLock(ctx, actor, command, id, func(lock HeldLock, notices []string) (*State, error) {
		if st, err := e.resumeLocked(ctx, actor, lock, notices); err != nil {
			return st, err
		} else if st != nil {
			notices = nil
		}
		return e.execute(ctx, RunConfig{Kind: KindDeploy, Artifact: a, Actor: actor, Acks: e.Acks, Findings: findings,
			SkipRollbackPath: e.SkipRollbackPath, Promotion: promo, RunID: id, Lock: lock}, append(pre, notices...))
	})
}

// Rollback puts every host of the environment on release `to` ("" = the
// release that was live before the last successful deploy, from the journal).
func (e *Engine) Rollback(ctx context.Context, actor Actor, to, command string) (*State, error) {
	if err := Check(nil, Command{Kind: CmdRollback, Actor: actor, To: to}); err != nil {
		return nil, err
	}
	if to == "" {
		runs, err := e.StateBackend().ListRuns(ctx)
		if err != nil {
			return nil, err
		}
		t, err := defaultRollbackTarget(runs, e.Env.Name)
		if err != nil {
			return nil, err
		}
		to = t
	}
	if err := ValidateReleaseID(to); err != nil {
		return nil, err
	}
	id := e.newRunID()
	return e.withLock(ctx, actor, command, id, func(lock HeldLock, notices []string) (*State, error) {
		if st, err := e.resumeLocked(ctx, actor, lock, notices); err != nil {
			return st, err
		} else if st != nil {
			notices = nil
		}
		return e.execute(ctx, RunConfig{Kind: KindRollback, Target: to, Actor: actor, RunID: id, Lock: lock}, notices)
	})
}

// Resume finishes a run left unfinished by a dead process. It returns a
// nil state when there is nothing to resume.
func (e *Engine) Resume(ctx context.Context, actor Actor, command string) (*State, error) {
	// Finishing a run may roll it back: the rule of a rollback between runs.
	if err := Check(nil, Command{Kind: CmdRollback, Actor: actor}); err != nil {
		return nil, err
	}
	// The lock names the run it will finish (read again under the lock).
	id, _, err := unfinishedRun(ctx, e.StateBackend(), e.Env.Name)
	if err != nil {
		return nil, err
	}
	if id == "" {
		// Nothing in the journal to finish: say so only if the fleet
		// agrees (a split fleet with no run to explain it is not "done").
		if split := e.fleetSplit(ctx); split != "" {
			return nil, fmt.Errorf("the journal has no run to resume, but the hosts disagree (%s) and no unfinished run explains it (a deleted journal?): "+
				"put them on one release with `flightdeck rollback --to ID` or a new deploy", split)
		}
	}
	return e.withLock(ctx, actor, command, id, func(lock HeldLock, notices []string) (*State, error) {
		return e.resumeLocked(ctx, actor, lock, notices)
	})
}

// newRunID names a new run of the environment.
func (e *Engine) newRunID() string {
	return fmt.Sprintf("%s-%s-%s", e.Env.Name, e.now().UTC().Format("20060102T150405"), RandomSuffix(3))
}

func (e *Engine) withLock(ctx context.Context, actor Actor, command, run string, fn func(lock HeldLock, notices []string) (*State, error)) (*State, error) {
	host, _ := os.Hostname()
	l, err := e.StateBackend().AcquireLock(ctx, e.Env.Name, LockInfo{
		Owner: actor.Name, PID: os.Getpid(), Host: host, Started: e.now(), Command: command, Run: run,
	})
	if err != nil {
		return nil, err
	}
	defer l.Release()
	var notices []string
	if rec := l.Recovered(); rec != nil {
		notices = append(notices, fmt.Sprintf("took over the lock of %s (pid %d, %q), whose process is gone",
			rec.Owner, rec.PID, rec.Command))
	}
	return fn(l, notices)
}

func (e *Engine) resumeLocked(ctx context.Context, actor Actor, lock HeldLock, notices []string) (*State, error) {
	st := e.StateBackend()
	if rl, ok := lock.(RunsAtLock); ok {
		st = runsAtLock{StateBackend: st, lock: rl}
	}
	id, evs, dmg, err := unfinishedRunDamage(ctx, st, e.Env.Name)
	if err != nil || id == "" {
		return nil, err
	}
	if dmg != nil {
		notices = append(notices, dmg.Error()+"; the run is resumed from the others and the hosts")
	}
	if err := e.checkRunHosts(id, Fold(evs)); err != nil {
		return nil, err
	}
	r, err := e.newRun(RunConfig{Kind: Fold(evs).Info.Kind, Actor: actor, RunID: id, Lock: lock}, notices)
	if err != nil {
		return nil, err
	}
	defer e.ended(r)
	return r.Resume(ctx, evs)
}

// runsAtLock lists the runs as the lock read them, once.
type runsAtLock struct {
	StateBackend
	lock RunsAtLock
}

func (r runsAtLock) ListRuns(ctx context.Context) ([]RunSummary, error) {
	runs, ok, err := r.lock.RunsAtLock(ctx)
	if err != nil || ok {
		return runs, err
	}
	return r.StateBackend.ListRuns(ctx)
}

// RunHostsError is returned when an unfinished run names hosts that the
// plan no longer has: it cannot be finished (its hosts would never
// answer), and nothing was touched.
type RunHostsError struct {
	Run     string
	Missing []string
}

func (e *RunHostsError) Error() string {
	return fmt.Sprintf("run %s is unfinished and was started on %s, which the plan no longer has: nothing was touched; "+
		"put them back in the plan so that `flightdeck resume` can finish the run (or take the run back) on every host it touched",
		e.Run, strings.Join(e.Missing, ", "))
}

// fleetSplit inspects every host (read-only) and describes their current
// releases when they disagree. A host that cannot be inspected is left
// out (resume has nothing to do with it either way).
func (e *Engine) fleetSplit(ctx context.Context) string {
	statuses := make(map[string]HostStatus, len(e.Hosts))
	for _, h := range e.Hosts {
		if st, err := h.Inspect(ctx); err == nil {
			statuses[h.Name()] = st
		}
	}
	return FleetSplit(statuses)
}

// checkRunHosts refuses to resume a run on a plan that lacks some of its hosts.
func (e *Engine) checkRunHosts(run string, st *State) error {
	have := make(map[string]bool, len(e.Hosts))
	for _, h := range e.Hosts {
		have[h.Name()] = true
	}
	var missing []string
	for _, h := range st.Info.Hosts {
		if !have[h.Name] {
			missing = append(missing, h.Name)
		}
	}
	if len(missing) > 0 {
		return &RunHostsError{Run: run, Missing: missing}
	}
	return nil
}

func (e *Engine) newRun(cfg RunConfig, notices []string) (*Run, error) {
	cfg.Plan, cfg.Env, cfg.Hosts, cfg.StateDir = e.Plan, e.Env, e.Hosts, e.StateDir
	cfg.Hub, cfg.Router, cfg.Backends, cfg.Now = e.Hub, e.Router, e.Backends, e.Now
	cfg.Metrics, cfg.MinHold = e.Metrics, e.MinHold
	cfg.Notes = e.takeNotes
	if cfg.Kind == KindDeploy && cfg.Artifact == nil {
		// A resumed deploy past its prepare phase needs no artifact.
		cfg.Artifact = &Artifact{}
	}
	cfg.Notices = func() []string {
		if e.Notices != nil {
			return append(notices, e.Notices()...)
		}
		return notices
	}
	cfg.OnStart = func(r *Run) {
		e.mu.Lock()
		e.run = r
		e.mu.Unlock()
	}
	return NewRun(cfg)
}

// ended forgets run r once it has ended.
func (e *Engine) ended(r *Run) {
	e.mu.Lock()
	if e.run == r {
		e.run = nil
	}
	e.mu.Unlock()
}

func (e *Engine) execute(ctx context.Context, cfg RunConfig, notices []string) (*State, error) {
	r, err := e.newRun(cfg, notices)
	if err != nil {
		return nil, err
	}
	defer e.ended(r)
	return r.Execute(ctx)
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// UnfinishedRun finds the newest run of env whose journal has no
// RunFinished event (its process died). It returns "" when there is none.
func UnfinishedRun(stateDir, env string) (string, []Event, error) {
	return unfinishedRun(context.Background(), FileState{Dir: stateDir}, env)
}

func unfinishedRun(ctx context.Context, st StateBackend, env string) (string, []Event, error) {
	id, evs, _, err := unfinishedRunDamage(ctx, st, env)
	return id, evs, err
}

// unfinishedRunDamage is unfinishedRun that reads a damaged journal: the
// events of its readable lines, and what was damaged (to be journaled).
func unfinishedRunDamage(ctx context.Context, st StateBackend, env string) (string, []Event, *JournalDamageError, error) {
	runs, err := st.ListRuns(ctx)
	if err != nil {
		return "", nil, nil, err
	}
	for i := len(runs) - 1; i >= 0; i-- {
		if runs[i].Env != env {
			continue
		}
		if runs[i].Status == StatusFinished {
			return "", nil, nil, nil
		}
		evs, err := st.ReadJournal(ctx, runs[i].Run)
		var dmg *JournalDamageError
		if errors.As(err, &dmg) {
			return runs[i].Run, evs, dmg, nil
		}
		return runs[i].Run, evs, nil, err
	}
	return "", nil, nil, nil
}

// DefaultRollbackTarget is the release that was live before the newest
// successful deploy of env, from the journal (never from directory times).
func DefaultRollbackTarget(stateDir, env string) (string, error) {
	runs, err := ListRuns(stateDir)
	if err != nil {
		return "", err
	}
	return defaultRollbackTarget(runs, env)
}

// RollbackTargetOf is DefaultRollbackTarget over runs already listed
// (oldest first): the cockpit names the target with the engine's rule.
func RollbackTargetOf(runs []RunSummary, env string) (string, error) {
	return defaultRollbackTarget(runs, env)
}

func defaultRollbackTarget(runs []RunSummary, env string) (string, error) {
	for i := len(runs) - 1; i >= 0; i-- {
		r := runs[i]
		if r.Env == env && r.Kind == KindDeploy && r.Outcome == OutcomeSucceeded {
			if r.Previous == "" {
				return "", fmt.Errorf("the last deploy of %s (%s, run %s) was the first: there is no earlier release; name one with --to", env, r.Release, r.Run)
			}
			return r.Previous, nil
		}
	}
	return "", fmt.Errorf("no successful deploy of %s in the journal; name the release with --to", env)
}

// CheckActorName refuses a name that could forge records where it is
// written (revisions.log lines, the cockpit, the journal's text): empty,
// longer than 64 bytes, not UTF-8, or holding spaces or control characters.
func CheckActorName(name string) error {
	switch {
	case name == "":
		return errors.New("the actor's name is empty")
	case len(name) > 64:
		return fmt.Errorf("the actor's name %.20q… is longer than 64 bytes", name)
	case !utf8.ValidString(name):
		return fmt.Errorf("the actor's name %q is not UTF-8", name)
	case strings.ContainsFunc(name, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsGraphic(r) }):
		return fmt.Errorf("the actor's name %q holds spaces or control characters", name)
	}
	return nil
}

// CheckLocalActor checks FLIGHTDECK_ACTOR when it is set.
func CheckLocalActor() error {
	if name, ok := os.LookupEnv("FLIGHTDECK_ACTOR"); ok && name != "" {
		if err := CheckActorName(name); err != nil {
			return fmt.Errorf("FLIGHTDECK_ACTOR: %w", err)
		}
	}
	return nil
}

// LocalActor is the operator running flightdeck on this machine.
func LocalActor(via string) Actor {
	name := os.Getenv("FLIGHTDECK_ACTOR")
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		} else {
			name = "unknown"
		}
	}
	return Actor{Name: name, Role: RoleOwner, Via: via}
}
