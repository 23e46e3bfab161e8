package etcdstate

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"flightdeck/engine"
	"flightdeck/targets/etcdstate/etcdtest"
)

// TestKillLeaderLosesNothing appends a run's events batch after batch while
// the etcd leader is killed: every append returns committed, and the
// journal (and a follower in another client) holds every event exactly
// once, in order.
func TestKillLeaderLosesNothing(t *testing.T) {
	c := cluster(t)
	s, f := open(t, c.Endpoints()), open(t, c.Endpoints())
	ctx := ctxT(t, 60*time.Second)
	l, err := s.AcquireLock(ctx, "production", info("alice"))
	if err != nil {
		t.Fatal(err)
	}
	run := "production-20260501T120000-kill"
	evs := runEvents(run, 300, true)
	j, err := s.OpenJournal(ctx, run, l)
	if err != nil {
		t.Fatal(err)
	}
	followed := make(chan []engine.Event, 1)
	go func() {
		var all []engine.Event
		if err := f.Follow(ctx, run, 0, func(b []engine.Event) error { all = append(all, b...); return nil }); err != nil {
			t.Error(err)
		}
		followed <- all
	}()
	killed := false
	for i := 0; i < len(evs); i += 3 {
		if i == 150 {
			leader := c.Leader(t)
			c.Members[leader].Kill()
			killed = true
			t.Logf("killed leader %s after %d events", c.Members[leader].Name, i)
		}
		if err := j.Append(ctx, evs[i:min(i+3, len(evs))]...); err != nil {
			t.Fatalf("append at %d: %v", i, err)
		}
		if killed && i == 153 {
			// The cluster elected another leader; the lock is still ours.
			if err := l.Fence(ctx); err != nil {
				t.Fatalf("fence after the leader died: %v", err)
			}
		}
	}
	got, err := s.ReadJournal(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, got, len(evs))
	checkSeqs(t, <-followed, len(evs))
}

// TestQuorumLossPausesUntilMembersReturn stops two of three members: a
// journal write waits (reporting the stall) instead of failing, the lock
// cannot be confirmed, and both go on once the members are back, with
// the lock still held and nothing written twice.
func TestQuorumLossPausesUntilMembersReturn(t *testing.T) {
	c := cluster(t)
	st := newStalls()
	s := open(t, c.Endpoints(), func(c *Config) { c.OnStall = st.on; c.RequestTimeout = time.Second })
	ctx := ctxT(t, 90*time.Second)
	l, err := s.AcquireLock(ctx, "production", info("alice"))
	if err != nil {
		t.Fatal(err)
	}
	run := "production-20260501T120000-quorum"
	evs := runEvents(run, 10, true)
	j, _ := s.OpenJournal(ctx, run, l)
	if err := j.Append(ctx, evs[:5]...); err != nil {
		t.Fatal(err)
	}
	leader := c.Leader(t)
	stopped := []*etcdtest.Member{c.Members[(leader+1)%3], c.Members[(leader+2)%3]}
	for _, m := range stopped {
		m.Stop()
	}
	done := make(chan error, 1)
	go func() { done <- j.Append(ctx, evs[5:8]...) }()
	first := st.next(t, 20*time.Second)
	if first.Over || first.Err == nil {
		t.Fatalf("first stall report: %+v", first)
	}
	t.Logf("stalled: %s: %v", first.What, first.Err)
	// The lease cannot be renewed without a quorum: within its TTL the
	// holder no longer trusts it, and a fence waits.
	deadline := time.Now().Add(3 * l.TTL())
	for l.Check() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the lease still looks confirmed without a quorum")
		}
		time.Sleep(20 * time.Millisecond) // polls a clock-driven condition
	}
	fenceErr := make(chan error, 1)
	go func() { fenceErr <- l.Fence(ctx) }()
	select {
	case err := <-done:
		t.Fatalf("append returned without a quorum: %v", err)
	case err := <-fenceErr:
		t.Fatalf("fence passed without a quorum: %v", err)
	case <-time.After(2 * l.TTL()):
		// Longer than the lease: a controller on its own would have lost it.
	}
	if err := l.Check(); err == nil || errors.Is(err, ErrLockLost) {
		t.Fatalf("Check without a quorum = %v, want an unconfirmed lease", err)
	}
	for _, m := range stopped {
		m.Restart(t)
	}
	if err := <-done; err != nil {
		t.Fatalf("append after the members returned: %v", err)
	}
	if err := <-fenceErr; err != nil {
		t.Fatalf("fence after the members returned: %v (etcd renews leases when a leader is elected)", err)
	}
	if err := j.Append(ctx, evs[8:]...); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadJournal(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, got, len(evs))
	over := false
	st.mu.Lock()
	for _, r := range st.list {
		over = over || (r.Over && r.Err == nil)
	}
	st.mu.Unlock()
	if !over {
		t.Error("the end of the stall was not reported")
	}
}

