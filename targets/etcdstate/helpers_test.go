package etcdstate

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"flightdeck/engine"
	"flightdeck/targets/etcdstate/etcdtest"
)

// open opens a store on endpoints under a prefix of the test's own.
func open(t *testing.T, eps []string, mod ...func(*Config)) *Store {
	t.Helper()
	cfg := Config{Endpoints: eps, Prefix: "/t/" + strings.ReplaceAll(t.Name(), "/", "_"), Lease: 2 * time.Second}
	for _, m := range mod {
		m(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func info(owner string) engine.LockInfo {
	return engine.LockInfo{Owner: owner, PID: 4242, Host: "laptop-" + owner, Started: time.Now().Add(-3 * time.Second), Command: "flightdeck deploy"}
}

// runEvents makes a run: RunStarted, n HostPhase events, and RunFinished
// when finished.
func runEvents(run string, n int, finished bool) []engine.Event {
	return runEventsAt(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC), run, n, finished)
}

func runEventsAt(t0 time.Time, run string, n int, finished bool) []engine.Event {
	evs := []engine.Event{{Seq: 1, Time: t0, Run: run, Type: engine.EvRunStarted, Actor: "alice",
		Start: &engine.RunInfo{Kind: engine.KindDeploy, App: "shop", Env: "production", Strategy: "rolling", Release: "r2", Previous: "r1",
			Hosts: []engine.RunHost{{Name: "web-1", Current: "r1"}}}}}
	for i := range n {
		evs = append(evs, engine.Event{Seq: uint64(i + 2), Time: t0.Add(time.Duration(i+1) * time.Millisecond), Run: run,
			Type: engine.EvHostPhase, Host: "web-1", Phase: engine.PhasePreparing, Message: fmt.Sprintf("step %d", i)})
	}
	if finished {
		evs = append(evs, engine.Event{Seq: uint64(n + 2), Time: t0.Add(time.Second), Run: run, Type: engine.EvRunFinished,
			Outcome: engine.OutcomeSucceeded, Release: "r2"})
	}
	return evs
}

// checkSeqs fails unless evs are numbered 1..n exactly once, in order.
func checkSeqs(t *testing.T, evs []engine.Event, n int) {
	t.Helper()
	if len(evs) != n {
		t.Fatalf("%d events, want %d", len(evs), n)
	}
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d: lost, duplicated or out of order", i, e.Seq)
		}
	}
}

// stalls records OnStall reports.
type stalls struct {
	mu   sync.Mutex
	list []Stall
	ch   chan Stall
}

func newStalls() *stalls { return &stalls{ch: make(chan Stall, 64)} }

func (s *stalls) on(st Stall) {
	s.mu.Lock()
	s.list = append(s.list, st)
	s.mu.Unlock()
	select {
	case s.ch <- st:
	default:
	}
}

// next waits for the next report.
func (s *stalls) next(t *testing.T, d time.Duration) Stall {
	t.Helper()
	select {
	case st := <-s.ch:
		return st
	case <-time.After(d):
		t.Fatalf("no stall reported within %s", d)
		return Stall{}
	}
}

// cluster starts a 3-member cluster.
func cluster(t *testing.T) *etcdtest.Cluster { return etcdtest.Start(t, 3) }
