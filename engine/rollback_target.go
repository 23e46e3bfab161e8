package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
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
// is present and complete (Host.Check) on every host that is not already
// on it, so that a rollback either can put the whole fleet on the target
// or touches nothing.
func (r *Run) checkRollbackTarget(ctx context.Context, statuses map[string]HostStatus) error {
	target := r.cfg.Target
	var mu sync.Mutex
	var bad []string
	var wg sync.WaitGroup
	for _, h := range r.cfg.Hosts {
		st := statuses[h.Name()]
		if st.Current == target {
			continue
		}
		if !slices.Contains(st.Releases, target) {
			mu.Lock()
			bad = append(bad, fmt.Sprintf("%s: release %s is not on the host", h.Name(), target))
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.sem <- struct{}{}
			defer func() { <-r.sem }()
			if err := h.Check(ctx, target); err != nil {
				mu.Lock()
				bad = append(bad, fmt.Sprintf("%s: %v", h.Name(), err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
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
