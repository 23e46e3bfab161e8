package engine

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"flightdeck/engine/plan"
)

// stepper drives a machine in tests: every input at a time it controls.
type stepper struct {
	t   *testing.T
	m   *machine
	now time.Time
	// evs are every event the machine journaled.
	evs []Event
}

func rollingMachine(t *testing.T, rules runRules, hosts ...string) *stepper {
	t.Helper()
	env := &plan.Environment{Name: "prod", Strategy: plan.Strategy{Kind: plan.Rolling}}
	info := RunInfo{Kind: KindDeploy, App: "shop", Env: "prod", Strategy: "rolling", Release: "r2", Previous: "r1",
		Waves: PlanWaves(hosts, 2)}
	for _, h := range hosts {
		info.Hosts = append(info.Hosts, RunHost{Name: h, Current: "r1"})
	}
	s := &stepper{t: t, m: newMachine(NewState(), PlannerFor(env, rules.gate, 0), rules), now: t0}
	return s.start(info)
}

func canaryStepper(t *testing.T, rules runRules) *stepper {
	t.Helper()
	env := &plan.Environment{Name: "prod", Strategy: plan.Strategy{Kind: plan.Canary, Steps: []int{50, 100}}}
	info := RunInfo{Kind: KindDeploy, App: "shop", Env: "prod", Strategy: "canary", Release: "r2", Previous: "r1", Steps: []int{50, 100},
		Hosts: []RunHost{{Name: "a", Current: "r1"}, {Name: "b", Current: "r1"}}}
	s := &stepper{t: t, m: newMachine(NewState(), PlannerFor(env, rules.gate, 0), rules), now: t0}
	return s.start(info)
}

func (s *stepper) start(info RunInfo) *stepper {
	s.m.st.Run = "run-1"
	s.step(startInput{info: info, actor: owner})
	return s
}

var owner = Actor{Name: "olivia", Role: RoleOwner}

func (s *stepper) step(in input) output {
	s.t.Helper()
	out := s.m.step(s.now, in)
	s.evs = append(s.evs, out.events...)
	return out
}

// done reports work k (doing a) ended with err and evs.
func (s *stepper) done(a Action, err error, evs ...Event) output {
	k := hostWork(a.Host)
	switch a.Kind {
	case ActVerify:
		k = verifyWork
	case ActMigrate:
		k = migrateWork
	case ActRoute:
		k = routeWork
	}
	a.Serial = s.m.work[k].Serial
	for i := range evs {
		if evs[i].Host == "" && k.Kind == WorkHost {
			evs[i].Host = a.Host
		}
	}
	return s.step(workInput{results: []workResult{{key: k, action: a, events: evs, err: err, done: true}}})
}

// find returns the action of kind k (and host, when given) in out.
func find(out output, k ActionKind, host string) (Action, bool) {
	for _, a := range out.actions {
		if a.Kind == k && (host == "" || a.Host == host) {
			return a, true
		}
	}
	return Action{}, false
}

func (s *stepper) mustFind(out output, k ActionKind, host string) Action {
	s.t.Helper()
	a, ok := find(out, k, host)
	if !ok {
		s.t.Fatalf("no %s %s in %v", k, host, actionStrings(out.actions))
	}
	return a
}

func types(evs []Event) []string {
	var out []string
	for _, e := range evs {
		s := string(e.Type)
		if e.Type == EvHostPhase {
			s += ":" + e.Host + ":" + string(e.Phase)
		}
		out = append(out, s)
	}
	return out
}

// TestStepChecksTheRollbackPathBeforeAnySwitch: a deploy starts with its
// checklist and 3-2-1 checks; the hosts are prepared while the rollback
// path is verified (a prepared release is not current), but nothing is
// switched before the check passed; a failed check ends the run once the
// prepares in flight are done, without a switch (unless overridden).
func TestStepChecksTheRollbackPathBeforeAnySwitch(t *testing.T) {
	s := rollingMachine(t, runRules{}, "a", "b")
	if got := types(s.evs); !reflect.DeepEqual(got, []string{"RunStarted"}) {
		t.Fatalf("start journaled %v", got)
	}
	verify := s.m.work[verifyWork]
	if verify.Kind != ActVerify || len(s.m.work) != 3 || s.m.work[hostWork("a")].Kind != ActPrepare || s.m.work[hostWork("b")].Kind != ActPrepare {
		t.Fatalf("work in flight at the start: %v, want the rollback-path check and both prepares", s.m.work)
	}
	s.done(Action{Kind: ActPrepare, Host: "a", Release: "r2"}, nil, phase("a", PhasePrepared, "r2"))
	out := s.done(Action{Kind: ActPrepare, Host: "b", Release: "r2"}, nil, phase("b", PhasePrepared, "r2"))
	if len(out.actions) != 0 {
		t.Fatalf("every host prepared, check in flight: %v, want nothing", actionStrings(out.actions))
	}
	out = s.done(verify, nil)
	if s.m.st.Rule1.Status != RuleOK {
		t.Fatalf("after the check: rule %+v", s.m.st.Rule1)
	}
	s.mustFind(out, ActSwitch, "a")

	failed := rollingMachine(t, runRules{keep: 3}, "a", "b")
	failed.done(Action{Kind: ActPrepare, Host: "a", Release: "r2"}, nil, phase("a", PhasePrepared, "r2"))
	out = failed.done(failed.m.work[verifyWork], errors.New("no rollback path: a: gone"))
	if _, ok := find(out, ActFinalize, ""); ok || failed.m.st.Rule1.Status != RuleFailed {
		t.Fatalf("failed check with b still preparing: rule %+v, actions %v (the end waits for b)", failed.m.st.Rule1, actionStrings(out.actions))
	}
	out = failed.done(Action{Kind: ActPrepare, Host: "b", Release: "r2"}, nil, phase("b", PhasePrepared, "r2"))
	fin := failed.mustFind(out, ActFinalize, "")
	if fin.Outcome != OutcomeFailed || fin.Prune || !strings.Contains(fin.Reason, "--no-rollback-path") || !strings.Contains(fin.Reason, "a: gone") {
		t.Fatalf("failed check: finalize %+v", fin)
	}
	if _, ok := find(out, ActSwitch, ""); ok {
		t.Fatal("switched after a failed rollback-path check")
	}

	over := rollingMachine(t, runRules{skipRollbackPath: "rebuilt host", overrideBy: "olivia"}, "a", "b")
	over.done(Action{Kind: ActPrepare, Host: "a", Release: "r2"}, nil, phase("a", PhasePrepared, "r2"))
	over.done(Action{Kind: ActPrepare, Host: "b", Release: "r2"}, nil, phase("b", PhasePrepared, "r2"))
	out = over.done(over.m.work[verifyWork], errors.New("no rollback path: a: gone"))
	if over.m.st.Rule1.Status != RuleOverridden || !strings.Contains(over.m.st.Rule1.Note, "overridden by olivia (rebuilt host)") {
		t.Fatalf("override: %+v", over.m.st.Rule1)
	}
	over.mustFind(out, ActSwitch, "a")
}

