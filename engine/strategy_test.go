package engine

import (
	"reflect"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// fold builds a state from a RunStarted with the given hosts/waves and then events.
func startState(kind RunKind, waves [][]string, current map[string]string, evs ...Event) *State {
	info := &RunInfo{Kind: kind, App: "shop", Env: "prod", Strategy: "rolling", Release: "r2", Waves: waves}
	for _, w := range waves {
		for _, h := range w {
			info.Hosts = append(info.Hosts, RunHost{Name: h, Current: current[h]})
		}
	}
	if kind == KindRollback {
		info.Release = "r1"
	}
	s := NewState()
	s.Apply(Event{Seq: 1, Time: t0, Type: EvRunStarted, Start: info})
	for i, e := range evs {
		e.Seq = uint64(i + 2)
		if e.Time.IsZero() {
			e.Time = t0
		}
		s.Apply(e)
	}
	return s
}

func phase(host string, p Phase, rel string) Event {
	return Event{Type: EvHostPhase, Host: host, Phase: p, Release: rel}
}

func kinds(acts []Action) []string {
	var out []string
	for _, a := range acts {
		s := a.Kind.String()
		if a.Host != "" {
			s += ":" + a.Host
		}
		if a.Release != "" && a.Kind == ActRevert {
			s += "@" + a.Release
		}
		out = append(out, s)
	}
	return out
}

func TestWavePlanner(t *testing.T) {
	waves := [][]string{{"a", "b"}, {"c", "d"}}
	prev := map[string]string{"a": "r1", "b": "r1", "c": "r1", "d": "r1"}
	prepared := []Event{phase("a", PhasePrepared, "r2"), phase("b", PhasePrepared, "r2"), phase("c", PhasePrepared, "r2"), phase("d", PhasePrepared, "r2")}
	with := func(evs ...Event) []Event { return append(append([]Event{}, prepared...), evs...) }
	pause := 5 * time.Second
	tests := []struct {
		name    string
		planner WavePlanner
		evs     []Event
		now     time.Time
		want    []string
	}{
		{"prepares every host first", WavePlanner{}, nil, t0,
			[]string{"prepare:a", "prepare:b", "prepare:c", "prepare:d"}},
		{"no switch until every host is prepared", WavePlanner{}, prepared[:3], t0,
			[]string{"prepare:d"}},
		{"starts wave 1 once all are prepared", WavePlanner{}, prepared, t0,
			[]string{"wave-start"}},
		{"switches the hosts of the wave", WavePlanner{}, with(Event{Type: EvWaveStarted, Wave: 1}), t0,
			[]string{"switch:a", "switch:b"}},
		{"only hosts not yet live", WavePlanner{}, with(Event{Type: EvWaveStarted, Wave: 1}, phase("a", PhaseLive, "r2")), t0,
			[]string{"switch:b"}},
		{"wave done when all live", WavePlanner{}, with(Event{Type: EvWaveStarted, Wave: 1}, phase("a", PhaseLive, "r2"), phase("b", PhaseLive, "r2")), t0,
			[]string{"wave-done"}},
		{"waits the pause between waves", WavePlanner{Pause: pause}, with(Event{Type: EvWaveStarted, Wave: 1}, phase("a", PhaseLive, "r2"), phase("b", PhaseLive, "r2"), Event{Type: EvWaveDone, Wave: 1, Time: t0}), t0.Add(time.Second),
			[]string{"wait"}},
		{"next wave after the pause", WavePlanner{Pause: pause}, with(Event{Type: EvWaveStarted, Wave: 1}, phase("a", PhaseLive, "r2"), phase("b", PhaseLive, "r2"), Event{Type: EvWaveDone, Wave: 1, Time: t0}), t0.Add(pause),
			[]string{"wave-start"}},
		{"finishes after the last wave", WavePlanner{}, with(Event{Type: EvWaveStarted, Wave: 2}, phase("a", PhaseLive, "r2"), phase("b", PhaseLive, "r2"), phase("c", PhaseLive, "r2"), phase("d", PhaseLive, "r2"), Event{Type: EvWaveDone, Wave: 2}), t0,
			[]string{"finish"}},
		{"paused: nothing new", WavePlanner{}, with(Event{Type: EvWaveStarted, Wave: 1}, Event{Type: EvPaused, Actor: "alice"}), t0,
			nil},
		{"failed prepare: finish failed, nothing switched", WavePlanner{}, []Event{phase("a", PhasePrepared, "r2"), {Type: EvHostPhase, Host: "b", Phase: PhaseFailed, Error: "disk full"}}, t0,
			[]string{"finish"}},
		{"failed switch: roll back the run", WavePlanner{}, with(Event{Type: EvWaveStarted, Wave: 2}, phase("a", PhaseSwitching, "r2"), phase("a", PhaseLive, "r2"), phase("b", PhaseSwitching, "r2"), phase("b", PhaseLive, "r2"), phase("c", PhaseSwitching, "r2"), Event{Type: EvHostPhase, Host: "c", Phase: PhaseFailed, Error: "health"}), t0,
			[]string{"start-rollback"}},
		{"failed switch with on_failure halt", WavePlanner{Halt: true}, with(Event{Type: EvWaveStarted, Wave: 1}, phase("a", PhaseSwitching, "r2"), Event{Type: EvHostPhase, Host: "a", Phase: PhaseFailed, Error: "x"}), t0,
			[]string{"finish"}},
		{"rolling back reverts touched hosts to their previous release", WavePlanner{}, with(Event{Type: EvWaveStarted, Wave: 1}, phase("a", PhaseSwitching, "r2"), phase("a", PhaseLive, "r2"), phase("b", PhaseSwitching, "r2"), Event{Type: EvRollbackStart, Actor: "auto"}), t0,
			[]string{"revert:a@r1", "revert:b@r1"}},
		{"rollback to a named release", WavePlanner{}, with(Event{Type: EvWaveStarted, Wave: 1}, phase("a", PhaseSwitching, "r2"), Event{Type: EvRollbackStart, Target: "r0"}), t0,
			[]string{"revert:a@r0"}},
		{"rollback finishes when all are reverted", WavePlanner{}, with(phase("a", PhaseSwitching, "r2"), Event{Type: EvRollbackStart}, phase("a", PhaseReverted, "r1")), t0,
			[]string{"finish"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startState(KindDeploy, waves, prev, tt.evs...)
			got := kinds(tt.planner.Next(s, tt.now))
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Next = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWavePlannerOutcomes(t *testing.T) {
	waves := [][]string{{"a"}, {"b"}}
	prev := map[string]string{"a": "r1", "b": "r1"}
	tests := []struct {
		name string
		evs  []Event
		want Outcome
	}{
		{"success", []Event{phase("a", PhasePrepared, "r2"), phase("b", PhasePrepared, "r2"), {Type: EvWaveStarted, Wave: 2}, phase("a", PhaseLive, "r2"), phase("b", PhaseLive, "r2"), {Type: EvWaveDone, Wave: 2}}, OutcomeSucceeded},
		{"failed prepare", []Event{{Type: EvHostPhase, Host: "a", Phase: PhaseFailed, Error: "x"}}, OutcomeFailed},
		{"rolled back", []Event{phase("a", PhaseSwitching, "r2"), {Type: EvRollbackStart}, phase("a", PhaseReverted, "r1")}, OutcomeRolledBack},
		{"aborted", []Event{phase("a", PhaseSwitching, "r2"), {Type: EvRollbackStart, Command: "abort"}, phase("a", PhaseReverted, "r1")}, OutcomeAborted},
		{"revert failed", []Event{phase("a", PhaseSwitching, "r2"), {Type: EvRollbackStart}, {Type: EvHostPhase, Host: "a", Phase: PhaseFailed, Error: "gone"}}, OutcomeFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acts := WavePlanner{}.Next(startState(KindDeploy, waves, prev, tt.evs...), t0)
			if len(acts) != 1 || acts[0].Kind != ActFinish || acts[0].Outcome != tt.want {
				t.Fatalf("Next = %+v, want finish %s", acts, tt.want)
			}
		})
	}
}

func TestRollbackRunPlansEveryHost(t *testing.T) {
	s := startState(KindRollback, [][]string{{"a", "b", "c"}}, map[string]string{"a": "r2", "b": "r2", "c": "r1"})
	got := kinds(RevertNext(s, 0))
	want := []string{"revert:a@r1", "revert:b@r1", "revert:c@r1"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("RevertNext = %v, want %v", got, want)
	}
	s.Apply(Event{Type: EvHostPhase, Host: "a", Phase: PhaseReverted, Release: "r1"})
	s.Apply(Event{Type: EvHostPhase, Host: "b", Phase: PhaseFailed, Error: "release r1 is not on this host"})
	s.Apply(Event{Type: EvHostPhase, Host: "c", Phase: PhaseReverted, Release: "r1"})
	acts := RevertNext(s, 0)
	if len(acts) != 1 || acts[0].Kind != ActFinish || acts[0].Outcome != OutcomeFailed {
		t.Fatalf("after a missing release: %+v, want finish failed", acts)
	}
}

func TestRevertRespectsMaxUnavailable(t *testing.T) {
	s := startState(KindRollback, [][]string{{"a", "b", "c", "d"}}, map[string]string{"a": "r2", "b": "r2", "c": "r2", "d": "r2"})
	if got := kinds(RevertNext(s, 1)); !reflect.DeepEqual(got, []string{"revert:a@r1"}) {
		t.Fatalf("limit 1: %v", got)
	}
	s.Apply(Event{Type: EvHostPhase, Host: "a", Phase: PhaseReverting, Release: "r1"})
	if got := kinds(RevertNext(s, 1)); !reflect.DeepEqual(got, []string{"revert:a@r1"}) {
		t.Fatalf("while a reverts, nothing else starts: %v", got)
	}
	s.Apply(Event{Type: EvHostPhase, Host: "a", Phase: PhaseReverted, Release: "r1"})
	if got := kinds(RevertNext(s, 2)); !reflect.DeepEqual(got, []string{"revert:b@r1", "revert:c@r1"}) {
		t.Fatalf("limit 2 after a: %v", got)
	}
}

func TestPlanWaves(t *testing.T) {
	tests := []struct {
		hosts []string
		n     int
		want  [][]string
	}{
		{[]string{"a", "b", "c", "d"}, 2, [][]string{{"a", "b"}, {"c", "d"}}},
		{[]string{"a", "b", "c"}, 2, [][]string{{"a", "b"}, {"c"}}},
		{[]string{"a", "b"}, 5, [][]string{{"a", "b"}}},
		{[]string{"a", "b"}, 0, [][]string{{"a"}, {"b"}}},
		{nil, 2, nil},
	}
	for _, tt := range tests {
		if got := PlanWaves(tt.hosts, tt.n); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("PlanWaves(%v, %d) = %v, want %v", tt.hosts, tt.n, got, tt.want)
		}
	}
}
