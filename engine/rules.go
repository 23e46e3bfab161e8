package engine

import (
	"fmt"
	"strings"

	"flightdeck/engine/plan"
)

// deployFacts are what the rules that admit a deploy decide on; Engine.Deploy
// gathers them (the plan's migrations, the journal of the environment
// before this one).
type deployFacts struct {
	env      string
	strategy plan.StrategyKind
	release  string
	actor    string
	// findings are the destructive statements in the plan's migrations;
	// migrationsAcked says an operator acknowledged them.
	findings        []string
	migrationsAcked bool
	// before is the environment before this one in the promotion order ("":
	// this one is the first), and passedBefore says the release finished
	// successfully there.
	before       string
	passedBefore bool
	// skipPromotion, when set, is why the promotion check is overridden.
	skipPromotion string
}

// admitDeploy is the rule a deploy must pass before it takes the lock:
// destructive migrations block a rolling or canary deploy (the old release
// still runs while they apply) unless acknowledged, and the 3-2-1 rule's
// first part wants the release finished in the environment before. It
// returns the environments check for the journal and the notices an
// override leaves.
func admitDeploy(f deployFacts) (RuleCheck, []string, error) {
	if len(f.findings) > 0 && !f.migrationsAcked && (f.strategy == plan.Rolling || f.strategy == plan.Canary) {
		return RuleCheck{}, nil, &BlockedError{Reason: "destructive migrations (the old release still runs while they apply):\n  " +
			strings.Join(f.findings, "\n  ") + "\nfix them, or acknowledge with --ack migrations='REASON'"}
	}
	switch {
	case f.before == "":
		return RuleCheck{Status: RuleNA, Note: f.env + " is the first environment"}, nil, nil
	case f.passedBefore:
		return RuleCheck{Status: RuleOK, Note: f.release + " finished in the environment before " + f.env}, nil, nil
	}
	blocked := &BlockedError{Reason: fmt.Sprintf("release %s has not finished in %s, the environment before %s (3-2-1 rule); deploy it there first, or override with --skip-promotion-check --reason TEXT", f.release, f.before, f.env)}
	if f.skipPromotion == "" {
		return RuleCheck{}, nil, blocked
	}
	msg := fmt.Sprintf("3-2-1 promotion check overridden by %s (%s): %s", f.actor, f.skipPromotion, blocked.Reason)
	return RuleCheck{Status: RuleOverridden, Note: msg}, []string{msg}, nil
}
