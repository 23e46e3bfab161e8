package etcdstate

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"flightdeck/engine"
	"flightdeck/targets/etcdstate/etcdtest"
)

// TestStore runs the lock, journal, follow and push behaviours against one
// real 3-member cluster, each under its own prefix.
func TestStore(t *testing.T) {
	c := cluster(t)
	eps := c.Endpoints()

	t.Run("lock is exclusive and names its holder", func(t *testing.T) {
		a, b := open(t, eps), open(t, eps)
		ctx := ctxT(t, 20*time.Second)
		la, err := a.AcquireLock(ctx, "production", info("alice"))
		if err != nil {
			t.Fatal(err)
		}
		if err := la.SetRun(ctx, "production-20260501T120000-abc"); err != nil {
			t.Fatal(err)
		}
		_, err = b.AcquireLock(ctx, "production", info("bob"))
		var held *HeldError
		if !errors.As(err, &held) {
			t.Fatalf("second acquire: %v, want *HeldError", err)
		}
		var lh *engine.LockHeldError
		if !errors.As(err, &lh) || lh.Info.Owner != "alice" {
			t.Fatalf("not an engine.LockHeldError naming alice: %v", err)
		}
		for _, want := range []string{"alice", "laptop-alice", "production-20260501T120000-abc", "for 3s", "2s after"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%q does not name %q", err, want)
			}
		}
		h, err := b.ReadLock(ctx, "production")
		if err != nil || h == nil || h.Run != "production-20260501T120000-abc" || h.Lease == 0 {
			t.Fatalf("ReadLock = %+v, %v", h, err)
		}
		// Other environments are independent.
		ls, err := b.AcquireLock(ctx, "staging", info("bob"))
		if err != nil {
			t.Fatal(err)
		}
		if err := ls.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if err := la.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if h, err := b.ReadLock(ctx, "production"); err != nil || h != nil {
			t.Fatalf("after release: %+v, %v", h, err)
		}
		lb, err := b.AcquireLock(ctx, "production", info("bob"))
		if err != nil {
			t.Fatalf("acquire after release: %v", err)
		}
		lb.Release(ctx)
	})

	t.Run("a dead controller's lock frees itself after the lease", func(t *testing.T) {
		a, b := open(t, eps), open(t, eps)
		ctx := ctxT(t, 20*time.Second)
		if _, err := a.AcquireLock(ctx, "production", info("alice")); err != nil {
			t.Fatal(err)
		}
		// The controller dies: its connection closes, nobody releases.
		w := b.cli.Watch(ctx, b.lockKey("production"))
		a.Close()
		var heldErr *HeldError
		if _, err := b.AcquireLock(ctx, "production", info("bob")); !errors.As(err, &heldErr) {
			t.Fatalf("right after the holder died: %v, want held until its lease expires", err)
		}
		start := time.Now()
		waitDeleted(t, w)
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("lock freed after %s; its lease is 2s", d)
		}
		l, err := b.AcquireLock(ctx, "production", info("bob"))
		if err != nil {
			t.Fatalf("after the lease expired: %v", err)
		}
		l.Release(ctx)
	})

	t.Run("journal commits in order, one key per append", func(t *testing.T) {
		s := open(t, eps)
		ctx := ctxT(t, 20*time.Second)
		l, err := s.AcquireLock(ctx, "production", info("alice"))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release(ctx)
		run := "production-20260501T120000-aaa"
		evs := runEvents(run, 40, true)
		j, err := s.OpenJournal(ctx, run, l)
		if err != nil {
			t.Fatal(err)
		}
		// Batches of 1, 5 and 30 events, then the rest.
		for _, b := range [][2]int{{0, 1}, {1, 6}, {6, 36}, {36, len(evs)}} {
			if err := j.Append(ctx, evs[b[0]:b[1]]...); err != nil {
				t.Fatal(err)
			}
		}
		if err := j.Append(ctx, evs[3]); err == nil {
			t.Fatal("an event with an old seq was appended")
		}
		keys, err := s.cli.Get(ctx, s.journalPrefix(run), clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			t.Fatal(err)
		}
		if len(keys.Kvs) != 4 {
			t.Errorf("%d journal keys for 4 appends (group commit)", len(keys.Kvs))
		}
		got, err := s.ReadJournal(ctx, run)
		if err != nil {
			t.Fatal(err)
		}
		checkSeqs(t, got, len(evs))
		if got[5].Message != evs[5].Message || !got[0].Time.Equal(evs[0].Time) || got[0].Start.Release != "r2" {
			t.Errorf("events changed on the way: %+v", got[5])
		}
		runs, err := s.ListRuns(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) != 1 || runs[0].Run != run || runs[0].Status != "finished" || runs[0].Events != len(evs) ||
			runs[0].Outcome != engine.OutcomeSucceeded || runs[0].Release != "r2" || runs[0].Actor != "alice" {
			t.Errorf("ListRuns = %+v", runs)
		}
		if _, err := s.ReadJournal(ctx, "no-such-run"); err == nil || !strings.Contains(err.Error(), "no run no-such-run") {
			t.Errorf("unknown run: %v", err)
		}
	})

	t.Run("an unfinished run is listed as such and resumed after its events", func(t *testing.T) {
		s := open(t, eps)
		ctx := ctxT(t, 20*time.Second)
		run := "production-20260501T120000-bbb"
		evs := runEvents(run, 10, true)
		j, _ := s.OpenJournal(ctx, run, nil)
		if err := j.Append(ctx, evs[:6]...); err != nil {
			t.Fatal(err)
		}
		runs, err := s.ListRuns(ctx)
		if err != nil || len(runs) != 1 || runs[0].Status != "unfinished" || runs[0].Events != 6 {
			t.Fatalf("ListRuns = %+v, %v", runs, err)
		}
		j2, err := s.OpenJournal(ctx, run, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := j2.Append(ctx, evs[5]); err == nil {
			t.Fatal("the reopened journal accepted a seq it already has")
		}
		if err := j2.Append(ctx, evs[6:]...); err != nil {
			t.Fatal(err)
		}
		runs, _ = s.ListRuns(ctx)
		if runs[0].Status != "finished" || runs[0].Events != len(evs) {
			t.Errorf("after resume: %+v", runs[0])
		}
	})

	t.Run("two writers of one run conflict instead of interleaving", func(t *testing.T) {
		s := open(t, eps)
		ctx := ctxT(t, 20*time.Second)
		run := "production-20260501T120000-ccc"
		evs := runEvents(run, 4, false)
		j1, _ := s.OpenJournal(ctx, run, nil)
		j2, _ := s.OpenJournal(ctx, run, nil)
		if err := j1.Append(ctx, evs[:3]...); err != nil {
			t.Fatal(err)
		}
		other := evs[0]
		other.Message = "another controller"
		if err := j2.Append(ctx, other); !errors.Is(err, ErrConflict) {
			t.Fatalf("second writer: %v, want ErrConflict", err)
		}
		// The same bytes again (a retried commit) are not a conflict.
		j3, _ := s.OpenJournal(ctx, run, nil)
		j3.last = 0
		if err := j3.Append(ctx, evs[:3]...); err != nil {
			t.Fatalf("re-committing identical events: %v", err)
		}
		got, _ := s.ReadJournal(ctx, run)
		checkSeqs(t, got, 3)
	})

	t.Run("breaking the lock fences its holder and is recorded", func(t *testing.T) {
		a, b := open(t, eps), open(t, eps)
		ctx := ctxT(t, 20*time.Second)
		la, err := a.AcquireLock(ctx, "production", info("alice"))
		if err != nil {
			t.Fatal(err)
		}
		run := "production-20260501T120000-ddd"
		evs := runEvents(run, 4, true)
		j, _ := a.OpenJournal(ctx, run, la)
		if err := j.Append(ctx, evs[:2]...); err != nil {
			t.Fatal(err)
		}
		if err := la.Fence(ctx); err != nil {
			t.Fatalf("fence while held: %v", err)
		}
		rec, err := b.BreakLock(ctx, "production", engine.Actor{Name: "carol"}, "alice is on leave")
		if err != nil {
			t.Fatal(err)
		}
		if rec.Held.Owner != "alice" || rec.By != "carol" {
			t.Errorf("record = %+v", rec)
		}
		if err := j.Append(ctx, evs[2:]...); !errors.Is(err, ErrLockLost) {
			t.Fatalf("append after the lock was broken: %v, want ErrLockLost", err)
		}
		if err := la.Fence(ctx); !errors.Is(err, ErrLockLost) {
			t.Fatalf("fence after the lock was broken: %v", err)
		}
		got, _ := b.ReadJournal(ctx, run)
		checkSeqs(t, got, 2)
		ul, err := b.Unlocks(ctx, "production")
		if err != nil || len(ul) != 1 || ul[0].By != "carol" || ul[0].Reason != "alice is on leave" || ul[0].Held.Host != "laptop-alice" {
			t.Fatalf("Unlocks = %+v, %v", ul, err)
		}
		if _, err := b.BreakLock(ctx, "production", engine.Actor{Name: "carol"}, ""); !errors.Is(err, ErrNotLocked) {
			t.Errorf("breaking a free lock: %v", err)
		}
		// The lease was revoked, so a new holder gets the lock at once.
		lb, err := b.AcquireLock(ctx, "production", info("bob"))
		if err != nil {
			t.Fatal(err)
		}
		lb.Release(ctx)
	})

	t.Run("a holder whose lock was taken over learns it lost the lock, not of a conflict", func(t *testing.T) {
		a, b := open(t, eps), open(t, eps)
		ctx := ctxT(t, 20*time.Second)
		la, err := a.AcquireLock(ctx, "staging", info("alice"))
		if err != nil {
			t.Fatal(err)
		}
		run := "staging-20260501T120000-fff"
		evs := runEvents(run, 4, true)
		ja, _ := a.OpenJournal(ctx, run, la)
		if err := ja.Append(ctx, evs[:2]...); err != nil {
			t.Fatal(err)
		}
		if _, err := b.BreakLock(ctx, "staging", engine.Actor{Name: "carol"}, "controller unreachable"); err != nil {
			t.Fatal(err)
		}
		lb, err := b.AcquireLock(ctx, "staging", info("bob"))
		if err != nil {
			t.Fatal(err)
		}
		defer lb.Release(ctx)
		jb, err := b.OpenJournal(ctx, run, lb)
		if err != nil {
			t.Fatal(err)
		}
		resumed := evs[2]
		resumed.Message = "resumed by bob"
		if err := jb.Append(ctx, resumed); err != nil {
			t.Fatal(err)
		}
		if err := ja.Append(ctx, evs[2:]...); !errors.Is(err, ErrLockLost) || errors.Is(err, ErrConflict) {
			t.Fatalf("the old holder's next write: %v, want ErrLockLost", err)
		}
	})

	t.Run("follow delivers each event once, live, and ends with the run", func(t *testing.T) {
		s, f := open(t, eps), open(t, eps)
		ctx := ctxT(t, 30*time.Second)
		run := "production-20260501T120000-eee"
		evs := runEvents(run, 100, true)
		j, _ := s.OpenJournal(ctx, run, nil)
		if err := j.Append(ctx, evs[:10]...); err != nil {
			t.Fatal(err)
		}
		got := make(chan []engine.Event, 1)
		firstSeen := make(chan struct{})
		go func() {
			var all []engine.Event
			var once sync.Once
			err := f.Follow(ctx, run, 0, func(b []engine.Event) error {
				all = append(all, b...)
				once.Do(func() { close(firstSeen) })
				return nil
			})
			if err != nil {
				t.Error(err)
			}
			got <- all
		}()
		<-firstSeen // the follower read what was there; the rest comes live
		for i := 10; i < len(evs); i += 7 {
			if err := j.Append(ctx, evs[i:min(i+7, len(evs))]...); err != nil {
				t.Fatal(err)
			}
		}
		checkSeqs(t, <-got, len(evs))
		// A finished run is delivered at once; after skips what was seen.
		var tail []engine.Event
		if err := f.Follow(ctx, run, 95, func(b []engine.Event) error { tail = append(tail, b...); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(tail) != len(evs)-95 || tail[0].Seq != 96 {
			t.Errorf("follow after 95: %d events from %d", len(tail), tail[0].Seq)
		}
	})

	t.Run("next run waits for a run of the environment to start", func(t *testing.T) {
		s, f := open(t, eps), open(t, eps)
		ctx := ctxT(t, 20*time.Second)
		old := "production-20260501T110000-old"
		j, _ := s.OpenJournal(ctx, old, nil)
		if err := j.Append(ctx, runEvents(old, 1, true)...); err != nil {
			t.Fatal(err)
		}
		got := make(chan string, 1)
		go func() {
			id, err := f.NextRun(ctx, "production")
			if err != nil {
				t.Error(err)
			}
			got <- id
		}()
		// A run of another environment does not count.
		other := runEvents("staging-x", 1, false)
		other[0].Start.Env = "staging"
		js, _ := s.OpenJournal(ctx, "staging-x", nil)
		if err := js.Append(ctx, other...); err != nil {
			t.Fatal(err)
		}
		run := "production-20260501T120000-fff"
		j2, _ := s.OpenJournal(ctx, run, nil)
		if err := j2.Append(ctx, runEventsAt(time.Date(2026, 5, 1, 13, 0, 0, 0, time.UTC), run, 1, false)...); err != nil {
			t.Fatal(err)
		}
		if id := <-got; id != run {
			t.Errorf("NextRun = %q, want %q", id, run)
		}
		if id, err := f.NextRun(ctx, "production"); err != nil || id != run {
			t.Errorf("NextRun with a run in progress = %q, %v", id, err)
		}
	})

	t.Run("push copies a local journal once", func(t *testing.T) {
		s := open(t, eps)
		ctx := ctxT(t, 20*time.Second)
		dir := t.TempDir()
		runA, runB := "production-20260501T100000-aaa", "production-20260501T110000-bbb"
		for _, r := range []struct {
			id string
			n  int
		}{{runA, 150}, {runB, 3}} {
			fj, err := engine.OpenJournal(dir, r.id)
			if err != nil {
				t.Fatal(err)
			}
			if err := fj.Append(runEvents(r.id, r.n, r.id == runA)...); err != nil {
				t.Fatal(err)
			}
			fj.Close()
		}
		if err := os.MkdirAll(filepath.Join(dir, "locks"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := engine.RecordUnlock(dir, "production", engine.Actor{Name: "dave"}, info("erin"), "stale"); err != nil {
			t.Fatal(err)
		}
		rep, err := s.Push(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Runs) != 2 || rep.Events != 152+4 || rep.Unlocks != 1 {
			t.Errorf("first push: %+v", rep)
		}
		rep, err = s.Push(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Runs) != 0 || len(rep.Present) != 2 || rep.Events != 0 || rep.Unlocks != 0 {
			t.Errorf("second push copied again: %+v", rep)
		}
		local, _ := engine.ReadJournal(dir, runA)
		remote, err := s.ReadJournal(ctx, runA)
		if err != nil {
			t.Fatal(err)
		}
		checkSeqs(t, remote, len(local))
		runs, _ := s.ListRuns(ctx)
		want, _ := engine.ListRuns(dir)
		if len(runs) != 2 || runs[0].Run != want[0].Run || runs[0].Events != want[0].Events || runs[1].Status != want[1].Status {
			t.Errorf("etcd runs %+v, local %+v", runs, want)
		}
		// The local run goes on (more events): push adds just those.
		fj, _ := engine.OpenJournal(dir, runB)
		more := runEvents(runB, 5, true)[4:]
		if err := fj.Append(more...); err != nil {
			t.Fatal(err)
		}
		fj.Close()
		if rep, err := s.Push(ctx, dir); err != nil || rep.Events != len(more) {
			t.Errorf("push of a grown run: %+v, %v", rep, err)
		}
		// A run that differs in etcd is refused.
		bad := runEvents("production-20260501T130000-ccc", 2, true)
		fj, _ = engine.OpenJournal(dir, bad[0].Run)
		fj.Append(bad...)
		fj.Close()
		bad[1].Message = "not what the local journal says"
		j, _ := s.OpenJournal(ctx, bad[0].Run, nil)
		if err := j.Append(ctx, bad[:2]...); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Push(ctx, dir); !errors.Is(err, ErrConflict) {
			t.Errorf("push over a differing run: %v, want ErrConflict", err)
		}
	})

	t.Run("bad configurations are refused before connecting", func(t *testing.T) {
		for _, cfg := range []Config{
			{},
			{Endpoints: eps, Prefix: "flightdeck"},
			{Endpoints: eps, Prefix: "/flightdeck/"},
			{Endpoints: eps, Lease: time.Second},
			{Endpoints: eps, Lease: 2500 * time.Millisecond},
			{Endpoints: eps, Cert: "c.pem"},
			{Endpoints: eps, Username: "u"},
		} {
			if _, err := Open(context.Background(), cfg); err == nil {
				t.Errorf("Open(%+v) accepted", cfg)
			}
		}
	})
}

// waitDeleted waits for a DELETE on a watched key.
func waitDeleted(t *testing.T, w clientv3.WatchChan) {
	t.Helper()
	for wr := range w {
		if err := wr.Err(); err != nil {
			t.Fatal(err)
		}
		for _, ev := range wr.Events {
			if ev.Type == clientv3.EventTypeDelete {
				return
			}
		}
	}
	t.Fatal("watch ended before the key was deleted")
}

// TestOpenRefusesUnreachableAndBadCredentials checks that Open fails
// clearly, naming the endpoints, when nothing answers or etcd refuses the
// credentials, and works with the right ones (users, and TLS with a
// client certificate).
func TestOpenRefusesUnreachableAndBadCredentials(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	_, err = Open(context.Background(), Config{Endpoints: []string{dead}, DialTimeout: time.Second})
	var ue *UnreachableError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), dead) {
		t.Errorf("unreachable: %v", err)
	}

	c := etcdtest.Start(t, 1)
	c.EnableAuth(t, "rootpw", "deployer", "s3cret")
	eps := c.Endpoints()
	for _, cfg := range []Config{
		{Endpoints: eps, Username: "deployer", Password: "wrong"},
		{Endpoints: eps},
	} {
		_, err := Open(context.Background(), cfg)
		var ae *AuthError
		if !errors.As(err, &ae) || !strings.Contains(err.Error(), eps[0]) {
			t.Errorf("Open(%s/%s): %v, want *AuthError naming the endpoint", cfg.Username, cfg.Password, err)
		}
	}
	s := open(t, eps, func(c *Config) { c.Username, c.Password = "deployer", "s3cret" })
	ctx := ctxT(t, 10*time.Second)
	l, err := s.AcquireLock(ctx, "production", info("alice"))
	if err != nil {
		t.Fatalf("with the right password: %v", err)
	}
	l.Release(ctx)

	files := etcdtest.GenerateTLS(t, t.TempDir(), "deployer")
	files.ClientCertAuth = true
	tc := etcdtest.StartWith(t, 1, etcdtest.Options{TLS: files})
	withCert := func(c *Config) { c.CA, c.Cert, c.Key = files.CA, files.ClientCert, files.ClientKey }
	s = open(t, tc.Endpoints(), withCert)
	if _, err := s.ListRuns(ctx); err != nil {
		t.Fatalf("over TLS: %v", err)
	}
	if _, err := Open(ctx, Config{Endpoints: tc.Endpoints(), CA: files.CA, DialTimeout: 2 * time.Second}); err == nil {
		t.Error("TLS without the client certificate was accepted")
	}
	if _, err := Open(ctx, Config{Endpoints: tc.Endpoints(), DialTimeout: 2 * time.Second}); err == nil {
		t.Error("plain text to a TLS cluster was accepted")
	}
}
