package pools

import (
	"encoding/json"
	"math"
	"path/filepath"
	"reflect"
	"testing"

	"flightdeck/engine"
)

func TestTargets(t *testing.T) {
	v1 := []string{"a:1", "b:1", "c:1"}
	tests := []struct {
		name   string
		state  State
		cohort bool
		extra  []string
		want   map[string]Target
		wantW  map[string]int // Scale(…, 256)
		down   map[string]bool
	}{
		{
			name:  "stable alone shares evenly",
			state: State{Pools: map[string][]string{"v1": v1}, Route: engine.Route{Stable: "v1"}},
			want:  map[string]Target{"a:1": {Serving, 100.0 / 3}, "b:1": {Serving, 100.0 / 3}, "c:1": {Serving, 100.0 / 3}},
			wantW: map[string]int{"a:1": 256, "b:1": 256, "c:1": 256},
		},
		{
			name: "canary 5% on one of four",
			state: State{Pools: map[string][]string{"v1": v1, "v2": {"d:1"}},
				Route: engine.Route{Stable: "v1", Candidate: "v2", Weight: 5}},
			want: map[string]Target{"a:1": {Serving, 95.0 / 3}, "b:1": {Serving, 95.0 / 3}, "c:1": {Serving, 95.0 / 3}, "d:1": {Serving, 5}},
			// 5 / (95/3) × 256 = 40.4
			wantW: map[string]int{"a:1": 256, "b:1": 256, "c:1": 256, "d:1": 40},
		},
		{
			name: "a drained backend is out of the split",
			state: State{Pools: map[string][]string{"v1": v1, "v2": {"d:1"}}, Drained: []string{"a:1"},
				Route: engine.Route{Stable: "v1", Candidate: "v2", Weight: 50}},
			want:  map[string]Target{"a:1": {Drained, 0}, "b:1": {Serving, 25}, "c:1": {Serving, 25}, "d:1": {Serving, 50}},
			wantW: map[string]int{"a:1": 0, "b:1": 128, "c:1": 128, "d:1": 256},
		},
		{
			name: "candidate with nothing in rotation: stable takes all",
			state: State{Pools: map[string][]string{"v1": {"a:1"}, "v2": {"d:1"}}, Drained: []string{"d:1"},
				Route: engine.Route{Stable: "v1", Candidate: "v2", Weight: 25}},
			want: map[string]Target{"a:1": {Serving, 100}, "d:1": {Drained, 0}},
		},
		{
			name: "stable with nothing in rotation: candidate takes all",
			state: State{Pools: map[string][]string{"v1": {"a:1"}, "v2": {"d:1"}}, Drained: []string{"a:1"},
				Route: engine.Route{Stable: "v1", Candidate: "v2", Weight: 25}},
			want: map[string]Target{"a:1": {Drained, 0}, "d:1": {Serving, 100}},
		},
		{
			name: "blue/green flip: the old colour stays warm, an unknown server is out",
			state: State{Pools: map[string][]string{"v1": {"blue:1"}, "v2": {"green:1"}},
				Route: engine.Route{Stable: "v1", Candidate: "v2", Weight: 100}},
			extra: []string{"spare:1"},
			want:  map[string]Target{"blue:1": {Warm, 0}, "green:1": {Serving, 100}, "spare:1": {Out, 0}},
		},
		{
			name: "cohort backend: the cohort's release takes all",
			state: State{Pools: map[string][]string{"v1": {"blue:1"}, "v2": {"green:1"}},
				Route: engine.Route{Stable: "v1"}, Cohorts: []engine.CohortRule{{Release: "v2", Header: "X-Beta", Value: "1"}}},
			cohort: true,
			want:   map[string]Target{"blue:1": {Warm, 0}, "green:1": {Serving, 100}},
		},
		{
			name: "cohort backend without rules follows the route",
			state: State{Pools: map[string][]string{"v1": {"blue:1"}, "v2": {"green:1"}},
				Route: engine.Route{Stable: "v1"}},
			cohort: true,
			want:   map[string]Target{"blue:1": {Serving, 100}, "green:1": {Warm, 0}},
		},
		{
			name: "a candidate whose backends are all down gets nothing",
			state: State{Pools: map[string][]string{"v1": {"blue:1"}, "v2": {"green:1"}},
				Route: engine.Route{Stable: "v1", Candidate: "v2", Weight: 100}},
			down: map[string]bool{"green:1": true},
			want: map[string]Target{"blue:1": {Serving, 100}, "green:1": {Warm, 0}},
		},
		{
			name: "one backend down of two: the release keeps its share",
			state: State{Pools: map[string][]string{"v1": {"a:1"}, "v2": {"c:1", "d:1"}},
				Route: engine.Route{Stable: "v1", Candidate: "v2", Weight: 50}},
			down: map[string]bool{"d:1": true},
			want: map[string]Target{"a:1": {Serving, 50}, "c:1": {Serving, 25}, "d:1": {Serving, 25}},
		},
		{
			name: "a tiny weight still gets weight 1",
			state: State{Pools: map[string][]string{"v1": v1, "v2": {"d:1"}},
				Route: engine.Route{Stable: "v1", Candidate: "v2", Weight: 0.1}},
			want:  map[string]Target{"a:1": {Serving, 99.9 / 3}, "b:1": {Serving, 99.9 / 3}, "c:1": {Serving, 99.9 / 3}, "d:1": {Serving, 0.1}},
			wantW: map[string]int{"a:1": 256, "b:1": 256, "c:1": 256, "d:1": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.state.Targets(tt.extra, tt.cohort, tt.down)
			if len(got) != len(tt.want) {
				t.Fatalf("targets %v, want %v", got, tt.want)
			}
			for a, w := range tt.want {
				g := got[a]
				if g.Placement != w.Placement || math.Abs(g.Share-w.Share) > 1e-9 {
					t.Errorf("%s: %v %.4f, want %v %.4f", a, g.Placement, g.Share, w.Placement, w.Share)
				}
			}
			if tt.wantW != nil {
				if w := Scale(got, 256); !reflect.DeepEqual(w, tt.wantW) {
					t.Errorf("weights %v, want %v", w, tt.wantW)
				}
			}
		})
	}
}

