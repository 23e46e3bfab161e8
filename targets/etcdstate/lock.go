package etcdstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"flightdeck/engine"
)

// Holder is what the lock key holds: who took the lock, for which run,
// and the lease that keeps it.
type Holder struct {
	engine.LockInfo
	// Lease is the etcd lease the lock key is attached to.
	Lease int64 `json:"lease"`
	// TTL is the lease's time to live.
	TTL time.Duration `json:"ttl"`
}

// HeldError is returned when another controller holds the lock. It
// unwraps to *engine.LockHeldError.
type HeldError struct {
	Env    string
	Holder Holder
	Age    time.Duration
}

func (e *HeldError) Error() string {
	h := e.Holder
	run := h.Run
	if run == "" {
		run = "no run yet"
	}
	return fmt.Sprintf("environment %s is locked by %s on %s (run %s, pid %d, %q) for %s; "+
		"the lock frees itself %s after that controller stops, or `flightdeck unlock --env %s` breaks it",
		e.Env, h.Owner, h.Host, run, h.PID, h.Command, e.Age.Round(time.Second), h.TTL, e.Env)
}

// Unwrap lets errors.As find an *engine.LockHeldError.
func (e *HeldError) Unwrap() error {
	return &engine.LockHeldError{Env: e.Env, Info: e.Holder.LockInfo, Age: e.Age}
}

// ErrLockLost is returned (wrapped) by journal writes and fences once the
// lock is no longer ours: its lease expired (the controller was cut off
// from etcd longer than the lease's TTL) or it was broken.
var ErrLockLost = errors.New("the environment's lock is no longer held by this controller")

// Lock is a held environment lock. A goroutine keeps its lease alive and
// tracks until when the lease is surely valid, for fencing.
type Lock struct {
	s      *Store
	env    string
	key    string
	lease  clientv3.LeaseID
	ttl    time.Duration
	rev    int64
	holder Holder

	mu         sync.Mutex
	validUntil time.Time
	lost       error
	changed    chan struct{} // closed and replaced on every change of validUntil or lost
	cancel     context.CancelFunc
	done       chan struct{}
}

// AcquireLock takes env's lock for info, or fails with *HeldError naming
// the holder. The lock key is created in one transaction only if absent,
// attached to a fresh lease of the configured TTL.
func (s *Store) AcquireLock(ctx context.Context, env string, info engine.LockInfo) (*Lock, error) {
	ttl := s.cfg.Lease
	var grant *clientv3.LeaseGrantResponse
	sent := time.Now()
	err := s.request(ctx, func(ctx context.Context) (err error) {
		grant, err = s.cli.Grant(ctx, int64(ttl/time.Second))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("etcd: grant the lock's lease: %w", err)
	}
	ttl = time.Duration(grant.TTL) * time.Second
	h := Holder{LockInfo: info, Lease: int64(grant.ID), TTL: ttl}
	val, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	key := s.lockKey(env)
	var resp *clientv3.TxnResponse
	err = s.request(ctx, func(ctx context.Context) (err error) {
		resp, err = s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(val), clientv3.WithLease(grant.ID))).
			Else(clientv3.OpGet(key)).
			Commit()
		return err
	})
	if err != nil || !resp.Succeeded {
		s.revoke(grant.ID)
	}
	if err != nil {
		return nil, fmt.Errorf("etcd: take the lock of %s: %w", env, err)
	}
	if !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			// Freed between the compare and the read: report, do not loop.
			return nil, fmt.Errorf("etcd: the lock of %s changed hands while it was taken; try again", env)
		}
		var held Holder
		if err := json.Unmarshal(kvs[0].Value, &held); err != nil {
			held.Owner = fmt.Sprintf("an unreadable holder (%v)", err)
		}
		return nil, &HeldError{Env: env, Holder: held, Age: time.Since(held.Started)}
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l := &Lock{s: s, env: env, key: key, lease: grant.ID, ttl: ttl, rev: resp.Header.Revision, holder: h,
		validUntil: sent.Add(ttl), changed: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go l.keepAlive(lctx)
	return l, nil
}

func (s *Store) revoke(id clientv3.LeaseID) {
	_ = s.request(context.Background(), func(ctx context.Context) error {
		_, err := s.cli.Revoke(ctx, id)
		return err
	})
}

