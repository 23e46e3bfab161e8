package etcdstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
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

// Lock is a held environment lock: a key attached to its environment's
// session lease (see session), named by its create revision.
type Lock struct {
	s      *Store
	sess   *session
	env    string
	key    string
	lease  clientv3.LeaseID
	ttl    time.Duration
	rev    int64
	holder Holder

	mu sync.Mutex
	// lost is set when this lock is gone though its lease may live on
	// (its key was deleted or taken over, or it was released).
	lost     error
	changed  chan struct{} // closed when lost is set
	released bool
	// first is the journal of the run named in the lock's info, and runs
	// the run summaries, read in the transaction that took the lock (nil
	// once used, or when the answer was partial).
	first, runs *prefetched
}

// prefetched is a run's journal as read with the lock.
type prefetched struct {
	run string
	kvs []*mvccpb.KeyValue
}

// prefetchLimit bounds the journal keys read with the lock.
const prefetchLimit = 256

// AcquireLock takes env's lock for info, or fails with *HeldError naming
// the holder. The lock key is created in one transaction only if absent,
// attached to env's session lease (granted first if Prepare did not). The
// same transaction reads the run summaries (RunsAtLock) and the journal
// of the run info names (OpenJournal): what the run holding the lock
// reads first, and what only the lock's holder writes.
func (s *Store) AcquireLock(ctx context.Context, env string, info engine.LockInfo) (*Lock, error) {
	if err := s.released(ctx, env); err != nil {
		return nil, err
	}
	for retried := false; ; retried = true {
		ss := s.sessionFor(env)
		if err := ss.wait(ctx); err != nil {
			return nil, err
		}
		l, err := s.lockOn(ctx, ss, env, info)
		if !retried && (errors.Is(err, rpctypes.ErrLeaseNotFound) || rpctypes.ErrorDesc(err) == rpctypes.ErrorDesc(rpctypes.ErrLeaseNotFound)) {
			// The session's lease is gone and its renewals did not tell
			// yet (revoked by a broken lock, or this process was
			// suspended past its TTL): the next session grants a new one.
			ss.update(time.Time{}, fmt.Errorf("%w: its lease %x is gone", ErrLockLost, int64(ss.lease)))
			ss.cancel()
			continue
		}
		return l, err
	}
}

// lockOn takes env's lock on session ss's lease (see AcquireLock).
func (s *Store) lockOn(ctx context.Context, ss *session, env string, info engine.LockInfo) (*Lock, error) {
	h := Holder{LockInfo: info, Lease: int64(ss.lease), TTL: ss.ttl}
	val, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	key := s.lockKey(env)
	then := []clientv3.Op{clientv3.OpPut(key, string(val), clientv3.WithLease(ss.lease)),
		clientv3.OpGet(s.pfx+"/runs/", clientv3.WithPrefix())}
	if info.Run != "" && ValidRunID(info.Run) == nil {
		then = append(then, clientv3.OpGet(s.journalPrefix(info.Run), clientv3.WithPrefix(), clientv3.WithLimit(prefetchLimit)))
	}
	var resp *clientv3.TxnResponse
	err = s.request(ctx, func(ctx context.Context) (err error) {
		resp, err = s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(then...).
			Else(clientv3.OpGet(key)).
			Commit()
		return err
	})
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
	ss.hold(1)
	l := &Lock{s: s, sess: ss, env: env, key: key, lease: ss.lease, ttl: ss.ttl, rev: resp.Header.Revision, holder: h,
		changed: make(chan struct{})}
	if r := resp.Responses[1].GetResponseRange(); r != nil && !r.More {
		l.runs = &prefetched{kvs: r.Kvs}
	}
	if len(then) > 2 {
		if r := resp.Responses[2].GetResponseRange(); r != nil && !r.More {
			l.first = &prefetched{run: info.Run, kvs: r.Kvs}
		}
	}
	return l, nil
}

