package engine_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"flightdeck/engine"
)

// recordingState is the file state whose run journals also record each
// write's events, so that a test sees how events were grouped into writes.
type recordingState struct {
	engine.FileState
	mu     sync.Mutex
	writes [][]engine.Event
}

func (s *recordingState) AcquireLock(ctx context.Context, env string, info engine.LockInfo) (engine.HeldLock, error) {
	l, err := s.FileState.AcquireLock(ctx, env, info)
	if err != nil {
		return nil, err
	}
	return recordingLock{HeldLock: l, s: s}, nil
}

type recordingLock struct {
	engine.HeldLock
	s *recordingState
}

func (l recordingLock) OpenJournal(ctx context.Context, run string) (engine.RunJournal, error) {
	j, err := l.HeldLock.OpenJournal(ctx, run)
	if err != nil {
		return nil, err
	}
	return recordingJournal{RunJournal: j, s: l.s}, nil
}

type recordingJournal struct {
	engine.RunJournal
	s *recordingState
}

func (j recordingJournal) Append(ctx context.Context, evs ...engine.Event) error {
	if err := j.RunJournal.Append(ctx, evs...); err != nil {
		return err
	}
	j.s.mu.Lock()
	j.s.writes = append(j.s.writes, slices.Clone(evs))
	j.s.mu.Unlock()
	return nil
}

// progressHost reports some progress of its own before each prepare.
type progressHost struct {
	engine.Host
	reports int
}

func (h progressHost) Prepare(ctx context.Context, a *engine.Artifact, progress func(engine.Progress)) error {
	for i := range h.reports {
		progress(engine.Progress{FilesDone: i, FilesTotal: h.reports})
	}
	return h.Host.Prepare(ctx, a, progress)
}

// isProgress: a host's preparing phase, with its counts or without.
func isProgress(e engine.Event) bool {
	return e.Type == engine.EvHostPhase && e.Phase == engine.PhasePreparing
}

// TestProgressIsJournaledWithTheNextWrite: a prepare's progress decides
// nothing, so it waits for the run's next journal write instead of being
// a write of its own (to etcd, each write is a replicated, fsynced
// transaction); it is still journaled, in order, before its host's
// prepared phase, and published only once journaled.
func TestProgressIsJournaledWithTheNextWrite(t *testing.T) {
	f := newFleet(t, 8, "")
	for i, h := range f.hosts {
		f.hosts[i] = progressHost{Host: h, reports: 3}
	}
	rs := &recordingState{FileState: engine.FileState{Dir: f.stateDir}}
	e := f.engine()
	e.State = rs
	// The clock stands still: progress is never due to be written alone.
	frozen := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	e.Now = func() time.Time { return frozen }
	sub := f.hub.Subscribe(4096)
	defer sub.Close()
	st, err := e.Deploy(context.Background(), owner, f.build("r1"), "test")
	if err != nil || st.Outcome != engine.OutcomeSucceeded {
		t.Fatalf("deploy: %v, outcome %s", err, st.Outcome)
	}
	f.assertAllOn("r1")

	rs.mu.Lock()
	defer rs.mu.Unlock()
	var all []engine.Event
	for i, w := range rs.writes {
		if !slices.ContainsFunc(w, func(e engine.Event) bool { return !isProgress(e) }) {
			t.Errorf("write %d of %d holds only progress: %d events", i+1, len(rs.writes), len(w))
		}
		all = append(all, w...)
	}
	for _, h := range f.hosts {
		var seen []int
		prepared := false
		for _, e := range all {
			if e.Host != h.Name() {
				continue
			}
			switch {
			case isProgress(e) && e.Progress != nil:
				if prepared {
					t.Errorf("host %s: progress journaled after its prepared phase", h.Name())
				}
				seen = append(seen, e.Progress.FilesDone)
			case e.Type == engine.EvHostPhase && e.Phase == engine.PhasePrepared:
				prepared = true
			}
		}
		// The host's own reports come first, then the local target's.
		if len(seen) < 3 || !slices.Equal(seen[:3], []int{0, 1, 2}) {
			t.Errorf("host %s: progress journaled as %v, want 0, 1, 2 first", h.Name(), seen)
		}
	}
	// Nothing was published that the journal does not hold, in its order.
	journaled := map[uint64]bool{}
	for _, e := range all {
		journaled[e.Seq] = true
	}
	var last uint64
	published, lost := sub.Drain()
	if lost > 0 {
		t.Fatalf("the subscription lost %d events", lost)
	}
	for _, e := range published {
		if e.Seq <= last || !journaled[e.Seq] {
			t.Fatalf("published event %d (%s) after %d: journaled %v", e.Seq, e.Type, last, journaled[e.Seq])
		}
		last = e.Seq
	}
}