// TestStepMigratesOnceBeforeTheFirstSwitch: the migrate hooks are their
// own work before any switch; the switches wait for them; the smoke
// checks go to one host; a resumed run that journaled the migration never
// runs it again.
func TestStepMigratesOnceBeforeTheFirstSwitch(t *testing.T) {
	s := rollingMachine(t, runRules{migrate: true, smoke: true}, "a", "b", "c", "d")
	out := s.done(s.m.work[verifyWork], nil)
	for _, h := range []string{"a", "b", "c", "d"} {
		out = s.done(Action{Kind: ActPrepare, Host: h, Release: "r2"}, nil, phase(h, PhasePrepared, "r2"))
	}
	mig := s.mustFind(out, ActMigrate, "a")
	if _, ok := find(out, ActSwitch, ""); ok || s.m.st.Wave != 1 {
		t.Fatalf("switches before the migration: %v (wave %d)", actionStrings(out.actions), s.m.st.Wave)
	}
	if out := s.step(tickInput{}); len(out.actions) != 0 {
		t.Fatalf("while migrating: %v", actionStrings(out.actions))
	}
	out = s.done(mig, nil, Event{Type: EvObserved, Host: "a", Observed: &Observation{Kind: ObsMigrated, OK: true, Note: "a"}})
	sa, sb := s.mustFind(out, ActSwitch, "a"), s.mustFind(out, ActSwitch, "b")
	if !sa.Smoke || sb.Smoke {
		t.Fatalf("smoke checks go to one host: a %v b %v", sa.Smoke, sb.Smoke)
	}
	if it := s.m.st.Checklist; len(it) != 1 || it[0].ID != ItemMigrations || it[0].State != ItemVerified {
		t.Fatalf("checklist after the migration: %+v", it)
	}

	// The process dies here; another resumes the run from its journal.
	r := newMachine(Fold(s.evs), s.m.planner, s.m.rules)
	r.st.Run = "run-1"
	rs := &stepper{t: t, m: r, now: t0.Add(time.Minute)}
	out = rs.step(resumeInput{actor: owner, observed: []HostObservation{{Name: "a", HostStatus: HostStatus{Current: "r1"}}}})
	if _, ok := find(out, ActMigrate, ""); ok {
		t.Fatal("a resumed run migrates again")
	}
	if a, b := rs.mustFind(out, ActSwitch, "a"), rs.mustFind(out, ActSwitch, "b"); a.Smoke == b.Smoke {
		t.Fatalf("resumed: smoke on a %v b %v, want exactly one", a.Smoke, b.Smoke)
	}
}

func TestStepMigrationFailureFailsTheRun(t *testing.T) {
	s := rollingMachine(t, runRules{migrate: true, keep: 3}, "a", "b")
	out := s.done(s.m.work[verifyWork], nil)
	for _, h := range []string{"a", "b"} {
		out = s.done(Action{Kind: ActPrepare, Host: h, Release: "r2"}, nil, phase(h, PhasePrepared, "r2"))
	}
	out = s.done(s.mustFind(out, ActMigrate, "a"), errors.New(`migrate "./m.sh": exit status 3`))
	fin := s.mustFind(out, ActFinalize, "")
	if fin.Outcome != OutcomeFailed || !strings.Contains(fin.Reason, "host a failed: migrate") || fin.Prune {
		t.Fatalf("finalize %+v", fin)
	}
	if h := s.m.st.Host("a"); h.Phase != PhaseFailed || h.Touched {
		t.Fatalf("host a: %+v", h)
	}
}

// TestStepAutoRollbackTrigger: one measurement per window; a breach rolls
// back as actor auto through the command rule; a failing source is asked
// again a window later.
func TestStepAutoRollbackTrigger(t *testing.T) {
	tr := &TriggerSpec{ErrorRate: 1, ErrorRateSet: true, For: 3 * time.Second}
	s := canaryStepper(t, runRules{trigger: tr})
	first := s.m.work[triggerWork]
	if first.Kind != ActTrigger || first.Window != 3*time.Second || first.Delay != 0 || first.Release != "r2" {
		t.Fatalf("trigger at the start: %+v", first)
	}
	measured := func(a Action, m Measurement, err error) output {
		return s.step(measureInput{key: triggerWork, action: a, m: m, err: err})
	}
	out := measured(first, Measurement{Requests: 100, ErrorRate: 0.005}, nil)
	next := s.mustFind(out, ActTrigger, "")
	if next.Delay != 0 || s.m.st.Status == StatusRollingBack {
		t.Fatalf("within the threshold: %+v, status %s", next, s.m.st.Status)
	}
	out = measured(next, Measurement{}, errors.New("refused"))
	if again := s.mustFind(out, ActTrigger, ""); again.Delay != 3*time.Second {
		t.Fatalf("after a failed measurement: %+v", again)
	}
	// A stale result (of work already replaced) counts for nothing.
	if out := measured(next, Measurement{Requests: 100, ErrorRate: 0.5}, nil); len(out.events) != 0 {
		t.Fatalf("a stale measurement journaled %v", types(out.events))
	}
	out = measured(s.m.work[triggerWork], Measurement{Requests: 200, ErrorRate: 0.05}, nil)
	if got := types(out.events); !slices.Equal(got[:3], []string{"MetricSample", "CommandAccepted", "RollbackStarted"}) {
		t.Fatalf("breach journaled %v", got)
	}
	if s.m.st.Status != StatusRollingBack || s.m.st.RollbackBy != "auto" || !strings.Contains(s.m.st.Reason, "auto-rollback trigger: error rate 5.00% > 1% for 3s") {
		t.Fatalf("after the breach: %s by %s: %s", s.m.st.Status, s.m.st.RollbackBy, s.m.st.Reason)
	}
	if s.m.busy(triggerWork) {
		t.Fatal("the trigger keeps measuring during the rollback")
	}
}

