package etcdstate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A session is the lease an environment's lock keys are attached to. One
// is granted per environment and store, kept alive while the store is
// open, and reused by every lock of that environment the store takes: a
// lock then costs one transaction (and its release one more), not a
// lease grant before and a revocation after. It is granted ahead of the
// lock when the caller knows a lock is coming (Store.Prepare).
//
// The session tracks until when its lease is surely valid, for fencing:
// the send time of the last acknowledged grant or renewal plus the TTL.
type session struct {
	s     *Store
	env   string
	ready chan struct{} // closed once the grant answered
	// Set before ready is closed.
	lease clientv3.LeaseID
	ttl   time.Duration
	err   error

	mu         sync.Mutex
	validUntil time.Time
	lost       error
	changed    chan struct{} // closed and replaced on every change of validUntil or lost
	locks      int           // locks held on this lease
	cancel     context.CancelFunc
	done       chan struct{} // closed when keepAlive returns
}

// Prepare starts granting the lease that env's lock will be attached to,
// so that a later AcquireLock of env needs one round trip to etcd. It
// does not wait; a failed grant is reported (and tried again) by
// AcquireLock.
func (s *Store) Prepare(env string) {
	s.sessionFor(env)
}

// releaseLater releases l in the background. A later AcquireLock of the
// same environment from this store, and Close, wait until it is done.
func (s *Store) releaseLater(l *Lock) {
	done := make(chan struct{})
	s.mu.Lock()
	prev := s.releasing[l.env]
	s.releasing[l.env] = done
	s.mu.Unlock()
	go func() {
		defer close(done)
		if prev != nil {
			<-prev
		}
		_ = l.Release(context.Background())
	}()
}

// released waits until the background releases of env's locks are done.
func (s *Store) released(ctx context.Context, env string) error {
	s.mu.Lock()
	done := s.releasing[env]
	s.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("etcd: wait for this process's release of the lock of %s: %w", env, ctx.Err())
	}
}

// sessionFor returns env's live or pending session, starting a grant
// when there is none (or the last one is over).
func (s *Store) sessionFor(env string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss := s.sessions[env]; ss != nil && !ss.over() {
		return ss
	}
	ss := &session{s: s, env: env, ready: make(chan struct{}), changed: make(chan struct{}), done: make(chan struct{})}
	s.sessions[env] = ss
	go ss.grant()
	return ss
}

// over reports whether a session can no longer hold a lock: its grant
// failed or its lease is gone.
func (ss *session) over() bool {
	select {
	case <-ss.ready:
	default:
		return false
	}
	if ss.err != nil {
		return true
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.lost != nil
}

// grant asks etcd for the lease and, once granted, keeps it alive until
// the store closes or the lease is gone.
func (ss *session) grant() {
	s := ss.s
	ttl := s.cfg.Lease
	sent := time.Now()
	var grant *clientv3.LeaseGrantResponse
	err := s.request(s.ctx, func(ctx context.Context) (err error) {
		grant, err = s.cli.Grant(ctx, int64(ttl/time.Second))
		return err
	})
	if err != nil {
		ss.err = fmt.Errorf("etcd: grant the lease of the lock of %s: %w", ss.env, err)
		close(ss.done)
		close(ss.ready)
		return
	}
	ss.lease, ss.ttl = grant.ID, time.Duration(grant.TTL)*time.Second
	ss.validUntil = sent.Add(ss.ttl)
	kctx, cancel := context.WithCancel(s.ctx)
	ss.cancel = cancel
	close(ss.ready)
	ss.keepAlive(kctx)
}

// wait waits for the grant's answer.
func (ss *session) wait(ctx context.Context) error {
	select {
	case <-ss.ready:
		return ss.err
	case <-ctx.Done():
		return fmt.Errorf("etcd: grant the lease of the lock of %s: %w", ss.env, ctx.Err())
	}
}

// keepAlive renews the lease every third of its TTL. A renewal answered
// "not found" means the lease is gone for good.
func (ss *session) keepAlive(ctx context.Context) {
	defer close(ss.done)
	every := ss.ttl / 3
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
		resp, err := ss.s.cli.KeepAliveOnce(actx, ss.lease)
		cancel()
		switch {
		case err == nil && resp.TTL > 0:
			ss.update(sent.Add(time.Duration(resp.TTL)*time.Second), nil)
		case errors.Is(err, rpctypes.ErrLeaseNotFound) || (err == nil && resp.TTL <= 0):
			ss.update(time.Time{}, fmt.Errorf("%w: its lease %x expired in etcd (this controller was cut off from etcd for longer than %s, or the lock was broken)", ErrLockLost, int64(ss.lease), ss.ttl))
			return
		}
	}
}

func (ss *session) update(until time.Time, lost error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.lost != nil {
		return
	}
	ss.validUntil, ss.lost = until, lost
	close(ss.changed)
	ss.changed = make(chan struct{})
}

// abandon stops renewing the lease and revokes it if etcd answers (else
// it expires after its TTL); the environment's next lock gets a new one.
func (ss *session) abandon(why error) {
	ss.update(time.Time{}, why)
	ss.cancel()
	ss.s.revoke(ss.lease)
}

// state returns the session's validity, loss and change channel.
func (ss *session) state() (time.Time, error, <-chan struct{}) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.validUntil, ss.lost, ss.changed
}

func (ss *session) hold(n int) {
	ss.mu.Lock()
	ss.locks += n
	ss.mu.Unlock()
}

// close stops renewing the lease and, when no lock is held on it, revokes
// it (a lock still held stays until its lease expires, as if this
// controller had died).
func (s *Store) closeSessions() {
	s.mu.Lock()
	releasing := s.releasing
	s.mu.Unlock()
	for _, done := range releasing {
		<-done
	}
	s.mu.Lock()
	sessions := s.sessions
	s.sessions = map[string]*session{}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, ss := range sessions {
		select {
		case <-ss.ready:
		default:
			continue // the grant's answer is dropped with the store's context
		}
		if ss.err != nil {
			continue
		}
		ss.mu.Lock()
		idle := ss.locks == 0 && ss.lost == nil
		ss.mu.Unlock()
		ss.cancel()
		<-ss.done
		if idle {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.revoke(ss.lease)
			}()
		}
	}
	wg.Wait()
}
