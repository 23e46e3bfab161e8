package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// TargetMissingError reports a rollback target that some hosts lack or
// hold incomplete. It is found before the first switch: nothing was
// touched, and the run was not started.
type TargetMissingError struct {
	Release string
	// Hosts says, per host that cannot take the release, why
	// ("web-2: release r7 is not on the host").
	Hosts []string
}

func (e *TargetMissingError) Error() string {
	return fmt.Sprintf("cannot roll back to %s: %d host(s) lack it or hold it incomplete, nothing was switched: %s",
		e.Release, len(e.Hosts), strings.Join(e.Hosts, "; "))
}

// checkRollbackTarget checks, before any switch, that the rollback target
// is present and complete (Host.Check, done by inspectAll: checks) on every
// host that is not already on it, so that a rollback either can put the
// whole fleet on the target or touches nothing.
func (r *Run) checkRollbackTarget(ctx context.Context, statuses map[string]HostStatus, checks map[string]error) error {
	target := r.cfg.Target
	var bad []string
	for _, h := range r.cfg.Hosts {
		st := statuses[h.Name()]
		if st.Current == target {
			continue
		}
		if !slices.Contains(st.Releases, target) {
			bad = append(bad, fmt.Sprintf("%s: release %s is not on the host", h.Name(), target))
			continue
		}
		if err, checked := checks[h.Name()]; !checked {
			bad = append(bad, fmt.Sprintf("%s: release %s was not checked", h.Name(), target))
		} else if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", h.Name(), err))
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		return &TargetMissingError{Release: target, Hosts: bad}
	}
	r.targetChecked = true
	return nil
}
