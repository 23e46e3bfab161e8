package lines

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"flightdeck/engine"
)

// Kind is what an event is about, for `journal show --only`.
type Kind string

// Kinds of events. An event may be of several kinds, or of none (host
// progress, checklist evidence, measurements).
const (
	KindActions   Kind = "actions"   // what people (and the auto-rollback trigger) did: commands, pauses, rollbacks
	KindGates     Kind = "gates"     // SLO gate verdicts and traffic steps
	KindFailures  Kind = "failures"  // failed hosts, refused commands, errors, breaches
	KindRollbacks Kind = "rollbacks" // rollbacks started and finished
	KindTraffic   Kind = "traffic"   // weight and cohort changes
	KindRun       Kind = "run"       // run started, resumed, finished, its report
)

// Kinds lists every kind, for help and validation.
func Kinds() []Kind {
	return []Kind{KindActions, KindGates, KindFailures, KindRollbacks, KindTraffic, KindRun}
}

// KindsOf returns the kinds of e.
func KindsOf(e engine.Event) []Kind {
	var out []Kind
	switch e.Type {
	case engine.EvRunStarted, engine.EvRunResumed, engine.EvReport:
		out = append(out, KindRun)
		if e.Type == engine.EvRunStarted && e.Actor != "" {
			out = append(out, KindActions)
		}
	case engine.EvRunFinished:
		out = append(out, KindRun)
		if e.Error != "" || e.Outcome != engine.OutcomeSucceeded {
			out = append(out, KindFailures)
		}
	case engine.EvCommand, engine.EvPaused, engine.EvResumed, engine.EvApprovalRequested:
		out = append(out, KindActions)
	case engine.EvCommandRefused:
		out = append(out, KindActions, KindFailures)
	case engine.EvRollbackStart:
		out = append(out, KindActions, KindRollbacks)
	case engine.EvRolledBack:
		out = append(out, KindRollbacks)
	case engine.EvGateResult:
		out = append(out, KindGates)
		if e.Gate != nil && e.Gate.Verdict == engine.VerdictFail {
			out = append(out, KindFailures)
		}
	case engine.EvStepStarted:
		out = append(out, KindGates)
	case engine.EvWeightSet, engine.EvCohortSet:
		out = append(out, KindTraffic)
		if e.Actor != "" {
			out = append(out, KindActions)
		}
	case engine.EvHostPhase:
		if e.Phase == engine.PhaseFailed || e.Error != "" {
			out = append(out, KindFailures)
		}
	case engine.EvNotice:
		if e.Error != "" {
			out = append(out, KindFailures)
		}
	case engine.EvChecklistItem:
		if e.Item != nil && e.Item.State == "failed" {
			out = append(out, KindFailures)
		}
	}
	return out
}

// ParseKinds reads a comma-separated list of kinds.
func ParseKinds(s string) ([]Kind, error) {
	var out []Kind
	for _, f := range strings.Split(s, ",") {
		k := Kind(strings.TrimSpace(f))
		if k == "" {
			continue
		}
		if !slices.Contains(Kinds(), k) {
			var names []string
			for _, k := range Kinds() {
				names = append(names, string(k))
			}
			return nil, fmt.Errorf("unknown kind %q (one of %s)", k, strings.Join(names, ", "))
		}
		out = append(out, k)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no kind given (one of actions, gates, failures, rollbacks, traffic, run)")
	}
	return out, nil
}

// Has reports whether e is of one of kinds.
func Has(e engine.Event, kinds []Kind) bool {
	for _, k := range KindsOf(e) {
		if slices.Contains(kinds, k) {
			return true
		}
	}
	return false
}

// text is Format without its timestamp.
func text(e engine.Event) string {
	s := Format(e)
	ts := e.Time.Local().Format("15:04:05.000") + " "
	return strings.TrimPrefix(s, ts)
}

