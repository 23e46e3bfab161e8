// Package advise recommends a release strategy from four questions about a
// service's infrastructure — the decision matrix of SRE release guides:
//
//  1. Is there a load balancer in front of several instances?
//  2. Can you afford double the stateless capacity during a release?
//  3. Can your observability detect a regression on 1–5 % of traffic
//     within 60 seconds?
//  4. Are you validating a feature (A/B) or shipping a release?
//
// No load balancer means an atomic symlink switch; a load balancer and
// double capacity mean blue/green; without double capacity, fast
// observability means canary and slow observability means rolling. A
// feature to validate adds A/B on top of that base strategy.
//
// The package is pure: answers come from the caller (flags, a prompt or a
// release plan, see FromPlan) and the result is data plus a starter plan
// snippet that plan.Parse accepts.
package advise

import (
	"errors"
	"fmt"
	"strings"

	"flightdeck/engine/plan"
)

// Question is one of the four questions of the decision matrix. Its value is
// the name of the command-line flag that answers it.
type Question string

// The questions, in the order they are asked.
const (
	LoadBalancer      Question = "lb"
	DoubleCapacity    Question = "double-capacity"
	FastObservability Question = "fast-observability"
	Feature           Question = "feature"
)

// Questions returns the four questions in the order they are asked.
func Questions() []Question {
	return []Question{LoadBalancer, DoubleCapacity, FastObservability, Feature}
}

// Flag is the command-line flag answering q, with its dashes.
func (q Question) Flag() string { return "--" + string(q) }

// Text is the question as asked of an operator, answerable by yes or no.
func (q Question) Text() string {
	switch q {
	case LoadBalancer:
		return "Is there a load balancer in front of several instances?"
	case DoubleCapacity:
		return "Can you afford double the stateless capacity during a release?"
	case FastObservability:
		return "Can your observability detect a regression on 1-5% of traffic within 60 s?"
	case Feature:
		return "Are you validating a feature (A/B) rather than shipping a release?"
	}
	return string(q) + "?"
}

// Short is a few words naming what q asks, for tables of answers.
func (q Question) Short() string {
	switch q {
	case LoadBalancer:
		return "load balancer in front of several instances"
	case DoubleCapacity:
		return "double stateless capacity during a release"
	case FastObservability:
		return "detects a 1-5% regression within 60 s"
	case Feature:
		return "validating a feature (A/B)"
	}
	return string(q)
}

// Source says where an answer came from.
type Source string

// Where answers come from.
const (
	SourceFlag   Source = "flag"
	SourcePlan   Source = "plan"
	SourcePrompt Source = "prompt"
	// SourceDefault is an unasked optional question (Feature: shipping a
	// release unless told otherwise).
	SourceDefault Source = "default"
)

// Answer is the answer to one question and where it came from.
type Answer struct {
	Yes    bool   `json:"yes"`
	Source Source `json:"source"`
	// Why explains an answer read from a plan or defaulted, e.g.
	// "hosts have slots (blue/green)".
	Why string `json:"why,omitempty"`
}

// Answers holds what is known so far; a question without an entry is
// unanswered.
type Answers map[Question]Answer

// Set records an answer for q unless q is already answered, so that callers
// can apply sources from the strongest (flags) to the weakest (defaults).
// It reports whether the answer was recorded.
func (a Answers) Set(q Question, ans Answer) bool {
	if _, ok := a[q]; ok {
		return false
	}
	a[q] = ans
	return true
}

func (a Answers) yes(q Question) (yes, known bool) {
	ans, ok := a[q]
	return ans.Yes, ok
}

// Needed returns the questions that still need an answer before Recommend
// can decide, in asking order. Which questions matter depends on earlier
// answers: without a load balancer, capacity and observability do not
// change the recommendation, and with double capacity observability does
// not either. An unanswered question is assumed to take the branch that
// needs more answers, so that asking Needed()[0] until Needed is empty asks
// only what matters. Feature is optional (see Optional), never needed.
func (a Answers) Needed() []Question {
	var out []Question
	lb, ok := a.yes(LoadBalancer)
	if !ok {
		out, lb = append(out, LoadBalancer), true
	}
	if !lb {
		return out
	}
	double, ok := a.yes(DoubleCapacity)
	if !ok {
		out, double = append(out, DoubleCapacity), false
	}
	if double {
		return out
	}
	if _, ok := a[FastObservability]; !ok {
		out = append(out, FastObservability)
	}
	return out
}