// keepAlive renews the lease every third of its TTL. The lease is surely
// valid until the send time of the last acknowledged renewal plus the
// TTL; a renewal answered "not found" means the lease is gone for good.
func (l *Lock) keepAlive(ctx context.Context) {
	defer close(l.done)
	every := l.ttl / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sent := time.Now()
		actx, cancel := context.WithTimeout(ctx, every)
		resp, err := l.s.cli.KeepAliveOnce(actx, l.lease)
		cancel()
		switch {
		case err == nil && resp.TTL > 0:
			l.update(sent.Add(time.Duration(resp.TTL)*time.Second), nil)
		case errors.Is(err, rpctypes.ErrLeaseNotFound) || (err == nil && resp.TTL <= 0):
			l.update(time.Time{}, fmt.Errorf("%w: its lease %x expired in etcd (this controller was cut off from etcd for longer than %s, or the lock was broken)", ErrLockLost, int64(l.lease), l.ttl))
			return
		}
	}
}

func (l *Lock) update(until time.Time, lost error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		return
	}
	l.validUntil, l.lost = until, lost
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *Lock) markLost(err error) {
	l.update(time.Time{}, err)
}

// Holder is what the lock key says.
func (l *Lock) Holder() Holder { return l.holder }

// Revision is the lock key's create revision: the fencing token.
func (l *Lock) Revision() int64 { return l.rev }

// TTL is the lease's time to live.
func (l *Lock) TTL() time.Duration { return l.ttl }

// Lost is non-nil once the lease is known to be gone.
func (l *Lock) Lost() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

// margin is how much validity a fence demands: a switch starts only while
// the lease is sure to outlive it by this much.
func (l *Lock) margin() time.Duration { return l.ttl / 3 }

// Check says whether the lock is surely ours now: nil, an error wrapping
// ErrLockLost (gone for good), or an error saying the lease could not be
// renewed lately (it may come back when etcd answers again).
func (l *Lock) Check() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		return l.lost
	}
	if left := time.Until(l.validUntil); left < l.margin() {
		return fmt.Errorf("the lock's lease could not be renewed with etcd for %s (%s of its %s TTL left at most)",
			time.Since(l.validUntil.Add(-l.ttl)).Round(100*time.Millisecond), max(left, 0).Round(100*time.Millisecond), l.ttl)
	}
	return nil
}

// Fence waits until the lock is surely ours (see Check) and returns nil,
// or returns an error wrapping ErrLockLost, or ctx's error. While it
// waits it reports a Stall.
func (l *Lock) Fence(ctx context.Context) error {
	var since time.Time
	for {
		l.mu.Lock()
		changed := l.changed
		l.mu.Unlock()
		err := l.Check()
		if err == nil || errors.Is(err, ErrLockLost) {
			if !since.IsZero() && l.s.cfg.OnStall != nil {
				l.s.cfg.OnStall(Stall{What: "lock lease of " + l.env, Since: since, Err: err, Over: true})
			}
			return err
		}
		if since.IsZero() {
			since = time.Now()
			if l.s.cfg.OnStall != nil {
				l.s.cfg.OnStall(Stall{What: "lock lease of " + l.env, Since: since, Err: err})
			}
		}
		// A renewal is tried every third of the TTL; wake on its outcome.
		select {
		case <-ctx.Done():
			return fmt.Errorf("fence: %w (%v)", ctx.Err(), err)
		case <-changed:
		}
	}
}

// cmp is the transaction condition that holds while the lock is ours:
// the lock key still exists with the revision it was created at (a lease
// expiry deletes it; a new holder creates it anew).
func (l *Lock) cmp() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.rev)
}

// SetRun records the run the lock is held for (the lock key keeps its
// revision and lease).
func (l *Lock) SetRun(ctx context.Context, run string) error {
	h := l.holder
	h.Run = run
	val, err := json.Marshal(h)
	if err != nil {
		return err
	}
	var resp *clientv3.TxnResponse
	err = l.s.retry(ctx, "lock of "+l.env, func(ctx context.Context) (err error) {
		resp, err = l.s.cli.Txn(ctx).If(l.cmp()).
			Then(clientv3.OpPut(l.key, string(val), clientv3.WithLease(l.lease))).Commit()
		return err
	})
	if err != nil {
		return fmt.Errorf("etcd: record run %s in the lock of %s: %w", run, l.env, err)
	}
	if !resp.Succeeded {
		err := fmt.Errorf("%w: the lock key was deleted or taken over", ErrLockLost)
		l.markLost(err)
		return err
	}
	l.holder = h
	return nil
}

// Release deletes the lock key (if it is still ours) and revokes the lease.
func (l *Lock) Release(ctx context.Context) error {
	l.cancel()
	<-l.done
	err := l.s.request(context.WithoutCancel(ctx), func(ctx context.Context) error {
		_, err := l.s.cli.Txn(ctx).If(l.cmp()).Then(clientv3.OpDelete(l.key)).Commit()
		return err
	})
	l.s.revoke(l.lease)
	l.markLost(fmt.Errorf("%w: released", ErrLockLost))
	if err != nil {
		return fmt.Errorf("etcd: release the lock of %s: %w (its lease expires in %s)", l.env, err, l.ttl)
	}
	return nil
}

