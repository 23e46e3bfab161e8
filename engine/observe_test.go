package engine

import (
	"strings"
	"testing"

	"flightdeck/engine/probe"
)

// TestSummariseProbeCountsReleaseErrorsApart: the error statuses a release
// answered itself are its own errors; what no release answered (refused,
// reset, the traffic layer's own 502) is lost.
func TestSummariseProbeCountsReleaseErrorsApart(t *testing.T) {
	r := probe.Report{Rate: 200, Total: probe.Stats{Requests: 1000, Failed: 31}, Releases: map[string]probe.Stats{
		"v1":                 {Requests: 500, Failed: 1, Failures: probe.Failures{Reset: 1}},
		"v2":                 {Requests: 480, Failed: 24, Failures: probe.Failures{Status5xx: 22, Status4xx: 1, Reset: 1}},
		probe.UnknownRelease: {Requests: 20, Failed: 6, Failures: probe.Failures{Status5xx: 2, Refused: 3, Timeout: 1}},
	}}
	s := SummariseProbe(r)
	if s.ReleaseErrors != 23 || s.Lost() != 8 {
		t.Fatalf("release errors %d, lost %d; want 23 and 8", s.ReleaseErrors, s.Lost())
	}
	if v2, unk := s.Releases["v2"], s.Releases[probe.UnknownRelease]; v2.Errors != 23 || v2.Failed != 24 || unk.Errors != 0 {
		t.Fatalf("v2 %+v, unknown %+v", v2, unk)
	}
}

// TestGracefulShutdownItemBlamesTheRightThing: the graceful-shutdown item
// fails on requests lost during restarts, not on a release's own errors.
func TestGracefulShutdownItemBlamesTheRightThing(t *testing.T) {
	tests := []struct {
		name     string
		restarts int
		probe    *ProbeSummary
		want     ItemState // "" for no change
		evidence []string
	}{
		{"nothing lost", 8, &ProbeSummary{Rate: 200, Requests: 600}, ItemVerified, []string{"8 services restarted", "0 of 600 probe requests were lost"}},
		{"a release's own 500s are not a shutdown failure", 8, &ProbeSummary{Rate: 200, Requests: 600, Failed: 24, ReleaseErrors: 24}, ItemVerified,
			[]string{"0 of 600 probe requests were lost", "24 more were errors the releases answered themselves"}},
		{"lost connections are", 8, &ProbeSummary{Rate: 200, Requests: 600, Failed: 27, ReleaseErrors: 24}, ItemFailed,
			[]string{"3 of 600 probe requests were lost", "24 more"}},
		{"no restart: nothing shown", 0, &ProbeSummary{Rate: 200, Requests: 600, Failed: 3}, "", nil},
		{"no probe: nothing shown", 8, nil, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := trafficState("rolling", nil, Event{Type: EvChecklistItem, Item: &ChecklistItem{ID: ItemGraceful, State: ItemUnknown}})
			st.Observed.Restarts = tt.restarts
			evs := finalChecklist(st, &Report{Probe: tt.probe})
			if tt.want == "" {
				if len(evs) != 0 {
					t.Fatalf("settled %+v", evs[0].Item)
				}
				return
			}
			if len(evs) != 1 || evs[0].Item.State != tt.want {
				t.Fatalf("events %+v, want the item %s", evs, tt.want)
			}
			for _, w := range tt.evidence {
				if !strings.Contains(evs[0].Item.Evidence, w) {
					t.Errorf("evidence %q does not say %q", evs[0].Item.Evidence, w)
				}
			}
		})
	}
}