// liveCanary is a canary of a and b at its last step with every host live
// and all traffic on r2, as the planner will finish it.
func liveCanary(t *testing.T, rules runRules) *stepper {
	s := canaryStepper(t, rules)
	s.done(s.m.work[verifyWork], nil)
	// The prepares end with the rest of the canary already journaled.
	pa, pb := s.m.work[hostWork("a")], s.m.work[hostWork("b")]
	s.step(workInput{results: []workResult{
		{key: hostWork("a"), action: pa, done: true, events: prepared("a")},
		{key: hostWork("b"), action: pb, done: true, events: cat(prepared("b"), []Event{step(2, 100)}, live("a", "b"), []Event{weight(100)})},
	}})
	return s
}

// TestStepSettleJudgesTheReleaseWithAllItsTraffic: a successful deploy is
// measured once more before it succeeds: a failing measurement rolls it
// back (actor auto); a passing one ends it after the settle time.
func TestStepSettleJudgesTheReleaseWithAllItsTraffic(t *testing.T) {
	g := &GateSpec{ErrorRate: 0.001, Interval: 2 * time.Second, Count: 2, FailureLimit: 2}
	rules := runRules{gate: g, settle: 3 * time.Second, probe: true, routed: true, keep: 3}

	bad := liveCanary(t, rules)
	if bad.m.st.Settling != OutcomeSucceeded || !bad.m.busy(gateWork) {
		t.Fatalf("settling %q, gate busy %v", bad.m.st.Settling, bad.m.busy(gateWork))
	}
	if err := Check(bad.m.st, Command{Kind: CmdPause, Actor: op}); !errors.Is(err, ErrRunFinishing) {
		t.Fatalf("pause while settling: %v", err)
	}
	if err := Check(bad.m.st, Command{Kind: CmdRollback, Actor: op}); err != nil {
		t.Fatalf("rollback while settling: %v", err)
	}
	out := bad.step(measureInput{key: gateWork, action: bad.m.work[gateWork], m: Measurement{Requests: 500, ErrorRate: 0.05}})
	if bad.m.st.Status != StatusRollingBack || bad.m.st.RollbackBy != "auto" || !strings.Contains(bad.m.st.Reason, "SLO gate failed with all traffic on r2") {
		t.Fatalf("after a failing last measurement: %s by %s: %s", bad.m.st.Status, bad.m.st.RollbackBy, bad.m.st.Reason)
	}
	if r := bad.mustFind(out, ActRoute, ""); r.Weight != 0 {
		t.Fatalf("the rollback does not move traffic back first: %+v", r)
	}

	good := liveCanary(t, rules)
	out = good.step(measureInput{key: gateWork, action: good.m.work[gateWork], m: Measurement{Requests: 500}})
	if !out.wake.Equal(t0.Add(3*time.Second)) || good.m.busy(finalizeWork) {
		t.Fatalf("a passing measurement before the settle time: wake %v, finalizing %v", out.wake, good.m.busy(finalizeWork))
	}
	good.now = t0.Add(3 * time.Second)
	out = good.step(tickInput{})
	fin := good.mustFind(out, ActFinalize, "")
	if fin.Outcome != OutcomeSucceeded || !fin.SettleRoute || !fin.Prune || !good.m.st.Finishing {
		t.Fatalf("finalize %+v finishing %v", fin, good.m.st.Finishing)
	}
	if err := Check(good.m.st, Command{Kind: CmdRollback, Actor: op}); !errors.Is(err, ErrRunFinishing) {
		t.Fatalf("rollback while finishing: %v", err)
	}
	out = good.step(finalInput{probe: &ProbeSummary{Rate: 10, Requests: 100}})
	if got := types(out.events); !slices.Equal(got[len(got)-2:], []string{"Report", "RunFinished"}) || good.m.st.Outcome != OutcomeSucceeded {
		t.Fatalf("end journaled %v, outcome %s", got, good.m.st.Outcome)
	}
	if v := good.m.st.Report.Verdict; v != "HITLESS" {
		t.Fatalf("verdict %q", v)
	}

	// An interrupt while settling finishes the decided outcome at once.
	cut := liveCanary(t, rules)
	out = cut.step(stopInput{})
	if fin := cut.mustFind(out, ActFinalize, ""); fin.Outcome != OutcomeSucceeded {
		t.Fatalf("interrupted while settling: %+v", fin)
	}
	if !slices.ContainsFunc(out.events, func(e Event) bool {
		return e.Type == EvNotice && strings.Contains(e.Error, "r2 was not judged with all its traffic")
	}) {
		t.Fatalf("the journal does not say the last measurement was cut short: %v", types(out.events))
	}
}

// TestStepFinishWaitsForWorkInFlight: a run ends only when no host work is
// in flight.
func TestStepFinishWaitsForWorkInFlight(t *testing.T) {
	s := rollingMachine(t, runRules{}, "a", "b")
	out := s.done(s.m.work[verifyWork], nil)
	out = s.done(Action{Kind: ActPrepare, Host: "a", Release: "r2"}, errors.New("disk full"))
	if _, ok := find(out, ActFinalize, ""); ok {
		t.Fatal("finished while b is still being prepared")
	}
	out = s.done(Action{Kind: ActPrepare, Host: "b", Release: "r2"}, nil, phase("b", PhasePrepared, "r2"))
	if fin := s.mustFind(out, ActFinalize, ""); fin.Outcome != OutcomeFailed || !strings.Contains(fin.Reason, "host a failed: disk full") {
		t.Fatalf("finalize %+v", fin)
	}
}