// Optional returns the questions that refine the recommendation but have a
// safe default when nobody can be asked: Feature, unless answered (no
// feature means shipping a release).
func (a Answers) Optional() []Question {
	if _, ok := a[Feature]; ok {
		return nil
	}
	return []Question{Feature}
}

// MissingError is returned by Recommend when a needed question has no
// answer.
type MissingError struct {
	Questions []Question
}

func (e *MissingError) Error() string {
	flags := make([]string, len(e.Questions))
	for i, q := range e.Questions {
		flags[i] = q.Flag()
	}
	return fmt.Sprintf("cannot recommend a strategy yet: answer %s (or run on a terminal to be asked)", strings.Join(flags, ", "))
}

// ErrMissing matches a *MissingError with errors.Is.
var ErrMissing = errors.New("questions left unanswered")

// Is makes errors.Is(err, ErrMissing) true for a *MissingError.
func (e *MissingError) Is(target error) bool { return target == ErrMissing }

// Recommendation is the advised strategy with its cost, rollback time,
// reasons and a starter plan.
type Recommendation struct {
	// Strategy is the base strategy for shipping releases.
	Strategy plan.StrategyKind `json:"strategy"`
	// Name is the strategy's human name, e.g. "blue/green".
	Name string `json:"name"`
	// AB is true when a feature is being validated: A/B cohorts run on top
	// of the base strategy.
	AB bool `json:"ab"`
	// Cost is the stateless capacity needed during a release, relative to
	// normal ("2×").
	Cost string `json:"cost"`
	// CostMin and CostMax bound Cost as factors (1.1 and 1.5 for "1.1–1.5×").
	CostMin float64 `json:"cost_min"`
	CostMax float64 `json:"cost_max"`
	// Rollback says how a rollback happens and how long it takes.
	Rollback string `json:"rollback"`
	// Reasons explain the choice, one sentence each, from the answers.
	Reasons []string `json:"reasons"`
	// Answers are the answers the recommendation was made from.
	Answers Answers `json:"answers"`
	// Snippet is a starter plan for the base strategy: the environments
	// block of a flightdeck.yaml (add app and source to make it a plan).
	Snippet string `json:"snippet"`
	// ABSnippet is, when AB is set, the starter plan for the A/B
	// experiment (an environment with strategy ab).
	ABSnippet string `json:"ab_snippet,omitempty"`
	// ABCost and ABRollback describe the A/B layer when AB is set.
	ABCost     string `json:"ab_cost,omitempty"`
	ABRollback string `json:"ab_rollback,omitempty"`
}

// profile is what is fixed about a strategy, whatever led to it.
type profile struct {
	name             string
	cost             string
	costMin, costMax float64
	rollback         string
}

var profiles = map[plan.StrategyKind]profile{
	plan.Symlink:   {"atomic symlink", "1×", 1, 1, "instant re-point of current to the previous release, ~ms"},
	plan.Rolling:   {"rolling", "1×–1.1×", 1, 1.1, "re-roll the waves back to the previous release, minutes"},
	plan.Canary:    {"canary", "1.1–1.5×", 1.1, 1.5, "set the canary weight to 0, seconds"},
	plan.BlueGreen: {"blue/green", "2×", 2, 2, "flip the router back to the old colour, < 1 s"},
	plan.AB:        {"A/B", "2× on the hosts in the experiment (both slots run)", 2, 2, "drop the cohort rule, instant (per cohort)"},
}

