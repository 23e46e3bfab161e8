package etcdstate

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"flightdeck/engine"
)

// leaseAlive reports whether etcd still has the lease.
func leaseAlive(t *testing.T, cli *clientv3.Client, id int64) bool {
	t.Helper()
	resp, err := cli.TimeToLive(ctxT(t, 10*time.Second), clientv3.LeaseID(id))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return false
	}
	if err != nil {
		t.Fatalf("lease %x: %v", id, err)
	}
	return resp.TTL > 0
}

func leaseIDs(t *testing.T, cli *clientv3.Client) []int64 {
	t.Helper()
	resp, err := cli.Leases(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, l := range resp.Leases {
		ids = append(ids, int64(l.ID))
	}
	return ids
}

func TestLockSession(t *testing.T) {
	c := cluster(t)
	eps := c.Endpoints()
	cli := c.Client(t)

	t.Run("the locks of one store share a lease that outlives each lock and ends with the store", func(t *testing.T) {
		s := open(t, eps)
		ctx := ctxT(t, 20*time.Second)
		l1, err := s.AcquireLock(ctx, "production", info("alice"))
		if err != nil {
			t.Fatal(err)
		}
		lease := l1.Holder().Lease
		if err := l1.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if h, err := s.ReadLock(ctx, "production"); err != nil || h != nil {
			t.Fatalf("after release: %+v, %v", h, err)
		}
		if !leaseAlive(t, cli, lease) {
			t.Fatal("the lease was revoked with the lock: the next lock would need a grant")
		}
		if err := l1.Fence(ctx); !errors.Is(err, ErrLockLost) {
			t.Errorf("fence of a released lock: %v, want ErrLockLost", err)
		}
		l2, err := s.AcquireLock(ctx, "production", info("alice"))
		if err != nil {
			t.Fatal(err)
		}
		if l2.Holder().Lease != lease || l2.Revision() <= l1.Revision() {
			t.Errorf("second lock: lease %x rev %d, first: lease %x rev %d; want the same lease and a new revision",
				l2.Holder().Lease, l2.Revision(), lease, l1.Revision())
		}
		if err := l2.Release(ctx); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if leaseAlive(t, cli, lease) {
			t.Error("a store closed with no lock held left its lease to expire instead of revoking it")
		}
	})

	t.Run("Prepare grants the lease that the next lock uses, once", func(t *testing.T) {
		s := open(t, eps)
		ctx := ctxT(t, 20*time.Second)
		before := leaseIDs(t, cli)
		s.Prepare("staging")
		s.Prepare("staging")
		l, err := s.AcquireLock(ctx, "staging", info("alice"))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release(ctx)
		var added []int64
		for _, id := range leaseIDs(t, cli) {
			if !slices.Contains(before, id) {
				added = append(added, id)
			}
		}
		if len(added) != 1 || added[0] != l.Holder().Lease {
			t.Errorf("leases granted: %x, lock's lease %x; want exactly the lock's", added, l.Holder().Lease)
		}
	})

	t.Run("a lease revoked behind the store's back is replaced at the next lock", func(t *testing.T) {
		a, b := open(t, eps), open(t, eps)
		ctx := ctxT(t, 20*time.Second)
		la, err := a.AcquireLock(ctx, "canary", info("alice"))
		if err != nil {
			t.Fatal(err)
		}
		old := la.Holder().Lease
		if _, err := b.BreakLock(ctx, "canary", engine.Actor{Name: "carol"}, "test"); err != nil {
			t.Fatal(err)
		}
		la.Release(ctx)
		l, err := a.AcquireLock(ctx, "canary", info("alice"))
		if err != nil {
			t.Fatalf("lock after the store's lease was revoked: %v", err)
		}
		defer l.Release(ctx)
		if l.Holder().Lease == old || !leaseAlive(t, cli, l.Holder().Lease) {
			t.Errorf("new lock on lease %x (old %x)", l.Holder().Lease, old)
		}
		if err := l.Fence(ctx); err != nil {
			t.Errorf("fence of the new lock: %v", err)
		}
	})

	t.Run("a run's release of its lock is waited for by the next lock and by Close", func(t *testing.T) {
		s, other := open(t, eps), open(t, eps)
		ctx := ctxT(t, 20*time.Second)
		be := Backend{Store: s}
		for range 3 {
			l, err := be.AcquireLock(ctx, "production", info("alice"))
			if err != nil {
				t.Fatalf("lock right after this store's release: %v", err)
			}
			if err := l.Release(); err != nil {
				t.Fatal(err)
			}
		}
		l, err := be.AcquireLock(ctx, "production", info("alice"))
		if err != nil {
			t.Fatal(err)
		}
		l.Release()
		s.Close()
		if h, err := other.ReadLock(ctx, "production"); err != nil || h != nil {
			t.Fatalf("after Close: lock %+v, %v; want released", h, err)
		}
	})

	t.Run("the runs are read with the lock, once", func(t *testing.T) {
		s := open(t, eps)
		ctx := ctxT(t, 20*time.Second)
		for i, finished := range []bool{true, false} {
			run := fmt.Sprintf("production-20260501T12000%d-run", i)
			j, err := s.OpenJournal(ctx, run, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := j.Append(ctx, runEventsAt(time.Date(2026, 5, 1, 12, 0, i, 0, time.UTC), run, 3, finished)...); err != nil {
				t.Fatal(err)
			}
		}
		want, err := s.ListRuns(ctx)
		if err != nil || len(want) != 2 {
			t.Fatalf("ListRuns = %+v, %v", want, err)
		}
		l, err := Backend{Store: s}.AcquireLock(ctx, "production", info("alice"))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release()
		rl := l.(engine.RunsAtLock)
		got, ok, err := rl.RunsAtLock(ctx)
		if err != nil || !ok || !reflect.DeepEqual(got, want) {
			t.Fatalf("RunsAtLock = %+v, %t, %v; want %+v", got, ok, err, want)
		}
		if got[1].Status == engine.StatusFinished || got[1].Events != 4 {
			t.Errorf("the unfinished run: %+v", got[1])
		}
		if _, ok, _ := rl.RunsAtLock(ctx); ok {
			t.Error("RunsAtLock answered twice: a later caller would read runs as old as the lock")
		}
	})

	t.Run("the journal of the lock's run is read with the lock", func(t *testing.T) {
		s := open(t, eps)
		ctx := ctxT(t, 30*time.Second)
		// 10 keys fit in the lock's answer; 300 do not (read again).
		for _, n := range []int{0, 10, 300} {
			run := "production-20260501T120000-p" + string(rune('a'+n%26))
			evs := runEvents(run, n, true)
			if n > 0 {
				j, err := s.OpenJournal(ctx, run, nil)
				if err != nil {
					t.Fatal(err)
				}
				for i := range n {
					if err := j.Append(ctx, evs[i]); err != nil {
						t.Fatal(err)
					}
				}
			}
			in := info("alice")
			in.Run = run
			l, err := s.AcquireLock(ctx, "production", in)
			if err != nil {
				t.Fatal(err)
			}
			j, err := s.OpenJournal(ctx, run, l)
			if err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				if err := j.Append(ctx, evs[n-1]); err == nil {
					t.Errorf("%d keys: event %d appended again", n, evs[n-1].Seq)
				}
			}
			if err := j.Append(ctx, evs[n:]...); err != nil {
				t.Fatalf("%d keys: %v", n, err)
			}
			got, err := s.ReadJournal(ctx, run)
			if err != nil {
				t.Fatal(err)
			}
			checkSeqs(t, got, n+2)
			runs, err := s.ListRuns(ctx)
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(runs, func(r engine.RunSummary) bool { return r.Run == run })
			if i < 0 || runs[i].Events != n+2 {
				t.Errorf("%d keys: summary %+v, want %d events", n, runs, n+2)
			}
			if err := l.Release(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestDeployReadsRunsWithTheLock: a deploy on etcd asks for the runs in
// the transaction that takes its lock, not in a request of its own.
func TestDeployReadsRunsWithTheLock(t *testing.T) {
	f := newBenchFleet(t, cluster(t))
	for i := range 2 {
		f.deploy(i)
	}
	f.timed.mu.Lock()
	defer f.timed.mu.Unlock()
	if n, m := f.timed.n["list"], f.timed.n["list-at-lock"]; n != 0 || m != 2 {
		t.Errorf("two deploys listed the runs %d times on their own and %d times with the lock; want 0 and 2", n, m)
	}
	runs, err := f.store.ListRuns(context.Background())
	if err != nil || len(runs) != 2 || runs[1].Status != engine.StatusFinished || runs[1].Outcome != engine.OutcomeSucceeded {
		t.Fatalf("runs = %+v, %v", runs, err)
	}
}