// TestStepStopAndHalt: an interrupted run starts nothing new and ends when
// its work did; a run whose journal failed does nothing more.
func TestStepStopAndHalt(t *testing.T) {
	s := rollingMachine(t, runRules{}, "a", "b")
	s.done(s.m.work[verifyWork], nil)
	out := s.step(stopInput{})
	if got := types(out.events); !slices.Equal(got, []string{"Notice"}) || s.m.done() {
		t.Fatalf("stop: %v, done %v", got, s.m.done())
	}
	out = s.done(Action{Kind: ActPrepare, Host: "a", Release: "r2"}, nil, phase("a", PhasePrepared, "r2"))
	if len(out.actions) != 0 || s.m.done() {
		t.Fatalf("after a result: %v, done %v", actionStrings(out.actions), s.m.done())
	}
	s.done(Action{Kind: ActPrepare, Host: "b", Release: "r2"}, nil, phase("b", PhasePrepared, "r2"))
	if !s.m.done() || s.m.st.Status == StatusFinished {
		t.Fatalf("stopped run: done %v status %s", s.m.done(), s.m.st.Status)
	}

	h := rollingMachine(t, runRules{}, "a")
	h.step(haltInput{})
	if out := h.done(h.m.work[verifyWork], nil); len(out.actions) != 0 {
		t.Fatalf("halted run acts: %v", actionStrings(out.actions))
	}

	// The journal write of a step that began work failed: the loop never
	// performed that work, and the halted run must not wait for it.
	// Here, the run's start: it began the rollback-path check and the
	// prepares.
	u := rollingMachine(t, runRules{}, "a", "b")
	var began []Action
	for _, a := range u.m.work {
		began = append(began, a)
	}
	if len(began) != 3 || u.m.work[hostWork("a")].Kind != ActPrepare {
		t.Fatalf("the start began %v", actionStrings(began))
	}
	u.step(haltInput{unstarted: began})
	if !u.m.done() || len(u.m.work) != 0 {
		t.Fatalf("halted run waits for work that never started: %v", u.m.work)
	}
}

// TestStepJournalsEveryCommand: in every status the step answers a command
// as Check does and journals the answer.
func TestStepJournalsEveryCommand(t *testing.T) {
	for _, status := range []string{"running", "paused", "rolling back", "settling"} {
		for _, k := range []CommandKind{CmdPause, CmdResume, CmdStepUp, CmdSetWeight, CmdRollback, CmdAck, CmdApprove, CmdDeploy} {
			t.Run(fmt.Sprintf("%s/%s", status, k), func(t *testing.T) {
				s := canaryStepper(t, runRules{})
				s.done(s.m.work[verifyWork], nil)
				s.step(workInput{results: []workResult{{events: cat(prepared("a", "b"), []Event{step(1, 50)}, live("a"))}}})
				switch status {
				case "paused":
					s.step(commandInput{cmd: Command{Kind: CmdPause, Actor: op}})
				case "rolling back":
					s.step(commandInput{cmd: Command{Kind: CmdRollback, Actor: op}})
				case "settling":
					s.m.emit(&output{}, s.now, Event{Type: EvSettling, Outcome: OutcomeSucceeded, Until: t0.Add(time.Second)})
				}
				c := Command{Kind: k, Actor: op, Weight: 30, Item: ItemIdempotent}
				want := Check(s.m.st.Clone(), c)
				out := s.step(commandInput{cmd: c})
				if fmt.Sprint(out.reply) != fmt.Sprint(want) {
					t.Fatalf("step answered %v, Check %v", out.reply, want)
				}
				first := out.events[0]
				switch {
				case want != nil && (first.Type != EvCommandRefused || first.Error != want.Error() || first.Actor != op.Name):
					t.Fatalf("refusal journaled as %+v", first)
				case want == nil && (first.Type != EvCommand || first.Command != string(k)):
					t.Fatalf("acceptance journaled as %+v", first)
				}
			})
		}
	}
}

var op = Actor{Name: "alice", Role: RoleOperator}

// TestStepTriggerWatchesTheReleaseWithAllItsTraffic: with an auto-rollback
// trigger (and no gate, no probe), a deploy whose success is decided is
// watched for one whole trigger window with all its traffic before it
// ends: a breach in that window rolls it back (actor auto), a clean window
// ends it, and a source that cannot measure says so.
func TestStepTriggerWatchesTheReleaseWithAllItsTraffic(t *testing.T) {
	tr := &TriggerSpec{ErrorRate: 1, ErrorRateSet: true, For: 3 * time.Second}
	rules := runRules{trigger: tr, routed: true}
	tests := []struct {
		name    string
		m       Measurement
		err     error
		status  Status
		outcome Outcome
		reason  string
	}{
		{"a breach in the last window rolls back", Measurement{Requests: 400, ErrorRate: 0.05}, nil, StatusRollingBack, "",
			"auto-rollback trigger: error rate 5.00% > 1% for 3s"},
		{"a clean last window succeeds", Measurement{Requests: 400, ErrorRate: 0.001}, nil, StatusRunning, OutcomeSucceeded, ""},
		{"a source that fails is journaled, the run succeeds", Measurement{}, errors.New("refused"), StatusRunning, OutcomeSucceeded,
			"could not measure r2 with all its traffic: refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := canaryStepper(t, rules).m.work[triggerWork].Serial
			s := liveCanary(t, rules)
			w := s.m.work[triggerWork]
			if s.m.st.Settling != OutcomeSucceeded || w.Kind != ActTrigger || w.Serial == before || w.Delay != 0 {
				t.Fatalf("settling %q, trigger %+v: the trigger does not start a fresh window with all the traffic", s.m.st.Settling, w)
			}
			if what, left, running, ok := s.m.st.Countdown(s.now); !ok || !running || left != 3*time.Second {
				t.Fatalf("countdown %q %s running %v ok %v, want the trigger's 3s window", what, left, running, ok)
			}
			s.now = t0.Add(time.Hour)
			if out := s.step(tickInput{}); s.m.busy(finalizeWork) || len(out.actions) != 0 {
				t.Fatalf("finished before the trigger's window ended: %v", actionStrings(out.actions))
			}
			out := s.step(measureInput{key: triggerWork, action: w, m: tt.m, err: tt.err})
			if s.m.st.Status != tt.status {
				t.Fatalf("status %s, want %s (%v)", s.m.st.Status, tt.status, types(out.events))
			}
			if s.m.busy(triggerWork) {
				t.Fatal("the trigger measures again after its last window")
			}
			if tt.status == StatusRollingBack {
				if s.m.st.RollbackBy != "auto" || !strings.Contains(s.m.st.Reason, tt.reason) {
					t.Fatalf("rollback by %s: %s", s.m.st.RollbackBy, s.m.st.Reason)
				}
				return
			}
			if fin := s.mustFind(out, ActFinalize, ""); fin.Outcome != tt.outcome {
				t.Fatalf("finalize %+v", fin)
			}
			if tt.reason != "" && !slices.ContainsFunc(out.events, func(e Event) bool { return strings.Contains(e.Error, tt.reason) }) {
				t.Fatalf("no notice %q in %v", tt.reason, out.events)
			}
		})
	}
}