// RunsAtLock summarises the runs as they were when the lock was taken
// (read in the same transaction), once; ok is false after that.
func (l *Lock) RunsAtLock(ctx context.Context) (runs []engine.RunSummary, ok bool, err error) {
	l.mu.Lock()
	p := l.runs
	l.runs = nil
	l.mu.Unlock()
	if p == nil {
		return nil, false, nil
	}
	runs, err = l.s.summariseRuns(ctx, p.kvs)
	return runs, true, err
}

// takePrefetchedOf returns run's journal keys read with lock (nil: none), once.
func (l *Lock) takePrefetchedOf(run string) ([]*mvccpb.KeyValue, bool) {
	if l == nil {
		return nil, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.first
	if p == nil || p.run != run {
		return nil, false
	}
	l.first = nil
	return p.kvs, true
}

func (s *Store) revoke(id clientv3.LeaseID) {
	_ = s.request(context.Background(), func(ctx context.Context) error {
		_, err := s.cli.Revoke(ctx, id)
		return err
	})
}

func (l *Lock) markLost(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost == nil {
		l.lost = err
		close(l.changed)
	}
}

// Holder is what the lock key says.
func (l *Lock) Holder() Holder { return l.holder }

// Revision is the lock key's create revision: the fencing token.
func (l *Lock) Revision() int64 { return l.rev }

// TTL is the lease's time to live.
func (l *Lock) TTL() time.Duration { return l.ttl }

// Lost is non-nil once the lock or its lease is known to be gone.
func (l *Lock) Lost() error {
	l.mu.Lock()
	lost := l.lost
	l.mu.Unlock()
	if lost != nil {
		return lost
	}
	_, lost, _ = l.sess.state()
	return lost
}

// margin is how much validity a fence demands: a switch starts only while
// the lease is sure to outlive it by this much.
func (l *Lock) margin() time.Duration { return l.ttl / 3 }

// Check says whether the lock is surely ours now: nil, an error wrapping
// ErrLockLost (gone for good), or an error saying the lease could not be
// renewed lately (it may come back when etcd answers again).
func (l *Lock) Check() error {
	err, _, _ := l.check()
	return err
}

// check is Check, and the channels that are closed when its answer may
// change.
func (l *Lock) check() (error, <-chan struct{}, <-chan struct{}) {
	l.mu.Lock()
	lost, mine := l.lost, l.changed
	l.mu.Unlock()
	if lost != nil {
		return lost, mine, nil
	}
	until, lost, changed := l.sess.state()
	if lost != nil {
		return lost, mine, changed
	}
	if left := time.Until(until); left < l.margin() {
		return fmt.Errorf("the lock's lease could not be renewed with etcd for %s (%s of its %s TTL left at most)",
			time.Since(until.Add(-l.ttl)).Round(100*time.Millisecond), max(left, 0).Round(100*time.Millisecond), l.ttl), mine, changed
	}
	return nil, mine, changed
}

// Fence waits until the lock is surely ours (see Check) and returns nil,
// or returns an error wrapping ErrLockLost, or ctx's error. While it
// waits it reports a Stall.
func (l *Lock) Fence(ctx context.Context) error {
	var since time.Time
	for {
		err, mine, changed := l.check()
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
		case <-mine:
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

// Release deletes the lock key if it is still ours, in one transaction.
// The session's lease stays for the environment's next lock from this
// store; Close revokes it.
func (l *Lock) Release(ctx context.Context) error {
	l.mu.Lock()
	released := l.released
	l.released = true
	l.mu.Unlock()
	if released {
		return nil
	}
	err := l.s.request(context.WithoutCancel(ctx), func(ctx context.Context) error {
		_, err := l.s.cli.Txn(ctx).If(l.cmp()).Then(clientv3.OpDelete(l.key)).Commit()
		return err
	})
	l.markLost(fmt.Errorf("%w: released", ErrLockLost))
	l.sess.hold(-1)
	if err != nil {
		// The key may still be there: let its lease go, so that it
		// expires after its TTL even while this store stays open.
		l.sess.abandon(fmt.Errorf("%w: its release failed", ErrLockLost))
		return fmt.Errorf("etcd: release the lock of %s: %w (its lease expires within %s)", l.env, err, l.ttl)
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
