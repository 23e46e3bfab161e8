package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// StateBackend keeps the journal and the environment locks. FileState
// (files under the state directory) is the default; a team with several
// control machines points them at a shared store (targets/etcdstate).
type StateBackend interface {
	// Describe names where the state lives, for messages.
	Describe() string
	// ListRuns summarises every run, oldest first.
	ListRuns(ctx context.Context) ([]RunSummary, error)
	// ReadJournal reads every event of a run, in order.
	ReadJournal(ctx context.Context, run string) ([]Event, error)
	// AcquireLock takes env's lock or fails with an error wrapping
	// *LockHeldError.
	AcquireLock(ctx context.Context, env string, info LockInfo) (HeldLock, error)
	// BreakLock breaks env's lock whoever holds it, records who broke it
	// and why, and returns whose it was and where the record is.
	BreakLock(ctx context.Context, env string, by Actor, reason string) (held *LockInfo, recorded string, err error)
}

// HeldLock is an environment lock this process holds. Runs journal
// under it, and every switch is fenced by it.
type HeldLock interface {
	// OpenJournal opens a run's journal for appending under this lock: a
	// shared store refuses the writes once the lock is no longer ours.
	OpenJournal(ctx context.Context, run string) (RunJournal, error)
	// Fence returns nil when the lock is surely still ours, waiting while
	// the store cannot tell; an error means no host may be switched.
	Fence(ctx context.Context) error
	// Recovered describes a dead holder's lock that was taken over, or nil.
	Recovered() *LockInfo
	// Release lets the lock go.
	Release() error
}

// RunsAtLock is implemented by held locks that read the runs in the
// request that took the lock: the run that holds the lock looks for an
// unfinished run to finish first without asking the store again.
type RunsAtLock interface {
	// RunsAtLock summarises every run as the lock found them, oldest
	// first (ok false when it did not read them, or they were taken).
	// It answers once.
	RunsAtLock(ctx context.Context) (runs []RunSummary, ok bool, err error)
}

// RunJournal appends one run's events. Append returns once the events
// are durable (fsynced, or committed by the store); a store that does
// not answer makes it wait, and ctx's end makes it give up.
type RunJournal interface {
	Append(ctx context.Context, evs ...Event) error
	// Notices says what opening the journal found and repaired.
	Notices() []string
	Close() error
}

// RunFollower is implemented by backends that can follow a run from
// another process as it is journaled.
type RunFollower interface {
	// Follow calls fn with the run's events after seq, in order, each
	// once, until the run finishes (nil), fn fails or ctx ends.
	Follow(ctx context.Context, run string, after uint64, fn func([]Event) error) error
	// NextRun returns the run of env in progress, or waits for one to start.
	NextRun(ctx context.Context, env string) (string, error)
}

var _ RunFollower = FileState{}

// FileState keeps the journal and the locks in files under Dir (the
// state directory): one JSON lines file per run, fsynced before its
// events are published, and one lock file per environment.
type FileState struct{ Dir string }

// Describe implements StateBackend.
func (f FileState) Describe() string { return "files under " + f.Dir }

// ListRuns implements StateBackend.
func (f FileState) ListRuns(context.Context) ([]RunSummary, error) { return ListRuns(f.Dir) }

// ReadJournal implements StateBackend.
func (f FileState) ReadJournal(_ context.Context, run string) ([]Event, error) {
	return ReadJournal(f.Dir, run)
}

// AcquireLock implements StateBackend.
func (f FileState) AcquireLock(_ context.Context, env string, info LockInfo) (HeldLock, error) {
	l, err := AcquireLock(f.Dir, env, info)
	if err != nil {
		return nil, err
	}
	return fileLock{dir: f.Dir, l: l}, nil
}

// BreakLock implements StateBackend.
func (f FileState) BreakLock(_ context.Context, env string, by Actor, reason string) (*LockInfo, string, error) {
	held, err := BreakLock(f.Dir, env)
	if err != nil {
		return nil, "", err
	}
	if err := RecordUnlock(f.Dir, env, by, *held, reason); err != nil {
		return held, "", err
	}
	return held, "locks/unlocks.log", nil
}

type fileLock struct {
	dir string
	l   *Lock
}

func (f fileLock) OpenJournal(_ context.Context, run string) (RunJournal, error) {
	j, err := OpenJournal(f.dir, run)
	if err != nil {
		return nil, err
	}
	return fileJournal{j}, nil
}

// Fence: a file lock is held for as long as this process lives, unless
// `flightdeck unlock` broke it (its file is not the one we flock).
func (f fileLock) Fence(context.Context) error {
	if !f.l.Held() {
		return fmt.Errorf("the lock of this run (%s) was broken: no host is switched any more", f.l.path)
	}
	return nil
}
func (f fileLock) Recovered() *LockInfo { return f.l.Recovered }
func (f fileLock) Release() error       { return f.l.Release() }

// fileJournal adapts *Journal to RunJournal.
type fileJournal struct{ *Journal }

func (j fileJournal) Append(_ context.Context, evs ...Event) error { return j.Journal.Append(evs...) }
func (j fileJournal) Notices() []string                            { return j.Journal.Notices() }

// followPoll is how often a file journal is read again when followed.
const followPoll = 100 * time.Millisecond

// Follow implements RunFollower by reading the run's journal file again
// every 100 ms (a journal is only ever appended to).
func (f FileState) Follow(ctx context.Context, run string, after uint64, fn func([]Event) error) error {
	t := time.NewTicker(followPoll)
	defer t.Stop()
	for {
		evs, err := ReadJournal(f.Dir, run)
		var dmg *JournalDamageError
		if err != nil && !errors.Is(err, os.ErrNotExist) && !errors.As(err, &dmg) {
			return err
		}
		var out []Event
		finished := false
		for _, e := range evs {
			if e.Seq > after {
				out = append(out, e)
				after = e.Seq
				finished = finished || e.Type == EvRunFinished
			}
		}
		if len(out) > 0 {
			if err := fn(out); err != nil {
				return err
			}
		}
		if finished {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// NextRun implements RunFollower by listing the runs every 100 ms.
func (f FileState) NextRun(ctx context.Context, env string) (string, error) {
	t := time.NewTicker(followPoll)
	defer t.Stop()
	for {
		runs, err := ListRuns(f.Dir)
		if err != nil {
			return "", err
		}
		for i := len(runs) - 1; i >= 0; i-- {
			if runs[i].Env == env {
				if runs[i].Status != "finished" {
					return runs[i].Run, nil
				}
				break
			}
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-t.C:
		}
	}
}

// ValidateRunID checks that a run id can name a journal file or key.
func ValidateRunID(run string) error {
	if run == "" || strings.ContainsAny(run, "/\\\x00") || strings.HasPrefix(run, ".") {
		return fmt.Errorf("bad run id %q", run)
	}
	return nil
}