// TestStepWithAGateTheTriggerDoesNotHoldTheEnd: with a gate, the gate
// judges the release with all its traffic; the trigger goes on measuring
// meanwhile (and may still roll back) but the run does not wait for its
// window.
func TestStepWithAGateTheTriggerDoesNotHoldTheEnd(t *testing.T) {
	tr := &TriggerSpec{ErrorRate: 1, ErrorRateSet: true, For: time.Minute}
	g := &GateSpec{ErrorRate: 0.001, Interval: 2 * time.Second, Count: 1, FailureLimit: 1}
	s := liveCanary(t, runRules{trigger: tr, gate: g, routed: true})
	if !s.m.busy(gateWork) || !s.m.busy(triggerWork) || s.m.watching() {
		t.Fatalf("gate busy %v, trigger busy %v, waited for %v", s.m.busy(gateWork), s.m.busy(triggerWork), s.m.watching())
	}
	out := s.step(measureInput{key: gateWork, action: s.m.work[gateWork], m: Measurement{Requests: 500}})
	if fin := s.mustFind(out, ActFinalize, ""); fin.Outcome != OutcomeSucceeded {
		t.Fatalf("finalize %+v", fin)
	}
}

// pausedCanary is a canary of hosts a-d over steps 25, 50, 100 holding
// each step 10 s, at step 1 with host a live and 25 % of the traffic, then
// paused by an operator.
func pausedCanary(t *testing.T) *stepper {
	t.Helper()
	env := &plan.Environment{Name: "prod", Strategy: plan.Strategy{Kind: plan.Canary, Steps: []int{25, 50, 100}}}
	info := RunInfo{Kind: KindDeploy, App: "shop", Env: "prod", Strategy: "canary", Release: "r2", Previous: "r1", Steps: []int{25, 50, 100}}
	for _, h := range []string{"a", "b", "c", "d"} {
		info.Hosts = append(info.Hosts, RunHost{Name: h, Current: "r1"})
	}
	s := &stepper{t: t, m: newMachine(NewState(), PlannerFor(env, nil, 10*time.Second), runRules{routed: true}), now: t0}
	s.start(info)
	s.done(s.m.work[verifyWork], nil)
	var res []workResult
	for _, h := range []string{"a", "b", "c", "d"} {
		res = append(res, workResult{key: hostWork(h), action: s.m.work[hostWork(h)], done: true, events: prepared(h)})
	}
	s.step(workInput{results: res})
	s.carryOut()
	if st := s.m.st; st.Step != 1 || st.Weight != 25 || st.Host("a").Phase != PhaseLive || st.Host("b").Phase != PhasePrepared {
		t.Fatalf("canary at step %d, weight %g, a %s, b %s", st.Step, st.Weight, st.Host("a").Phase, st.Host("b").Phase)
	}
	s.now = t0.Add(2 * time.Second)
	if out := s.step(commandInput{cmd: Command{Kind: CmdPause, Actor: op}}); out.reply != nil {
		t.Fatal(out.reply)
	}
	return s
}

// carryOut reports the work the step asked for as done (host work live,
// routes applied) until nothing is asked any more.
func (s *stepper) carryOut() {
	s.t.Helper()
	for range 20 {
		var res []workResult
		for k, a := range s.m.work {
			switch k.Kind {
			case WorkHost:
				res = append(res, workResult{key: k, action: a, done: true, events: live(a.Host)})
			case WorkRoute:
				res = append(res, workResult{key: k, action: a, done: true, events: []Event{weight(a.Weight)}})
			}
		}
		if len(res) == 0 {
			return
		}
		slices.SortFunc(res, func(a, b workResult) int { return strings.Compare(a.key.String(), b.key.String()) })
		s.step(workInput{results: res})
	}
	s.t.Fatal("the work never ended")
}

