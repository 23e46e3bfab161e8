package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

// seedJournal is a small, plausible journal: a rolling deploy of two
// hosts that switched one, was interrupted, and was resumed.
func seedJournal(t testing.TB) []byte {
	t.Helper()
	w := 0.25
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	evs := []Event{
		{Type: EvRunStarted, Actor: "alice", Start: &RunInfo{Kind: KindDeploy, App: "shop", Env: "production", Strategy: "rolling",
			Release: "r2", Previous: "r1", Hosts: []RunHost{{Name: "web-1", Current: "r1"}, {Name: "web-2", Current: "r1"}},
			Waves: [][]string{{"web-1"}, {"web-2"}}, Steps: []int{1, 25, 100}}},
		{Type: EvWaveStarted, Wave: 1},
		{Type: EvHostPhase, Host: "web-1", Release: "r2", Phase: PhaseSwitching},
		{Type: EvHostOutput, Host: "web-1", Command: "restart", Message: "restarted"},
		{Type: EvWeightSet, Weight: &w},
		{Type: EvNotice, Message: "took over the lock"},
		{Type: EvRunResumed, Actor: "bob"},
		{Type: EvHostPhase, Host: "web-2", Release: "r2", Phase: PhaseLive},
		{Type: EvRunFinished, Outcome: OutcomeSucceeded},
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for i := range evs {
		evs[i].Seq, evs[i].Run, evs[i].Time = uint64(i+1), "production-x", t0.Add(time.Duration(i)*time.Second)
		if err := enc.Encode(&evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// FuzzDecodeEvents: any bytes as a journal file decode without panic into
// the events of the readable lines (a damaged line is reported, never
// fatal); the state fold and the summary accept whatever was read; and
// the events read encode and decode again to the same events.
func FuzzDecodeEvents(f *testing.F) {
	j := seedJournal(f)
	f.Add(j)
	f.Add(j[:len(j)-17])                                    // torn tail
	f.Add(append(append([]byte{}, j[:200]...), j[150:]...)) // garbage middle
	f.Add([]byte("\n\n{}\n{\"seq\":1}\n"))
	f.Add([]byte(`{"seq":1,"type":"RunStarted","start":{"hosts":[{"name":"a"},{"name":"a"}],"waves":[["a","b"],[]]}}` + "\n" +
		`{"seq":2,"type":"HostPhase","host":"zz","phase":"live"}` + "\n" + `{"seq":2,"type":"RunFinished"}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, err := DecodeEvents(bytes.NewReader(data), "fuzz.jsonl")
		var dmg *JournalDamageError
		if err != nil && !errors.As(err, &dmg) {
			t.Fatalf("a byte slice gave a read error: %v", err)
		}
		if dmg != nil && (dmg.Count == 0 || len(dmg.Lines) == 0 || dmg.Error() == "") {
			t.Fatalf("empty damage report %+v", dmg)
		}
		st := Fold(evs)
		_ = st.Clone()
		_ = Summarise(evs)
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		for i := range evs {
			if err := enc.Encode(&evs[i]); err != nil {
				return // e.g. a float that JSON cannot carry back
			}
		}
		again, err := DecodeEvents(&b, "again.jsonl")
		if err != nil || len(again) != len(evs) {
			t.Fatalf("re-encoded events read back as %d of %d: %v", len(again), len(evs), err)
		}
		if st2 := Fold(again); st2.Seq != st.Seq || st2.Status != st.Status || st2.Outcome != st.Outcome || len(st2.Hosts) != len(st.Hosts) {
			t.Fatalf("the fold of re-encoded events differs: %+v vs %+v", st2, st)
		}
	})
}

// FuzzParseLock: any lock file content is a holder (known, or unknown and
// saying why), never a panic; a readable holder written back reads the same.
func FuzzParseLock(f *testing.F) {
	good, _ := json.Marshal(LockInfo{Owner: "alice", PID: 42, Host: "ctl-1", Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Command: "flightdeck deploy", Run: "production-x"})
	for _, s := range []string{string(good), "", " \n", `{"owner":"al`, "null", `{"pid":-1}`, `[]`, `{"started":"not a time"}`, "\x00\x00"} {
		f.Add([]byte(s))
	}
	mtime := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, b []byte) {
		li := ParseLock(b, "locks/production.lock", mtime)
		if li == nil {
			t.Fatal("no holder")
		}
		if li.Started.IsZero() {
			t.Fatalf("holder %+v has no age", li)
		}
		if li.Unreadable != "" {
			if li.Describe() == "" {
				t.Fatal("unknown holder not described")
			}
			return
		}
		again, err := json.Marshal(li)
		if err != nil {
			return
		}
		li2 := ParseLock(again, "locks/production.lock", mtime)
		li.Unreadable = ""
		if li2.Unreadable != "" || !reflect.DeepEqual(*li2, *li) && !li2.Started.Equal(li.Started) {
			t.Fatalf("holder %+v read back as %+v", li, li2)
		}
	})
}
