package etcdstate

import (
	"context"
	"fmt"

	"flightdeck/engine"
)

// Backend is a Store as the engine's state backend (engine.StateBackend
// and engine.RunFollower).
type Backend struct{ *Store }

var (
	_ engine.StateBackend = Backend{}
	_ engine.RunFollower  = Backend{}
	_ engine.RunsAtLock   = heldLock{}
)

// AcquireLock implements engine.StateBackend.
func (b Backend) AcquireLock(ctx context.Context, env string, info engine.LockInfo) (engine.HeldLock, error) {
	l, err := b.Store.AcquireLock(ctx, env, info)
	if err != nil {
		return nil, err
	}
	return heldLock{l}, nil
}

// BreakLock implements engine.StateBackend.
func (b Backend) BreakLock(ctx context.Context, env string, by engine.Actor, reason string) (*engine.LockInfo, string, error) {
	rec, err := b.Store.BreakLock(ctx, env, by, reason)
	if err != nil {
		return nil, "", err
	}
	return &rec.Held.LockInfo, fmt.Sprintf("%s (%s)", b.unlockPrefix(env), b.Describe()), nil
}

type heldLock struct{ l *Lock }

func (h heldLock) OpenJournal(ctx context.Context, run string) (engine.RunJournal, error) {
	j, err := h.l.s.OpenJournal(ctx, run, h.l)
	if err != nil {
		return nil, err
	}
	return runJournal{j}, nil
}

func (h heldLock) Fence(ctx context.Context) error { return h.l.Fence(ctx) }

// RunsAtLock implements engine.RunsAtLock.
func (h heldLock) RunsAtLock(ctx context.Context) ([]engine.RunSummary, bool, error) {
	return h.l.RunsAtLock(ctx)
}

// Recovered: a dead controller's lock frees itself when its lease expires,
// so there is never a lock to take over.
func (h heldLock) Recovered() *engine.LockInfo { return nil }

// Release lets the lock go in the background: the run is over and its
// journal committed, so its outcome need not wait for the lock key's
// deletion. The store's next lock of the environment, and its Close, wait
// for it.
func (h heldLock) Release() error {
	h.l.s.releaseLater(h.l)
	return nil
}

type runJournal struct{ *Journal }

func (runJournal) Notices() []string { return nil }