// TestStepSteppingWhilePausedStaysPaused: after a pause, +, - and P move
// the canary once, the step is carried out (hosts, then traffic), and the
// run stays paused: no countdown runs, and long after nothing has moved.
func TestStepSteppingWhilePausedStaysPaused(t *testing.T) {
	tests := []struct {
		name   string
		cmds   []CommandKind
		step   int
		weight float64
		// left is the hold left once resumed: a step started while paused
		// holds its whole 10 s; step 1 ran 2 s before the pause.
		left time.Duration
	}{
		{"+ steps once", []CommandKind{CmdStepUp}, 2, 50, 10 * time.Second},
		{"+ then - undoes it", []CommandKind{CmdStepUp, CmdStepDown}, 1, 25, 10 * time.Second},
		{"P goes to the last step", []CommandKind{CmdPromoteAll}, 3, 100, 0},
		{"- at the first step is refused, nothing moves", []CommandKind{CmdStepDown}, 1, 25, 8 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := pausedCanary(t)
			for _, k := range tt.cmds {
				s.now = s.now.Add(time.Second)
				s.step(commandInput{cmd: Command{Kind: k, Actor: op}})
				s.carryOut()
			}
			st := s.m.st
			if st.Status != StatusPaused || st.PausedBy != op.Name {
				t.Fatalf("status %s by %q after %v, want paused by %s", st.Status, st.PausedBy, tt.cmds, op.Name)
			}
			if st.Step != tt.step || st.Weight != tt.weight {
				t.Fatalf("step %d at %g%%, want step %d at %g%% carried out", st.Step, st.Weight, tt.step, tt.weight)
			}
			if _, _, running, ok := st.Countdown(s.now); ok && running {
				t.Fatal("a countdown runs while paused")
			}
			seq := st.Seq
			s.now = s.now.Add(15 * time.Second)
			out := s.step(tickInput{})
			if len(out.events) != 0 || len(out.actions) != 0 || st.Seq != seq {
				t.Fatalf("15 s later something moved: %v %v", types(out.events), actionStrings(out.actions))
			}
			for _, e := range s.evs {
				if e.Type == EvResumed {
					t.Fatalf("the run was resumed: %+v", e)
				}
			}
			// Resumed, the hold goes on from where it stood.
			s.step(commandInput{cmd: Command{Kind: CmdResume, Actor: op}})
			if st.Step < len(st.Info.Steps) {
				what, left, running, ok := st.Countdown(s.now)
				next := fmt.Sprintf("step %d (%d%%)", st.Step+1, st.Info.Steps[st.Step])
				if !ok || !running || left != tt.left || what != next {
					t.Fatalf("after resume: countdown %q %s running %v ok %v", what, left, running, ok)
				}
			}
		})
	}
}

// TestStepKeepsDrainedOnlyWhenHalted: the end of a failed run puts the
// backends it drained back into rotation, unless on_failure is halt (the
// plan asks to stop where it is); a successful run always does.
func TestStepKeepsDrainedOnlyWhenHalted(t *testing.T) {
	tests := []struct {
		name string
		halt bool
		fail bool
		keep bool
	}{
		{"failed, on_failure rollback", false, true, false},
		{"failed, on_failure halt", true, true, true},
		{"succeeded, on_failure halt", true, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := rollingMachine(t, runRules{halt: tt.halt}, "a")
			s.done(s.m.work[verifyWork], nil)
			var err error
			evs := []Event{phase("a", PhasePrepared, "r2")}
			if tt.fail {
				err, evs = errors.New("disk full"), nil
			}
			out := s.done(Action{Kind: ActPrepare, Host: "a", Release: "r2"}, err, evs...)
			for range 5 {
				if _, ok := find(out, ActFinalize, ""); ok {
					break
				}
				a, ok := find(out, ActSwitch, "a")
				if !ok {
					t.Fatalf("neither a switch nor the end: %v", actionStrings(out.actions))
				}
				out = s.done(a, nil, live("a")...)
			}
			if fin := s.mustFind(out, ActFinalize, ""); fin.KeepDrained != tt.keep || (fin.Outcome == OutcomeFailed) != tt.fail {
				t.Fatalf("finalize %+v, want keep drained %v", fin, tt.keep)
			}
		})
	}
}

// TestStepRollbackSaysWhichHostsItNeverSwitched: at the end of a canary
// rolled back at its first step, the one host it switched is reverted and
// the others say they were skipped and still run r1 (not "prepared").
func TestStepRollbackSaysWhichHostsItNeverSwitched(t *testing.T) {
	s := pausedCanary(t)
	s.step(commandInput{cmd: Command{Kind: CmdRollback, Actor: op}})
	for range 10 {
		if s.m.busy(finalizeWork) {
			break
		}
		var res []workResult
		for k, a := range s.m.work {
			switch k.Kind {
			case WorkHost:
				res = append(res, workResult{key: k, action: a, done: true, events: []Event{phase(a.Host, PhaseReverted, a.Release)}})
			case WorkRoute:
				res = append(res, workResult{key: k, action: a, done: true, events: []Event{weight(a.Weight)}})
			}
		}
		s.step(workInput{results: res})
	}
	s.step(finalInput{})
	if s.m.st.Outcome != OutcomeRolledBack {
		t.Fatalf("outcome %s", s.m.st.Outcome)
	}
	want := map[string]Phase{"a": PhaseReverted, "b": PhaseSkipped, "c": PhaseSkipped, "d": PhaseSkipped}
	for _, h := range s.m.st.Hosts {
		if h.Phase != want[h.Name] || h.Current != "r1" {
			t.Errorf("%s: %s on %s, want %s on r1", h.Name, h.Phase, h.Current, want[h.Name])
		}
	}
	var said bool
	for _, e := range s.evs {
		said = said || (e.Host == "b" && e.Phase == PhaseSkipped && e.Message == "not switched by this run: still on r1")
	}
	if !said {
		t.Error("the journal does not say b was not switched")
	}
}

