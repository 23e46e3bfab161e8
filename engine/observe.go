package engine

import "fmt"

// The checklist as the run shows it: items derived, in the step, from the
// facts the run observed (Observed events) and, at the end, from its
// probe traffic.

// itemFor is the checklist item an observation settles (none when it
// settles nothing), given the state with the observation folded in.
func (m *machine) itemFor(o Observation) []Event {
	st := m.st
	ob := st.Observed
	var it ChecklistItem
	switch o.Kind {
	case ObsHealth:
		it = ChecklistItem{ID: ItemHealth503, State: ItemVerified,
			Evidence: fmt.Sprintf("%d of %d restarted services answered non-2xx (or refused) before they were ready", ob.NotReady, ob.Restarts)}
		if ob.NotReady == 0 {
			// Ready at once is no violation, but it shows nothing either.
			it.State = ItemUnknown
			it.Evidence = fmt.Sprintf("%d restarted services were ready at once: no 503 could be observed; acknowledge, or add a start-up delay check", ob.Restarts)
		}
	case ObsSmoke:
		it = ChecklistItem{ID: ItemSmoke, State: ItemVerified, Evidence: o.Note}
		if !o.OK {
			it.State = ItemFailed
		}
	case ObsCacheNamespace:
		it = ChecklistItem{ID: ItemCacheNS, State: ItemVerified, Evidence: o.Note}
		if !o.OK {
			it.State = ItemFailed
		}
	case ObsMigrated:
		if !o.OK {
			return nil // the host fails with the error
		}
		for _, cur := range st.Checklist {
			if cur.ID == ItemMigrations && cur.State == ItemFailed {
				return nil // destructive findings stay visible
			}
		}
		it = ChecklistItem{ID: ItemMigrations, State: ItemVerified,
			Evidence: fmt.Sprintf("migrate hook ran on %s before the first switch", o.Note)}
	default:
		return nil
	}
	it.Title = ItemTitle(it.ID)
	return []Event{{Type: EvChecklistItem, Item: &it}}
}

// finalChecklist settles what the whole run showed: graceful shutdown,
// judged by the probe requests lost while services restarted. Errors a
// release answered itself (its own 500s) are not lost connections: they
// are the gate's business, and the evidence counts them apart.
func finalChecklist(st *State, rep *Report) []Event {
	p := rep.Probe
	for _, it := range st.Checklist {
		if it.ID != ItemGraceful || it.State != ItemUnknown || p == nil || st.Observed.Restarts == 0 {
			continue
		}
		it.State = ItemVerified
		it.Evidence = fmt.Sprintf("%d services restarted under %g req/s of probe traffic; %d of %d probe requests were lost (refused, reset, timed out or unanswered)",
			st.Observed.Restarts, p.Rate, p.Lost(), p.Requests)
		if p.ReleaseErrors > 0 {
			it.Evidence += fmt.Sprintf("; %d more were errors the releases answered themselves (not a shutdown failure)", p.ReleaseErrors)
		}
		if p.Lost() > 0 {
			it.State = ItemFailed
		}
		return []Event{{Type: EvChecklistItem, Item: &it}}
	}
	return nil
}
