package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHubNeverBlocksAndBoundsSlowSubscribers(t *testing.T) {
	h := NewHub()
	slow := h.Subscribe(100) // never drained while publishing
	fast := h.Subscribe(1 << 20)
	defer slow.Close()
	defer fast.Close()
	const n = 50_000
	for i := range n {
		h.Publish(Event{Seq: uint64(i + 1), Type: EvNotice})
	}
	evs, lost := slow.Drain()
	if len(evs) != 100 || lost != n-100 {
		t.Fatalf("slow subscriber got %d events, lost %d; want the newest 100 and %d lost", len(evs), lost, n-100)
	}
	if evs[0].Seq != n-99 || evs[99].Seq != n {
		t.Fatalf("slow subscriber kept seq %d..%d, want the newest", evs[0].Seq, evs[99].Seq)
	}
	got, lost := fast.Drain()
	if len(got) != n || lost != 0 {
		t.Fatalf("fast subscriber got %d lost %d", len(got), lost)
	}
}

func TestHubTailAndSnapshot(t *testing.T) {
	h := NewHub()
	for i := range TailSize + 10 {
		h.Publish(Event{Seq: uint64(i + 1)})
	}
	s := h.Subscribe(TailSize)
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	evs, _, err := s.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != TailSize || evs[0].Seq != 11 || evs[len(evs)-1].Seq != TailSize+10 {
		t.Fatalf("late subscriber got %d events (%d..%d), want the last %d", len(evs), evs[0].Seq, evs[len(evs)-1].Seq, TailSize)
	}
	st := NewState()
	st.Run = "x"
	h.SetSnapshot(st)
	select {
	case <-s.C():
	case <-ctx.Done():
		t.Fatal("snapshot did not wake the subscriber")
	}
	if h.Snapshot().Run != "x" {
		t.Fatal("snapshot not published")
	}
}

