package tui

import (
	"strings"
	"sync"
	"testing"
	"time"

	"flightdeck/engine"
	"flightdeck/themes"
)

// labRecorder is a recorder whose hosts have states of their own, like a
// lab's containers.
type labRecorder struct {
	*recorder
	mu     sync.Mutex
	states map[string]string
}

func (r *labRecorder) HostStates() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]string{}
	for k, v := range r.states {
		out[k] = v
	}
	return out
}

// TestHostStatesShowInFleetRows: with a HostStater backend the fleet pane
// has a CONTAINER column with each host's state, refreshed at each tick;
// without one there is no such column.
func TestHostStatesShowInFleetRows(t *testing.T) {
	evs := rollingRun(4)
	rec := &labRecorder{recorder: newRecorder(), states: map[string]string{"web-01": "up", "web-02": "up", "web-03": "paused", "web-04": "up"}}
	rec.hub.Publish(evs...)
	rec.hub.SetSnapshot(engine.Fold(evs))
	m := New(rec, Options{Actor: alice, Theme: themes.NoColor(), Now: func() time.Time { return evs[len(evs)-1].Time },
		Location: time.UTC, TickEvery: -1})
	m.width, m.height = 120, 30
	got, lost := m.sub.Drain()
	m.apply(feedMsg{snap: rec.hub.Snapshot(), evs: got, lost: lost, at: time.Now()})
	row := func(screen, host string) string {
		for _, l := range strings.Split(screen, "\n") {
			if strings.Contains(l, " "+host+" ") {
				return l
			}
		}
		return ""
	}
	screen := m.Render()
	if !strings.Contains(screen, "CONTAINER") {
		t.Fatalf("no CONTAINER column:\n%s", screen)
	}
	if r := row(screen, "web-03"); !strings.Contains(r, "paused") {
		t.Errorf("web-3's row does not say paused: %q", r)
	}
	if r := row(screen, "web-01"); !strings.Contains(r, " up ") {
		t.Errorf("web-1's row does not say up: %q", r)
	}
	rec.mu.Lock()
	rec.states["web-03"] = "offline"
	rec.mu.Unlock()
	m.Update(tickMsg(time.Now()))
	if r := row(m.Render(), "web-03"); !strings.Contains(r, "offline") {
		t.Errorf("after a tick web-3's row does not say offline: %q", r)
	}

	plain, _ := loaded(evs, 120, 30, nil)
	if s := plain.Render(); strings.Contains(s, "CONTAINER") {
		t.Errorf("a backend without host states shows a CONTAINER column:\n%s", s)
	}
}