// ReadLock returns env's lock holder, or nil when the lock is free.
func (s *Store) ReadLock(ctx context.Context, env string) (*Holder, error) {
	var resp *clientv3.GetResponse
	err := s.request(ctx, func(ctx context.Context) (err error) {
		resp, err = s.cli.Get(ctx, s.lockKey(env))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("etcd: read the lock of %s: %w", env, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	var h Holder
	if err := json.Unmarshal(resp.Kvs[0].Value, &h); err != nil {
		return nil, fmt.Errorf("etcd: the lock of %s holds unreadable %q: %w", env, resp.Kvs[0].Value, err)
	}
	return &h, nil
}

// Unlock is the record of a broken lock.
type Unlock struct {
	Time   time.Time `json:"time"`
	Env    string    `json:"env"`
	By     string    `json:"by"`
	Held   Holder    `json:"held"`
	Reason string    `json:"reason,omitempty"`
}

// ErrNotLocked is returned by BreakLock when there is no lock to break.
var ErrNotLocked = errors.New("no lock to break")

// BreakLock deletes env's lock whoever holds it, records who broke it (in
// the same transaction) and revokes the holder's lease, so that its
// controller stops switching at once. It returns the record.
func (s *Store) BreakLock(ctx context.Context, env string, by engine.Actor, reason string) (*Unlock, error) {
	key := s.lockKey(env)
	var get *clientv3.GetResponse
	if err := s.request(ctx, func(ctx context.Context) (err error) {
		get, err = s.cli.Get(ctx, key)
		return err
	}); err != nil {
		return nil, fmt.Errorf("etcd: read the lock of %s: %w", env, err)
	}
	if len(get.Kvs) == 0 {
		return nil, fmt.Errorf("%s: %w", env, ErrNotLocked)
	}
	kv := get.Kvs[0]
	rec := Unlock{Time: time.Now().UTC(), Env: env, By: by.Name, Reason: reason}
	if err := json.Unmarshal(kv.Value, &rec.Held); err != nil {
		rec.Held.Owner = fmt.Sprintf("unreadable (%q)", kv.Value)
	}
	val, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	recKey := fmt.Sprintf("%s%020d-%s", s.unlockPrefix(env), rec.Time.UnixNano(), engine.RandomSuffix(3))
	var resp *clientv3.TxnResponse
	if err := s.request(ctx, func(ctx context.Context) (err error) {
		resp, err = s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
			Then(clientv3.OpDelete(key), clientv3.OpPut(recKey, string(val))).
			Commit()
		return err
	}); err != nil {
		return nil, fmt.Errorf("etcd: break the lock of %s: %w", env, err)
	}
	if !resp.Succeeded {
		return nil, fmt.Errorf("etcd: the lock of %s changed while it was broken; look again", env)
	}
	if kv.Lease != 0 {
		s.revoke(clientv3.LeaseID(kv.Lease))
	}
	return &rec, nil
}

// Unlocks lists the broken locks of env ("" = every environment), oldest first.
func (s *Store) Unlocks(ctx context.Context, env string) ([]Unlock, error) {
	pfx := s.pfx + "/unlocks/"
	if env != "" {
		pfx = s.unlockPrefix(env)
	}
	var resp *clientv3.GetResponse
	if err := s.request(ctx, func(ctx context.Context) (err error) {
		resp, err = s.cli.Get(ctx, pfx, clientv3.WithPrefix())
		return err
	}); err != nil {
		return nil, fmt.Errorf("etcd: list unlocks: %w", err)
	}
	out := make([]Unlock, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var u Unlock
		if err := json.Unmarshal(kv.Value, &u); err != nil {
			return nil, fmt.Errorf("etcd: unlock record %s: %w", kv.Key, err)
		}
		out = append(out, u)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

// WaitFree waits until env's lock is free (released, broken, or its
// holder's lease expired).
func (s *Store) WaitFree(ctx context.Context, env string) error {
	key := s.lockKey(env)
	for {
		var resp *clientv3.GetResponse
		if err := s.retry(ctx, "lock of "+env, func(ctx context.Context) (err error) {
			resp, err = s.cli.Get(ctx, key)
			return err
		}); err != nil {
			return err
		}
		if len(resp.Kvs) == 0 {
			return nil
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for wr := range s.cli.Watch(wctx, key, clientv3.WithRev(resp.Header.Revision+1)) {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypeDelete {
					cancel()
					return nil
				}
			}
		}
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}