func TestJournalRoundTripAndTornLine(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, "run1")
	if err != nil {
		t.Fatal(err)
	}
	info := &RunInfo{Kind: KindDeploy, Env: "prod", Release: "r2", Previous: "r1", Hosts: []RunHost{{Name: "a", Current: "r1"}}}
	if err := j.Append(Event{Seq: 1, Run: "run1", Type: EvRunStarted, Start: info, Time: t0},
		Event{Seq: 2, Run: "run1", Type: EvHostPhase, Host: "a", Phase: PhaseLive, Release: "r2", Time: t0}); err != nil {
		t.Fatal(err)
	}
	j.Close()
	// The process died in the middle of writing the next line.
	f, err := os.OpenFile(filepath.Join(dir, JournalDir, "run1.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":3,"type":"HostPh`)
	f.Close()
	evs, err := ReadJournal(dir, "run1")
	if err != nil {
		t.Fatalf("a torn last line must be ignored: %v", err)
	}
	if len(evs) != 2 || Fold(evs).Host("a").Current != "r2" {
		t.Fatalf("read %d events", len(evs))
	}
	runs, err := ListRuns(dir)
	if err != nil || len(runs) != 1 || runs[0].Status != "unfinished" || runs[0].Previous != "r1" {
		t.Fatalf("ListRuns = %+v, %v", runs, err)
	}
	// A corrupt line in the middle is an error, not silently skipped.
	os.WriteFile(filepath.Join(dir, JournalDir, "run2.jsonl"), []byte("{\"seq\":1}\nnot json\n{\"seq\":3}\n"), 0o644)
	if _, err := ReadJournal(dir, "run2"); err == nil {
		t.Fatal("corrupt middle line accepted")
	}
}

func TestLock(t *testing.T) {
	dir := t.TempDir()
	host, _ := os.Hostname()
	l, err := AcquireLock(dir, "prod", LockInfo{Owner: "alice", PID: os.Getpid(), Host: host, Started: time.Now(), Command: "deploy"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = AcquireLock(dir, "prod", LockInfo{Owner: "bob", PID: os.Getpid(), Host: host})
	var held *LockHeldError
	if !errorsAs(err, &held) || held.Info.Owner != "alice" {
		t.Fatalf("second lock: %v, want held by alice", err)
	}
	if _, err := AcquireLock(dir, "staging", LockInfo{Owner: "bob"}); err != nil {
		t.Fatalf("another environment's lock: %v", err)
	}
	l.Release()
	// A lock whose process is gone (on this machine) is stale and taken
	// over: the file it left behind is flocked by nobody.
	dead := deadPID(t)
	leaveLock(t, dir, "prod", LockInfo{Owner: "carol", PID: dead, Host: host, Command: "deploy"})
	l2, err := AcquireLock(dir, "prod", LockInfo{Owner: "dave", PID: os.Getpid(), Host: host})
	if err != nil || l2.Recovered == nil || l2.Recovered.Owner != "carol" {
		t.Fatalf("stale lock not taken over: %v %+v", err, l2)
	}
	// A lock held on another machine is never assumed stale.
	l2.Release()
	leaveLock(t, dir, "prod", LockInfo{Owner: "erin", PID: dead, Host: host + "-elsewhere"})
	if _, err := AcquireLock(dir, "prod", LockInfo{Owner: "frank", PID: os.Getpid(), Host: host}); !errorsAs(err, &held) {
		t.Fatalf("lock of another machine taken over: %v", err)
	}
}

// leaveLock writes the lock file a process that died holding it leaves.
func leaveLock(t *testing.T, dir, env string, li LockInfo) {
	t.Helper()
	b, _ := json.Marshal(li)
	if err := os.MkdirAll(filepath.Join(dir, "locks"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lockPath(dir, env), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestLockUnreadable: an empty or damaged lock file (a crash between its
// creation and its write) is held by an unknown holder, aged from its
// mtime, and BreakLock removes it.
func TestLockUnreadable(t *testing.T) {
	host, _ := os.Hostname()
	for _, content := range []string{"", "\n", "{\"owner\": \"al", "\x00\x00\x00"} {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "locks"), 0o700)
		os.WriteFile(lockPath(dir, "prod"), []byte(content), 0o600)
		old := time.Now().Add(-time.Hour)
		os.Chtimes(lockPath(dir, "prod"), old, old)
		_, err := AcquireLock(dir, "prod", LockInfo{Owner: "bob", PID: os.Getpid(), Host: host})
		var held *LockHeldError
		if !errorsAs(err, &held) || held.Info.Unreadable == "" || held.Age < 59*time.Minute ||
			!strings.Contains(err.Error(), lockPath(dir, "prod")) {
			t.Fatalf("lock file %q: %v, want held by an unknown holder for an hour", content, err)
		}
		li, err := BreakLock(dir, "prod")
		if err != nil || li.Unreadable == "" {
			t.Fatalf("break lock file %q: %+v, %v", content, li, err)
		}
		l, err := AcquireLock(dir, "prod", LockInfo{Owner: "bob", PID: os.Getpid(), Host: host})
		if err != nil || l.Recovered != nil {
			t.Fatalf("after break: %v", err)
		}
		l.Release()
	}
}

// TestLockTakeoverRace: processes that find the same stale lock at once
// never both take it over; every loser is told the lock is held.
func TestLockTakeoverRace(t *testing.T) {
	dir := t.TempDir()
	host, _ := os.Hostname()
	dead := deadPID(t)
	for round := range 30 {
		leaveLock(t, dir, "prod", LockInfo{Owner: "carol", PID: dead, Host: host, Command: "deploy"})
		var wg sync.WaitGroup
		var mu sync.Mutex
		var won []*Lock
		start := make(chan struct{})
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				l, err := AcquireLock(dir, "prod", LockInfo{Owner: fmt.Sprint("p", i), PID: os.Getpid(), Host: host})
				var held *LockHeldError
				if err != nil && !errorsAs(err, &held) {
					t.Errorf("round %d: a loser got %v, want a held lock", round, err)
				}
				if err == nil {
					mu.Lock()
					won = append(won, l)
					mu.Unlock()
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(won) != 1 {
			t.Fatalf("round %d: %d takers of one stale lock", round, len(won))
		}
		// The winner still holds the lock at its path.
		if !won[0].Held() || won[0].Recovered == nil || won[0].Recovered.Owner != "carol" {
			t.Fatalf("round %d: winner %+v", round, won[0])
		}
		// Keep its file as the next round's stale lock, as a crash would.
		won[0].f.Close()
	}
}

// TestLockBroken: once `unlock` broke a lock and another run took it, the
// first holder is fenced and its release leaves the new lock alone.
func TestLockBroken(t *testing.T) {
	dir := t.TempDir()
	host, _ := os.Hostname()
	a, err := AcquireLock(dir, "prod", LockInfo{Owner: "alice", PID: os.Getpid(), Host: host})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := BreakLock(dir, "prod"); err != nil {
		t.Fatal(err)
	}
	b, err := AcquireLock(dir, "prod", LockInfo{Owner: "bob", PID: os.Getpid(), Host: host})
	if err != nil {
		t.Fatal(err)
	}
	if a.Held() || (fileLock{dir: dir, l: a}).Fence(context.Background()) == nil {
		t.Fatal("a broken lock still counts as held")
	}
	a.Release()
	if !b.Held() {
		t.Fatal("releasing a broken lock removed its new holder's")
	}
	b.Release()
}

func TestHubWatch(t *testing.T) {
	h := NewHub()
	seen := make(chan uint64, 10)
	stop := h.Watch(context.Background(), func(_ context.Context, e Event) bool {
		seen <- e.Seq
		return e.Seq == 2
	})
	defer stop()
	h.Publish(Event{Seq: 1}, Event{Seq: 2}, Event{Seq: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, want := range []uint64{1, 2} {
		select {
		case got := <-seen:
			if got != want {
				t.Fatalf("saw %d, want %d", got, want)
			}
		case <-ctx.Done():
			t.Fatal("watch saw nothing")
		}
	}
	stop() // returns once the watcher has ended; it stopped after 2
	if len(seen) != 0 {
		t.Fatalf("the watcher went on after returning true: %d", <-seen)
	}
}
