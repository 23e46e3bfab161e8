package tui

// Where traffic goes: the slot (blue/green) or cohort (A/B) that serves
// each host, and the header's word for where traffic is.

import (
	"fmt"

	"flightdeck/engine"
)

// slotStrategy reports a strategy whose hosts have two slots.
func slotStrategy(strategy string) bool { return strategy == "bluegreen" || strategy == "ab" }

// hostSlots maps each host of a slot run to the slot its new release
// goes to (nil when the run has no slots).
func (m *Model) hostSlots() map[string]engine.Slot {
	info := m.snap.Info
	if !slotStrategy(info.Strategy) {
		return nil
	}
	out := make(map[string]engine.Slot, len(info.Hosts))
	for _, h := range info.Hosts {
		if h.Slot != "" {
			out[h.Name] = h.Slot
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// newServes reports whether the new release takes traffic now: all of it
// (true, false), a share of it (true, true), or none (false, false).
func (m *Model) newServes() (serves, shared bool) {
	st := m.snap
	switch {
	case st.Status == engine.StatusFinished:
		return st.Outcome == engine.OutcomeSucceeded && st.Info.Kind == engine.KindDeploy, false
	case st.Status == engine.StatusRollingBack:
		return false, false
	case st.Cohort > 0 && st.Cohort < 100:
		return true, true
	case st.Weight >= 100:
		return true, false
	case st.Weight > 0:
		return true, true
	}
	return false, false
}

// slotText is the SLOT column of a host: the slot that serves it now
// ("green", or "green+blue" while both share the traffic), and a level.
func (m *Model) slotText(hs *engine.HostState, slots map[string]engine.Slot) (string, level) {
	s, ok := slots[hs.Name]
	if !ok {
		return m.glyphs.none, lvMuted
	}
	serves, shared := m.newServes()
	switch {
	case hs.Reverted || !hs.Touched && m.snap.Status == engine.StatusFinished && !serves:
		return string(s.Other()), lvNone
	case shared:
		return string(s) + "+" + string(s.Other()), lvInfo
	case serves:
		return string(s), lvOK
	}
	return string(s.Other()), lvNone
}

// trafficWhere is the header's word for where traffic goes in a traffic
// strategy: during a blue/green run, which slot; after a run, where all
// of it is ("traffic: all → v2 (green)", never "weight 0 %").
func (m *Model) trafficWhere() string {
	st, g := m.snap, &m.glyphs
	var newSlot engine.Slot
	for _, s := range m.hostSlots() {
		newSlot = s
		break
	}
	name := func(rel string, slot engine.Slot) string {
		if slot != "" {
			return rel + " (" + string(slot) + ")"
		}
		return rel
	}
	if len(st.Info.Steps) == 0 && !slotStrategy(st.Info.Strategy) {
		return "" // no traffic strategy: the hosts' releases say it
	}
	serves, shared := m.newServes()
	switch {
	case st.Status == engine.StatusFinished:
		live := m.liveRelease()
		if live == "" {
			return ""
		}
		slot := newSlot
		if live != st.Info.Release && newSlot != "" {
			slot = newSlot.Other()
		}
		return fmt.Sprintf("traffic: all %s %s", g.arrow, name(live, slot))
	case st.Info.Strategy == "bluegreen":
		if serves && !shared {
			return fmt.Sprintf("traffic %s %s", g.arrow, name(st.Info.Release, newSlot))
		}
		prevSlot := engine.Slot("")
		if newSlot != "" {
			prevSlot = newSlot.Other()
		}
		return fmt.Sprintf("traffic %s %s", g.arrow, name(orNone(st.Info.Previous, "(none)"), prevSlot))
	}
	return ""
}