func TestUnusable(t *testing.T) {
	s := State{Pools: map[string][]string{"v1": {"a:1", "b:1"}, "v2": {"c:1"}, "v0": {"z:1"}},
		Route: engine.Route{Stable: "v1", Candidate: "v2", Weight: 5}, Drained: []string{"a:1"}}
	if got := s.Unusable(map[string]bool{"b:1": true, "z:1": true}); !reflect.DeepEqual(got, []string{"v1"}) {
		t.Errorf("Unusable = %v, want [v1] (a drained, b down; v0 is not routed)", got)
	}
	if got := s.Unusable(nil); len(got) != 0 {
		t.Errorf("Unusable(nil) = %v", got)
	}
}

func TestSetPoolMovesAndSaveLoad(t *testing.T) {
	s := &State{}
	s.SetPool("v1", []string{"b:1", "a:1", "a:1"})
	if s.Route.Stable != "v1" {
		t.Errorf("the first pool of a state without a route: route %+v, want v1 stable", s.Route)
	}
	s.SetPool("v2", nil)
	s.SetDrained("a:1", true)
	s.SetPool("v2", []string{"a:1"})
	if got := s.Pools["v1"]; !reflect.DeepEqual(got, []string{"b:1"}) {
		t.Errorf("v1's pool %v, want [b:1]", got)
	}
	if s.ReleaseOf("a:1") != "v2" || !s.IsDrained("a:1") {
		t.Errorf("a:1 in %q drained %v; want in v2, still drained", s.ReleaseOf("a:1"), s.IsDrained("a:1"))
	}
	s.SetPool("v2", nil)
	if s.IsDrained("a:1") {
		t.Error("a backend in no pool stays in the drained list")
	}
	s.Route = engine.Route{Stable: "v1"}
	p := filepath.Join(t.TempDir(), "sub", "state.json")
	if err := s.Save(p); err != nil {
		t.Fatal(err)
	}
	back, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	j1, _ := json.Marshal(back)
	j2, _ := json.Marshal(s)
	if string(j1) != string(j2) {
		t.Errorf("loaded %+v, saved %+v", back, s)
	}
	empty, err := Load(filepath.Join(t.TempDir(), "none.json"))
	if err != nil || len(empty.Pools) != 0 {
		t.Errorf("missing file: %+v, %v", empty, err)
	}
}

func TestCheckCohorts(t *testing.T) {
	tests := []struct {
		rules []engine.CohortRule
		ok    bool
	}{
		{[]engine.CohortRule{{Release: "v2", Header: "X-Beta", Value: "1"}}, true},
		{[]engine.CohortRule{{Release: "v2", Cookie: "u", Percent: 10}}, true},
		{[]engine.CohortRule{{Release: "v2", Header: "X-Beta", Value: "1"}, {Release: "v3", Header: "X-Beta", Value: "2"}}, false},
		{[]engine.CohortRule{{Release: "v2", Header: "X-Beta", Cookie: "b", Value: "1"}}, false},
		{[]engine.CohortRule{{Release: "v2", Header: "X-User"}}, false},
		{[]engine.CohortRule{{Header: "X-Beta", Value: "1"}}, false},
	}
	for i, tt := range tests {
		if err := CheckCohorts(tt.rules); (err == nil) != tt.ok {
			t.Errorf("%d: CheckCohorts(%+v) = %v, want ok=%v", i, tt.rules, err, tt.ok)
		}
	}
}