// TestPartitionedHolderLosesTheLock cuts a controller's connection to etcd
// (through proxies). Before its lease can expire in etcd, its fence
// refuses; a second controller takes the lock once the lease expired;
// when the first one's network heals, it learns it lost the lock and can
// journal nothing more.
func TestPartitionedHolderLosesTheLock(t *testing.T) {
	c := cluster(t)
	var proxies []*etcdtest.Proxy
	var via []string
	for _, ep := range c.Endpoints() {
		p := etcdtest.NewProxy(t, ep)
		proxies = append(proxies, p)
		via = append(via, p.Addr)
	}
	a := open(t, via, func(c *Config) { c.RequestTimeout = 500 * time.Millisecond })
	b := open(t, c.Endpoints())
	ctx := ctxT(t, 60*time.Second)
	la, err := a.AcquireLock(ctx, "production", info("alice"))
	if err != nil {
		t.Fatal(err)
	}
	run := "production-20260501T120000-part"
	evs := runEvents(run, 6, true)
	ja, _ := a.OpenJournal(ctx, run, la)
	if err := ja.Append(ctx, evs[:3]...); err != nil {
		t.Fatal(err)
	}
	w := b.cli.Watch(ctx, b.lockKey("production"))
	cut := time.Now()
	for _, p := range proxies {
		p.Cut()
	}
	// The partitioned holder stops trusting its lease before etcd expires it.
	fenced := make(chan time.Time, 1)
	go func() {
		for la.Check() == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
		fenced <- time.Now()
	}()
	waitDeleted(t, w)
	expired := time.Now()
	var fencedAt time.Time
	select {
	case fencedAt = <-fenced:
	default:
		t.Fatalf("the lease expired in etcd %s after the cut, but the holder still trusted it", expired.Sub(cut))
	}
	t.Logf("cut → holder stops trusting its lease %s; → etcd expires it %s", fencedAt.Sub(cut).Round(time.Millisecond), expired.Sub(cut).Round(time.Millisecond))
	lb, err := b.AcquireLock(ctx, "production", info("bob"))
	if err != nil {
		t.Fatalf("takeover: %v", err)
	}
	defer lb.Release(ctx)
	jb, err := b.OpenJournal(ctx, run, lb)
	if err != nil {
		t.Fatal(err)
	}
	resumed := engine.Event{Seq: 4, Time: time.Now(), Run: run, Type: engine.EvRunResumed, Actor: "bob"}
	if err := jb.Append(ctx, resumed); err != nil {
		t.Fatal(err)
	}
	for _, p := range proxies {
		p.Heal()
	}
	if err := la.Fence(ctx); !errors.Is(err, ErrLockLost) {
		t.Errorf("fence of the old holder after healing: %v, want ErrLockLost", err)
	}
	if err := ja.Append(ctx, evs[3:]...); !errors.Is(err, ErrLockLost) {
		t.Errorf("append of the old holder after healing: %v, want ErrLockLost", err)
	}
	got, _ := b.ReadJournal(ctx, run)
	if len(got) != 4 || got[3].Actor != "bob" {
		t.Errorf("journal after takeover: %s", seqs(got))
	}
}

func seqs(evs []engine.Event) string {
	s := ""
	for _, e := range evs {
		s += fmt.Sprintf("%d:%s/%s ", e.Seq, e.Type, e.Actor)
	}
	return s
}
