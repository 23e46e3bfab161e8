package engine

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// TestListRunsCachesFinishedSummaries: a finished run's summary is kept
// beside its journal and used while the journal file is unchanged; an
// unfinished run is never cached; a changed journal is read again.
func TestListRunsCachesFinishedSummaries(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	write := func(run string, evs ...Event) {
		j, err := OpenJournal(dir, run)
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		if err := j.Append(evs...); err != nil {
			t.Fatal(err)
		}
	}
	start := func(run, rel string, at time.Time) Event {
		return Event{Seq: 1, Run: run, Type: EvRunStarted, Time: at, Actor: "alice",
			Start: &RunInfo{Kind: KindDeploy, Env: "production", Release: rel}}
	}
	finish := func(run string, seq uint64, o Outcome, at time.Time) Event {
		return Event{Seq: seq, Run: run, Type: EvRunFinished, Outcome: o, Time: at}
	}
	write("production-a", start("production-a", "r1", t0), finish("production-a", 2, OutcomeSucceeded, t0.Add(time.Minute)))
	write("production-b", start("production-b", "r2", t0.Add(time.Hour)))

	jdir := filepath.Join(dir, JournalDir)
	// The journal writer keeps the summary once the run finished: no
	// reader needs to write it.
	if _, err := os.Stat(summaryPath(jdir, "production-a")); err != nil {
		t.Fatalf("the finished run's summary was not kept by its writer: %v", err)
	}
	first, err := ListRuns(dir)
	if err != nil || len(first) != 2 {
		t.Fatalf("ListRuns = %+v, %v", first, err)
	}
	// A journal of an older version, without its summary: the first
	// listing keeps it.
	if err := os.Remove(summaryPath(jdir, "production-a")); err != nil {
		t.Fatal(err)
	}
	if _, err := ListRuns(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(summaryPath(jdir, "production-a")); err != nil {
		t.Fatalf("the finished run's summary was not kept by the listing: %v", err)
	}
	if _, err := os.Stat(summaryPath(jdir, "production-b")); !os.IsNotExist(err) {
		t.Fatalf("the unfinished run's summary was kept: %v", err)
	}
	again, err := ListRuns(dir)
	if err != nil || !reflect.DeepEqual(first, again) {
		t.Fatalf("from the cache:\n%+v\nfrom the journals:\n%+v (%v)", again, first, err)
	}

	// The cache is used: a cached summary that differs from the journal
	// is what ListRuns returns while the journal file is unchanged...
	info, err := os.Stat(filepath.Join(jdir, "production-a.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	marked := first[0]
	marked.Actor = "from-the-cache"
	cacheSummary(jdir, "production-a", info, marked)
	if runs, _ := ListRuns(dir); runs[0].Actor != "from-the-cache" {
		t.Fatalf("the cache was not used: %+v", runs[0])
	}
	// ...and not once the journal changed.
	write("production-a", Event{Seq: 3, Run: "production-a", Type: EvNotice, Message: "edited", Time: t0.Add(2 * time.Minute)})
	runs, err := ListRuns(dir)
	if err != nil || runs[0].Actor != "alice" || runs[0].Events != 3 {
		t.Fatalf("after the journal changed: %+v, %v", runs[0], err)
	}
}