// TestStepRouterFailureRollsBack: a route change that fails is journaled
// and rolls the run back (actor auto), traffic first; a rollback whose
// route change fails ends the run failed instead of retrying forever.
func TestStepRouterFailureRollsBack(t *testing.T) {
	s := canaryStepper(t, runRules{routed: true})
	s.done(s.m.work[verifyWork], nil)
	s.step(workInput{results: []workResult{
		{key: hostWork("a"), action: s.m.work[hostWork("a")], done: true, events: prepared("a")},
		{key: hostWork("b"), action: s.m.work[hostWork("b")], done: true, events: prepared("b")},
	}})
	out := s.done(s.mustFind(output{actions: []Action{s.m.work[hostWork("a")]}}, ActSwitch, "a"), nil, live("a")...)
	route := s.mustFind(out, ActRoute, "")
	if route.Weight != 50 {
		t.Fatalf("route %+v", route)
	}
	out = s.done(route, errors.New("connection refused"))
	st := s.m.st
	if st.Status != StatusRollingBack || st.RollbackBy != "auto" || !strings.Contains(st.Reason, "router: connection refused") {
		t.Fatalf("after the failed route: %s by %q: %q (%v)", st.Status, st.RollbackBy, st.Reason, types(out.events))
	}
	if !slices.ContainsFunc(out.events, func(e Event) bool { return e.Type == EvNotice && e.Error == "router: connection refused" }) {
		t.Fatalf("the failure is not journaled: %v", types(out.events))
	}
	// The rollback reverts a (no traffic was moved); then settles the route.
	out = s.done(s.mustFind(out, ActRevert, "a"), nil, phase("a", PhaseReverted, "r1"))
	fin := s.mustFind(out, ActFinalize, "")
	if fin.Outcome != OutcomeRolledBack {
		t.Fatalf("finalize %+v", fin)
	}

	// A rollback whose traffic cannot be moved back ends failed.
	s = canaryStepper(t, runRules{routed: true})
	s.done(s.m.work[verifyWork], nil)
	s.step(workInput{results: []workResult{
		{key: hostWork("a"), action: s.m.work[hostWork("a")], done: true, events: prepared("a")},
		{key: hostWork("b"), action: s.m.work[hostWork("b")], done: true, events: prepared("b")},
	}})
	out = s.done(s.m.work[hostWork("a")], nil, live("a")...)
	out = s.done(s.mustFind(out, ActRoute, ""), nil, weight(50))
	out = s.step(commandInput{cmd: Command{Kind: CmdRollback, Actor: op}})
	back := s.mustFind(out, ActRoute, "")
	if back.Weight != 0 {
		t.Fatalf("rollback route %+v", back)
	}
	out = s.done(back, errors.New("connection refused"))
	if _, ok := find(out, ActRoute, ""); ok {
		t.Fatal("the failed route is tried again at once")
	}
	// The switch of b, begun with step 2, ends first.
	out = s.done(s.m.work[hostWork("b")], nil, live("b")...)
	if fin := s.mustFind(out, ActFinalize, ""); fin.Outcome != OutcomeFailed || !strings.Contains(fin.Reason, "rollback could not move traffic: router: connection refused") {
		t.Fatalf("finalize %+v", fin)
	}
}

// TestStepRebalanceFollowsTheStrategy: a routed rolling deploy's switches
// split traffic by capacity as each host comes back; a canary's do not
// (its steps move traffic); the step says which.
func TestStepRebalanceFollowsTheStrategy(t *testing.T) {
	t.Run("rolling", func(t *testing.T) {
		s := rollingMachine(t, runRules{routed: true}, "a", "b")
		s.done(s.m.work[verifyWork], nil)
		s.done(s.m.work[hostWork("a")], nil, prepared("a")...)
		out := s.done(s.m.work[hostWork("b")], nil, prepared("b")...)
		if a := s.mustFind(out, ActSwitch, "a"); !a.Rebalance {
			t.Fatalf("rolling switch %+v does not rebalance", a)
		}
	})
	t.Run("rolling without a router", func(t *testing.T) {
		s := rollingMachine(t, runRules{}, "a", "b")
		s.done(s.m.work[verifyWork], nil)
		s.done(s.m.work[hostWork("a")], nil, prepared("a")...)
		out := s.done(s.m.work[hostWork("b")], nil, prepared("b")...)
		if a := s.mustFind(out, ActSwitch, "a"); a.Rebalance {
			t.Fatalf("switch %+v rebalances without a router", a)
		}
	})
	t.Run("canary", func(t *testing.T) {
		s := canaryStepper(t, runRules{routed: true, traffic: true})
		s.done(s.m.work[verifyWork], nil)
		s.done(s.m.work[hostWork("a")], nil, prepared("a")...)
		out := s.done(s.m.work[hostWork("b")], nil, prepared("b")...)
		if a := s.mustFind(out, ActSwitch, "a"); a.Rebalance {
			t.Fatalf("canary switch %+v rebalances", a)
		}
	})
}