// Recommend decides the strategy from the answers. A needed question
// without an answer gives a *MissingError listing every such question; an
// unanswered Feature counts as shipping a release.
func Recommend(a Answers) (Recommendation, error) {
	if missing := a.Needed(); len(missing) > 0 {
		return Recommendation{}, &MissingError{Questions: missing}
	}
	lb, _ := a.yes(LoadBalancer)
	double, _ := a.yes(DoubleCapacity)
	fast, _ := a.yes(FastObservability)
	feature, _ := a.yes(Feature)

	var kind plan.StrategyKind
	var reasons []string
	switch {
	case !lb:
		kind = plan.Symlink
		reasons = append(reasons,
			"No load balancer spreads traffic over several instances, so there is no traffic to shift: each host switches current to the new release with one atomic rename().",
			"Every host is prepared before any switches, so the fleet changes release within milliseconds and a rollback re-points the link just as fast.")
	case double:
		kind = plan.BlueGreen
		reasons = append(reasons,
			"A load balancer and double capacity let the new release start complete in the idle colour, pass health and smoke tests there, and take all traffic in one router flip.",
			"The old colour stays warm (keep_warm), so a rollback is a flip back, well under a second, with no redeploy.")
		if !fast {
			reasons = append(reasons, "Blue/green does not rely on spotting a regression on a small share of traffic: the smoke test runs before any user sees the release.")
		}
	case fast:
		kind = plan.Canary
		reasons = append(reasons,
			"Without double capacity, blue/green is out; a canary needs only the few extra instances of its first steps.",
			"Observability that detects a regression on 1-5% of traffic within 60 s lets the SLO gate judge each step (1 → 5 → 25 → 100 %) and roll back on its own before most users see the release.")
	default:
		kind = plan.Rolling
		reasons = append(reasons,
			"Without double capacity, blue/green is out; without observability that sees a regression on 1-5% of traffic within 60 s, a canary's small steps would pass blind.",
			"Rolling waves replace a few instances at a time (max_unavailable bounds the capacity lost); health checks gate each host, and a failed wave halts the release and rolls that wave back.")
	}
	if feature {
		if lb {
			reasons = append(reasons, "You are validating a feature: A/B routes a cohort (a header, a cookie, or a stable hash of a user key) to the new release, on top of the base strategy, and drops it instantly per cohort.")
		} else {
			reasons = append(reasons, "You are validating a feature: A/B needs a router to pick a cohort, so put flightdeck's router (flightdeck router) in front of the hosts first; the base strategy still ships releases.")
		}
	}

	pr := profiles[kind]
	r := Recommendation{
		Strategy: kind,
		Name:     pr.name,
		AB:       feature,
		Cost:     pr.cost,
		CostMin:  pr.costMin,
		CostMax:  pr.costMax,
		Rollback: pr.rollback,
		Reasons:  reasons,
		Answers:  a,
		Snippet:  Snippet(kind, "production"),
	}
	if feature {
		ab := profiles[plan.AB]
		r.ABCost, r.ABRollback = ab.cost, ab.rollback
		r.ABSnippet = Snippet(plan.AB, "production")
	}
	return r, nil
}

// Title is the recommendation in a few words, e.g. "canary + A/B on top".
func (r Recommendation) Title() string {
	if r.AB {
		return r.Name + " + A/B on top"
	}
	return r.Name
}

// Text is the recommendation for a person: the strategy, its cost and
// rollback time, the answers it rests on (and where each came from), the
// reasons and the starter plan.
func (r Recommendation) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Recommended: %s\n", r.Title())
	fmt.Fprintf(&b, "  cost:      %s the stateless capacity during a release\n", r.Cost)
	fmt.Fprintf(&b, "  rollback:  %s\n", r.Rollback)
	if r.AB {
		fmt.Fprintf(&b, "  A/B:       cost %s; rollback: %s\n", r.ABCost, r.ABRollback)
	}
	b.WriteString("\nAnswers:\n")
	for _, q := range Questions() {
		ans, ok := r.Answers[q]
		if !ok {
			fmt.Fprintf(&b, "  %-45s  -    (not needed)\n", q.Short())
			continue
		}
		yn := "no"
		if ans.Yes {
			yn = "yes"
		}
		from := string(ans.Source)
		switch ans.Source {
		case SourceFlag:
			from = "flag " + q.Flag()
		case SourcePlan:
			from = "from the plan: " + ans.Why
		case SourceDefault:
			from = "default: " + ans.Why
		}
		fmt.Fprintf(&b, "  %-45s  %-3s  (%s)\n", q.Short(), yn, from)
	}
	b.WriteString("\nWhy:\n")
	for _, s := range r.Reasons {
		fmt.Fprintf(&b, "  - %s\n", s)
	}
	b.WriteString("\nStarter plan (add app: and source: to make it a flightdeck.yaml):\n\n")
	b.WriteString(r.Snippet)
	if r.AB {
		b.WriteString("\nFor the feature experiment (A/B on the same hosts, with slots):\n\n")
		b.WriteString(r.ABSnippet)
	}
	return b.String()
}