// Summary renders a run as a short Markdown incident summary: what ran,
// its verdict and cause, the gates with their numbers, the rollback and
// its RTO, then a timeline of who did what when (actions, gates,
// failures, rollbacks, traffic changes), in UTC.
func Summary(evs []engine.Event) string {
	st := engine.Fold(evs)
	var b strings.Builder
	info := st.Info
	utc := func(t time.Time) string { return t.UTC().Format("15:04:05") }
	outcome := strings.ToUpper(strings.ReplaceAll(string(st.Outcome), "_", " "))
	if st.Status != engine.StatusFinished {
		outcome = "UNFINISHED"
	}
	what := fmt.Sprintf("deploy %s → %s", orDash(info.Previous), info.Release)
	if info.Kind == engine.KindRollback {
		what = "rollback to " + info.Release
	}
	fmt.Fprintf(&b, "### %s/%s: %s — %s\n\n", info.App, info.Env, what, outcome)
	started, by := st.Started, ""
	for _, e := range evs {
		if e.Type == engine.EvRunStarted {
			by = e.Actor
			break
		}
	}
	dur := st.Finished.Sub(started)
	if st.Finished.IsZero() && len(evs) > 0 {
		dur = evs[len(evs)-1].Time.Sub(started)
	}
	fmt.Fprintf(&b, "- **run** `%s`: %s, %d hosts, started %s UTC by %s, took %s\n",
		st.Run, info.Strategy, len(info.Hosts), started.UTC().Format("2006-01-02 15:04:05"), orDash(by), dur.Round(time.Millisecond))
	if cause := causeOf(st, evs); cause != "" {
		fmt.Fprintf(&b, "- **cause**: %s\n", cause)
	}
	if len(st.Gates) > 0 {
		fmt.Fprintf(&b, "- **gates**:")
		for i, g := range st.Gates {
			sep := ";"
			if i == 0 {
				sep = ""
			}
			fmt.Fprintf(&b, "%s step %d %s (%s)", sep, g.Step, strings.ToUpper(string(g.Verdict)), g.Reason)
		}
		b.WriteString("\n")
	}
	for _, e := range evs {
		if e.Type == engine.EvRollbackStart {
			target := e.Target
			if target == "" {
				target = orDash(info.Previous)
			}
			fmt.Fprintf(&b, "- **rollback**: to %s, started %s UTC by %s", target, utc(e.Time), orDash(e.Actor))
			if st.Report != nil && st.Report.RTO > 0 {
				fmt.Fprintf(&b, ", RTO %s", st.Report.RTO.Round(time.Millisecond))
			}
			b.WriteString("\n")
			break
		}
	}
	if info.Kind == engine.KindRollback && st.Report != nil && st.Report.RTO > 0 {
		fmt.Fprintf(&b, "- **rollback**: RTO %s\n", st.Report.RTO.Round(time.Millisecond))
	}
	if r := st.Report; r != nil {
		if len(r.Failed) > 0 {
			fmt.Fprintf(&b, "- **failed hosts**: %s\n", strings.Join(r.Failed, ", "))
		}
		if p := r.Probe; p != nil {
			fmt.Fprintf(&b, "- **probe**: %d requests, %d failed, p99 %s\n", p.Requests, p.Failed, p.P99.Round(100*time.Microsecond))
		}
		fmt.Fprintf(&b, "- **verdict**: %s\n", r.Verdict)
	}
	b.WriteString("\n| time (UTC) | who | what |\n|---|---|---|\n")
	kinds := []Kind{KindActions, KindGates, KindFailures, KindRollbacks, KindTraffic}
	for _, e := range evs {
		if e.Type == engine.EvReport || !(Has(e, kinds) || e.Type == engine.EvRunStarted || e.Type == engine.EvRunFinished) {
			continue
		}
		msg := text(e)
		if msg == "" {
			continue
		}
		if e.Actor != "" {
			msg = strings.Replace(msg, " by "+e.Actor, "", 1)
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", utc(e.Time), mdCell(e.Actor), mdCell(msg))
	}
	return b.String()
}

// causeOf says why a run did not succeed: the failed gate, the trigger's
// breach or the operator's rollback, a failed host, the run's error.
func causeOf(st *engine.State, evs []engine.Event) string {
	if st.Outcome == engine.OutcomeSucceeded && st.Status == engine.StatusFinished {
		return ""
	}
	var parts []string
	for _, g := range st.Gates {
		if g.Verdict == engine.VerdictFail {
			parts = append(parts, fmt.Sprintf("gate step %d failed: %s", g.Step, g.Reason))
			break
		}
	}
	for _, e := range evs {
		if e.Type == engine.EvRollbackStart {
			who := orDash(e.Actor)
			if e.Message != "" {
				parts = append(parts, fmt.Sprintf("rolled back by %s: %s", who, e.Message))
			} else {
				parts = append(parts, "rolled back by "+who)
			}
			break
		}
	}
	for _, e := range evs {
		if e.Type == engine.EvHostPhase && e.Phase == engine.PhaseFailed {
			parts = append(parts, fmt.Sprintf("%s failed: %s", e.Host, orDash(e.Error)))
			break
		}
	}
	if len(parts) == 0 && st.Err != "" {
		parts = append(parts, st.Err)
	}
	return strings.Join(parts, "; ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// mdCell makes s safe in a Markdown table cell.
func mdCell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}