// TestStepAbortRollsBackWhatItSwitched: a second interrupt (abortInput)
// turns a stopped deploy into a rollback of the hosts it touched, within
// the same run, ending "aborted"; a rollback already running, or a run
// with nothing switched, just stops or ends.
func TestStepAbortRollsBackWhatItSwitched(t *testing.T) {
	s := rollingMachine(t, runRules{}, "a", "b", "c", "d")
	s.done(s.m.work[verifyWork], nil)
	var out output
	for _, h := range []string{"a", "b", "c", "d"} {
		out = s.done(s.m.work[hostWork(h)], nil, phase(h, PhasePrepared, "r2"))
	}
	// Wave 1 (a, b) switches: a goes live, b's restart hangs.
	s.mustFind(out, ActSwitch, "b")
	out = s.done(s.mustFind(out, ActSwitch, "a"), nil, live("a")...)
	s.step(workInput{results: []workResult{{key: hostWork("b"), action: s.m.work[hostWork("b")], events: []Event{phase("b", PhaseSwitching, "r2")}}}})
	s.step(stopInput{})
	if s.m.done() {
		t.Fatal("the stopped run ended with b's switch in flight")
	}
	out = s.step(abortInput{actor: owner})
	i := slices.IndexFunc(out.events, func(e Event) bool { return e.Type == EvRollbackStart })
	if i < 0 || out.events[i].Command != string(CmdAbort) || out.events[i].Actor != "olivia" || s.m.st.Status != StatusRollingBack {
		t.Fatalf("abort journaled %v, status %s", types(out.events), s.m.st.Status)
	}
	if _, ok := find(out, ActRevert, "a"); !ok {
		t.Fatalf("a is not rolled back at once: %v", actionStrings(out.actions))
	}
	if _, ok := find(out, ActRevert, "c"); ok {
		t.Fatal("c, never touched, is rolled back")
	}
	// b's cancelled restart comes back as a failure; b is rolled back too.
	out = s.done(Action{Kind: ActSwitch, Host: "b", Release: "r2"}, context.Canceled)
	out = s.done(s.mustFind(out, ActRevert, "b"), nil, phase("b", PhaseReverted, "r1"))
	out = s.done(Action{Kind: ActRevert, Host: "a", Release: "r1"}, nil, phase("a", PhaseReverted, "r1"))
	if fin := s.mustFind(out, ActFinalize, ""); fin.Outcome != OutcomeAborted {
		t.Fatalf("finalize %+v, want aborted", fin)
	}

	// Aborted while preparing: nothing to roll back, the run ends aborted.
	p := rollingMachine(t, runRules{}, "a", "b")
	p.step(stopInput{})
	p.step(abortInput{actor: owner})
	p.done(p.m.work[verifyWork], context.Canceled)
	p.done(Action{Kind: ActPrepare, Host: "a", Release: "r2"}, context.Canceled)
	out = p.done(Action{Kind: ActPrepare, Host: "b", Release: "r2"}, context.Canceled)
	if fin := p.mustFind(out, ActFinalize, ""); fin.Outcome != OutcomeAborted {
		t.Fatalf("aborted while preparing: finalize %+v (rule 1 %s: %s)", fin, p.m.st.Rule1.Status, p.m.st.Rule1.Note)
	}

	// A second interrupt during a rollback stops it where it is (resume
	// finishes it): nothing new starts.
	r := rollingMachine(t, runRules{}, "a", "b")
	r.done(r.m.work[verifyWork], nil)
	r.done(r.m.work[hostWork("a")], nil, phase("a", PhasePrepared, "r2"))
	out = r.done(r.m.work[hostWork("b")], nil, phase("b", PhasePrepared, "r2"))
	out = r.done(r.mustFind(out, ActSwitch, "a"), nil, live("a")...)
	out = r.step(commandInput{cmd: Command{Kind: CmdRollback, Actor: owner}})
	r.step(abortInput{actor: owner})
	out = r.done(Action{Kind: ActSwitch, Host: "b", Release: "r2"}, nil, live("b")...)
	if len(out.actions) != 0 {
		t.Fatalf("an aborted rollback starts %v", actionStrings(out.actions))
	}
}

// TestStepRTOEndsWhenEveryHostIsBack: a rollback's recovery time runs from
// its start to the moment the last host is back on the old release; the
// probe's settle window after it watches a fleet that has recovered and is
// not counted (the RTO used to end with the run and read as the settle
// time). A rollback that fails has no RTO.
func TestStepRTOEndsWhenEveryHostIsBack(t *testing.T) {
	rules := runRules{settle: 3 * time.Second, probe: true}
	rollback := func(t *testing.T) *stepper {
		env := &plan.Environment{Name: "prod", Strategy: plan.Strategy{Kind: plan.Rolling}}
		info := RunInfo{Kind: KindRollback, App: "shop", Env: "prod", Strategy: "rolling", Release: "r1", Previous: "r2",
			Waves: PlanWaves([]string{"a", "b"}, 2), Hosts: []RunHost{{Name: "a", Current: "r2"}, {Name: "b", Current: "r2"}}}
		s := &stepper{t: t, m: newMachine(NewState(), PlannerFor(env, nil, 0), rules), now: t0}
		return s.start(info)
	}
	for _, tt := range []struct {
		name    string
		bErr    error
		wantRTO time.Duration
	}{
		{"every host back", nil, 1500 * time.Millisecond},
		{"a host fails", errors.New("release r1 is not on this host"), 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := rollback(t)
			ra, rb := s.m.work[hostWork("a")], s.m.work[hostWork("b")]
			if ra.Kind != ActRevert || rb.Kind != ActRevert {
				t.Fatalf("a rollback run starts with %s and %s", ra.Kind, rb.Kind)
			}
			s.now = t0.Add(time.Second)
			s.done(ra, nil, phase("a", PhaseReverted, "r1"))
			s.now = t0.Add(1500 * time.Millisecond)
			var evs []Event
			if tt.bErr == nil {
				evs = []Event{phase("b", PhaseReverted, "r1")}
			}
			out := s.done(rb, tt.bErr, evs...)
			if tt.bErr == nil {
				if s.m.st.Settling != OutcomeSucceeded || !out.wake.Equal(t0.Add(4500*time.Millisecond)) {
					t.Fatalf("settling %q until %v", s.m.st.Settling, out.wake)
				}
				s.now = t0.Add(4500 * time.Millisecond)
				out = s.step(tickInput{})
				s.mustFind(out, ActFinalize, "")
			}
			s.now = s.now.Add(200 * time.Millisecond)
			s.step(finalInput{probe: &ProbeSummary{Rate: 10, Requests: 100}})
			rep := s.m.st.Report
			if rep == nil {
				t.Fatalf("no report: %v", types(s.evs))
			}
			if rep.RTO != tt.wantRTO {
				t.Fatalf("RTO %s, want %s (outcome %s)", rep.RTO, tt.wantRTO, rep.Outcome)
			}
			back := slices.IndexFunc(s.evs, func(e Event) bool { return e.Type == EvRolledBack })
			if (back >= 0) != (tt.wantRTO > 0) {
				t.Fatalf("RolledBack journaled: %v, want %v: %v", back >= 0, tt.wantRTO > 0, types(s.evs))
			}
			if back >= 0 && (!s.evs[back].Time.Equal(t0.Add(1500*time.Millisecond)) || !strings.Contains(s.evs[back].Message, "every host back on r1 in 1.5s")) {
				t.Fatalf("RolledBack at %v: %q, want when b was back, naming r1 and the RTO", s.evs[back].Time, s.evs[back].Message)
			}
			// The journal alone gives the same RTO (a watcher, a replay).
			if st := Fold(s.evs); st.Report == nil || st.Report.RTO != tt.wantRTO {
				t.Fatalf("folded report %+v", st.Report)
			}
		})
	}
}
