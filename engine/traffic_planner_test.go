package engine

import (
	"reflect"
	"strconv"
	"testing"
	"time"
)

// trafficState is a traffic run of r2 over r1 on hosts a-d after evs.
func trafficState(strategy string, steps []int, evs ...Event) *State {
	info := &RunInfo{Kind: KindDeploy, App: "shop", Env: "prod", Strategy: strategy, Release: "r2", Previous: "r1", Steps: steps}
	for _, h := range []string{"a", "b", "c", "d"} {
		info.Hosts = append(info.Hosts, RunHost{Name: h, Current: "r1"})
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

// actionString renders a planner's actions for comparison.
func actionStrings(acts []Action) []string {
	var out []string
	for _, a := range acts {
		s := a.Kind.String()
		if a.Host != "" {
			s += ":" + a.Host
		}
		switch a.Kind {
		case ActStep:
			s += "@" + ftoa(a.Weight)
		case ActRoute:
			s += "@" + ftoa(a.Weight)
			if a.Cohort > 0 {
				s += "+cohort" + ftoa(a.Cohort)
			}
		case ActFinish:
			s += ":" + string(a.Outcome)
		}
		out = append(out, s)
	}
	return out
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func prepared(hosts ...string) []Event {
	var evs []Event
	for _, h := range hosts {
		evs = append(evs, phase(h, PhasePrepared, "r2"))
	}
	return evs
}

func live(hosts ...string) []Event {
	var evs []Event
	for _, h := range hosts {
		evs = append(evs, phase(h, PhaseSwitching, "r2"), phase(h, PhaseLive, "r2"))
	}
	return evs
}

func standby(hosts ...string) []Event {
	var evs []Event
	for _, h := range hosts {
		evs = append(evs, phase(h, PhaseStandby, "r2"))
	}
	return evs
}

func step(n int, w float64) Event { return Event{Type: EvStepStarted, Wave: n, Weight: ptr(w)} }
func weight(w float64) Event      { return Event{Type: EvWeightSet, Weight: ptr(w)} }
func cohort(w float64) Event      { return Event{Type: EvCohortSet, Weight: ptr(w)} }
func gate(n int, v Verdict) Event {
	return Event{Type: EvGateResult, Gate: &GateResult{Step: n, Verdict: v, Reason: string(v)}}
}

func cat(groups ...[]Event) []Event {
	var out []Event
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

// TestTrafficPlannerCanary walks a canary of 4 hosts through every step
// (25, 50, 100) with max_unavailable 1 and 2, and its rollback.
func TestTrafficPlannerCanary(t *testing.T) {
	all := prepared("a", "b", "c", "d")
	steps := []int{25, 50, 100}
	one := TrafficPlanner{MaxUnavailable: 1, AutoPromote: true}
	two := TrafficPlanner{MaxUnavailable: 2, AutoPromote: true}
	tests := []struct {
		name string
		p    TrafficPlanner
		evs  []Event
		want []string
	}{
		{"prepares every host first", one, nil, []string{"prepare:a", "prepare:b", "prepare:c", "prepare:d"}},
		{"then the first step", one, all, []string{"step@25"}},
		{"25% of 4 hosts: one host runs the release", one, cat(all, []Event{step(1, 25)}), []string{"switch:a"}},
		{"a host being switched is asked again (the loop skips it)", one, cat(all, []Event{step(1, 25), phase("a", PhaseSwitching, "r2")}), []string{"switch:a"}},
		{"capacity first, then traffic", one, cat(all, []Event{step(1, 25)}, live("a")), []string{"route@25"}},
		{"the step holds its weight: next step", one, cat(all, []Event{step(1, 25)}, live("a"), []Event{weight(25)}), []string{"step@50"}},
		{"50%: a second host", one, cat(all, []Event{step(1, 25)}, live("a"), []Event{weight(25), step(2, 50)}), []string{"switch:b"}},
		{"100% with max_unavailable 1: one host at a time", one,
			cat(all, []Event{step(1, 25)}, live("a"), []Event{weight(25), step(2, 50)}, live("b"), []Event{weight(50), step(3, 100)}),
			[]string{"switch:c"}},
		{"100% with max_unavailable 2: two at a time", two,
			cat(all, []Event{step(1, 25)}, live("a"), []Event{weight(25), step(2, 50)}, live("b"), []Event{weight(50), step(3, 100)}),
			[]string{"switch:c", "switch:d"}},
		{"100% with one host in flight and max_unavailable 2", two,
			cat(all, []Event{step(1, 25)}, live("a"), []Event{weight(25), step(2, 50)}, live("b"), []Event{weight(50), step(3, 100), phase("c", PhaseDraining, "r2")}),
			[]string{"switch:c", "switch:d"}},
		{"every host live: all traffic", one,
			cat(all, []Event{step(1, 25)}, live("a"), []Event{weight(25), step(2, 50)}, live("b"), []Event{weight(50), step(3, 100)}, live("c", "d")),
			[]string{"route@100"}},
		{"all traffic on the release: finished", one,
			cat(all, []Event{step(3, 100)}, live("a", "b", "c", "d"), []Event{weight(100)}),
			[]string{"finish:succeeded"}},
		{"paused: the step in force is carried out", one,
			cat(all, []Event{step(1, 25)}, live("a"), []Event{weight(25), {Type: EvPaused, Actor: "alice"}, step(2, 50)}),
			[]string{"switch:b"}},
		{"paused: carried out, nothing moves on", one,
			cat(all, []Event{step(1, 25)}, live("a"), []Event{weight(25), {Type: EvPaused, Actor: "alice"}}), nil},
		{"paused at the last step: no finish", one,
			cat(all, []Event{{Type: EvPaused, Actor: "alice"}, step(3, 100)}, live("a", "b", "c", "d"), []Event{weight(100)}), nil},
		{"a failed switch rolls back", one,
			cat(all, []Event{step(1, 25), phase("a", PhaseSwitching, "r2"), {Type: EvHostPhase, Host: "a", Phase: PhaseFailed, Error: "x"}}),
			[]string{"start-rollback"}},
		{"a router failure rolls back", one,
			cat(all, []Event{step(1, 25)}, live("a"), []Event{{Type: EvNotice, Command: "route", Error: "router: down"}}),
			[]string{"start-rollback"}},
		{"rolling back: traffic first", one,
			cat(all, []Event{step(2, 50)}, live("a", "b"), []Event{weight(50), {Type: EvRollbackStart}}),
			[]string{"route@0"}},
		{"rolling back: then one host at a time", one,
			cat(all, []Event{step(2, 50)}, live("a", "b"), []Event{weight(50), {Type: EvRollbackStart}, weight(0)}),
			[]string{"revert:a"}},
		{"rolling back with max_unavailable 2", two,
			cat(all, []Event{step(2, 50)}, live("a", "b"), []Event{weight(50), {Type: EvRollbackStart}, weight(0)}),
			[]string{"revert:a", "revert:b"}},
		{"rolling back: a router failure ends the run", one,
			cat(all, []Event{step(2, 50)}, live("a", "b"), []Event{weight(50), {Type: EvRollbackStart}, {Type: EvNotice, Command: "route", Error: "router: down"}}),
			[]string{"finish:failed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := actionStrings(tt.p.Next(trafficState("canary", steps, tt.evs...), t0))
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Next = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestTrafficPlannerGate: a step is measured until the gate passed Count
// times; failures up to the limit roll back; an inconclusive result pauses
// until an operator resumes; holds and the checklist keep a step.
func TestTrafficPlannerGate(t *testing.T) {
	steps := []int{25, 100}
	base := cat(prepared("a", "b", "c", "d"), []Event{step(1, 25)}, live("a"), []Event{weight(25)})
	g := &GateSpec{Count: 2, FailureLimit: 2}
	gated := TrafficPlanner{MaxUnavailable: 1, AutoPromote: true, Gate: g}
	held := gated
	held.Hold = 10 * time.Second
	manual := gated
	manual.AutoPromote = false
	required := Event{Type: EvChecklistItem, Item: &ChecklistItem{ID: ItemIdempotent, State: ItemUnknown, Required: true}}
	tests := []struct {
		name string
		p    TrafficPlanner
		evs  []Event
		now  time.Time
		want []string
	}{
		{"measures the step", gated, base, t0, []string{"measure"}},
		{"one pass of two: measure again", gated, cat(base, []Event{gate(1, VerdictPass)}), t0, []string{"measure"}},
		{"two passes: the next step", gated, cat(base, []Event{gate(1, VerdictPass), gate(1, VerdictPass)}), t0, []string{"step@100"}},
		{"one failure under a limit of two: measure again", gated, cat(base, []Event{gate(1, VerdictFail)}), t0, []string{"measure"}},
		{"two failures in a row: roll back", gated, cat(base, []Event{gate(1, VerdictFail), gate(1, VerdictFail)}), t0, []string{"start-rollback"}},
		{"inconclusive: pause for an operator", gated, cat(base, []Event{gate(1, VerdictInconclusive)}), t0, []string{"await"}},
		{"inconclusive, resumed: measure again", gated, cat(base, []Event{gate(1, VerdictInconclusive), {Type: EvPaused}, {Type: EvResumed}}), t0, []string{"measure"}},
		{"passed but held: wait", held, cat(base, []Event{gate(1, VerdictPass), gate(1, VerdictPass)}), t0.Add(time.Second), []string{"wait"}},
		{"held long enough: next step", held, cat(base, []Event{gate(1, VerdictPass), gate(1, VerdictPass)}), t0.Add(10 * time.Second), []string{"step@100"}},
		{"the hold stood still while paused", held,
			cat(base, []Event{{Type: EvPaused, Time: t0.Add(time.Second)}, {Type: EvResumed, Time: t0.Add(6 * time.Second)}, gate(1, VerdictPass), gate(1, VerdictPass)}),
			t0.Add(12 * time.Second), []string{"wait"}},
		{"a required item not settled holds the promotion", gated, cat(base, []Event{required, gate(1, VerdictPass), gate(1, VerdictPass)}), t0, []string{"hold"}},
		{"auto_promote false: wait for an operator", manual, cat(base, []Event{gate(1, VerdictPass), gate(1, VerdictPass)}), t0, []string{"hold"}},
		{"a step visited again starts afresh", gated,
			cat(base, []Event{gate(1, VerdictFail), step(2, 100), step(1, 25), gate(1, VerdictFail)}), t0, []string{"measure"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := actionStrings(tt.p.Next(trafficState("canary", steps, tt.evs...), tt.now))
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Next = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestTrafficPlannerBlueGreen flips all traffic to the idle colour once
// every host runs the release there, and flips back on a rollback.
func TestTrafficPlannerBlueGreen(t *testing.T) {
	p := TrafficPlanner{Slots: true, MaxUnavailable: 1, AutoPromote: true}
	all := prepared("a", "b", "c", "d")
	tests := []struct {
		name string
		evs  []Event
		want []string
	}{
		{"one step of 100%", all, []string{"step@100"}},
		{"every host starts the release in its idle slot at once", cat(all, []Event{step(1, 100)}),
			[]string{"standby:a", "standby:b", "standby:c", "standby:d"}},
		{"traffic flips once every slot is healthy", cat(all, []Event{step(1, 100)}, standby("a", "b", "c", "d")), []string{"route@100"}},
		{"not before", cat(all, []Event{step(1, 100)}, standby("a", "b", "c")), []string{"standby:d"}},
		{"then the current links", cat(all, []Event{step(1, 100)}, standby("a", "b", "c", "d"), []Event{weight(100)}),
			[]string{"switch:a", "switch:b", "switch:c", "switch:d"}},
		{"then done", cat(all, []Event{step(1, 100)}, standby("a", "b", "c", "d"), []Event{weight(100)}, live("a", "b", "c", "d")),
			[]string{"finish:succeeded"}},
		{"rollback: flip back first", cat(all, []Event{step(1, 100)}, standby("a", "b", "c", "d"), []Event{weight(100), {Type: EvRollbackStart}}),
			[]string{"route@0"}},
		{"rollback: then every link at once (the old colour is warm)",
			cat(all, []Event{step(1, 100)}, standby("a", "b", "c", "d"), []Event{weight(100)}, live("a", "b"), []Event{{Type: EvRollbackStart}, weight(0)}),
			[]string{"revert:a", "revert:b", "revert:c", "revert:d"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := actionStrings(p.Next(trafficState("bluegreen", []int{100}, tt.evs...), t0))
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Next = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestTrafficPlannerAB routes a cohort to the release first, then everyone.
func TestTrafficPlannerAB(t *testing.T) {
	p := TrafficPlanner{Slots: true, Cohort: true, MaxUnavailable: 1, AutoPromote: true}
	all := cat(prepared("a", "b", "c", "d"), []Event{step(1, 30)}, standby("a", "b", "c", "d"))
	tests := []struct {
		name string
		evs  []Event
		want []string
	}{
		{"the cohort first, the rest stays", all, []string{"route@0+cohort30"}},
		{"cohort in force: next step", cat(all, []Event{cohort(30)}), []string{"step@100"}},
		{"everyone: the cohort rule goes", cat(all, []Event{cohort(30), step(2, 100)}), []string{"route@100"}},
		{"then the links", cat(all, []Event{cohort(30), step(2, 100), cohort(0), weight(100)}),
			[]string{"switch:a", "switch:b", "switch:c", "switch:d"}},
		{"rollback with the cohort on: traffic back first", cat(all, []Event{cohort(30), {Type: EvRollbackStart}}), []string{"route@0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := actionStrings(p.Next(trafficState("ab", []int{30, 100}, tt.evs...), t0))
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Next = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestHostsFor(t *testing.T) {
	tests := []struct {
		w    float64
		n    int
		want int
	}{
		{0, 4, 1}, {1, 4, 1}, {25, 4, 1}, {26, 4, 2}, {50, 3, 2}, {99, 100, 99}, {100, 4, 4}, {150, 4, 4}, {5, 0, 0}, {0.1, 1000, 1},
	}
	for _, tt := range tests {
		if got := HostsFor(tt.w, tt.n); got != tt.want {
			t.Errorf("HostsFor(%g, %d) = %d, want %d", tt.w, tt.n, got, tt.want)
		}
	}
}

// TestTrafficPlannerRollbackRun: a rollback run (flightdeck rollback) of a
// traffic strategy moves no traffic step by step: blue/green and A/B flip
// every link at once (the old colour is warm), a canary goes one host at a
// time within max_unavailable; the route settles on the target at the end.
func TestTrafficPlannerRollbackRun(t *testing.T) {
	current := map[string]string{"a": "r2", "b": "r2", "c": "r2"}
	slots := TrafficPlanner{Slots: true, MaxUnavailable: 1}
	canary := TrafficPlanner{MaxUnavailable: 2}
	tests := []struct {
		name string
		p    TrafficPlanner
		evs  []Event
		want []string
	}{
		{"slots: every link at once", slots, nil, []string{"revert:a", "revert:b", "revert:c"}},
		{"canary: within max_unavailable", canary, nil, []string{"revert:a", "revert:b"}},
		{"canary: the next as one ends", canary, []Event{phase("a", PhaseReverted, "r1")}, []string{"revert:b", "revert:c"}},
		{"every host back: the rollback succeeded", slots,
			[]Event{phase("a", PhaseReverted, "r1"), phase("b", PhaseReverted, "r1"), phase("c", PhaseReverted, "r1")},
			[]string{"finish:succeeded"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startState(KindRollback, [][]string{{"a", "b", "c"}}, current, tt.evs...)
			got := actionStrings(tt.p.Next(s, t0))
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Next = %v, want %v", got, tt.want)
			}
		})
	}
}
