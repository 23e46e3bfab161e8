package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"flightdeck/engine"
)

// switchLog wraps a fleet's hosts and records, per switch, whether the
// engine told the host it had just checked the release.
type switchLog struct {
	mu  sync.Mutex
	got []switchCall
}

type switchCall struct {
	host, release string
	action        engine.SwitchKind
	checked       bool
}

type loggedHost struct {
	engine.Host
	log *switchLog
}

func (h loggedHost) Switch(ctx context.Context, info engine.SwitchInfo) error {
	h.log.mu.Lock()
	h.log.got = append(h.log.got, switchCall{h.Name(), info.Release, info.Action, info.Checked})
	h.log.mu.Unlock()
	return h.Host.Switch(ctx, info)
}

func (l *switchLog) wrap(f *fleet) {
	for i, h := range f.hosts {
		f.hosts[i] = loggedHost{Host: h, log: l}
	}
}

// calls returns the switches to release recorded so far, and forgets all.
func (l *switchLog) take(release string) []switchCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []switchCall
	for _, c := range l.got {
		if c.release == release {
			out = append(out, c)
		}
	}
	l.got = nil
	return out
}

// TestDeploySwitchTrustsItsOwnFreshPrepare: a deploy switches a host
// without listing the release again when its own Prepare (which checks
// what it wrote) ended a moment before, and lists it when a hook ran on
// the host in between.
func TestDeploySwitchTrustsItsOwnFreshPrepare(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
		checked     bool
	}{
		{"no hooks", "", true},
		{"after_prepare hook", "hooks:\n  after_prepare: [\"true\"]\n", false},
		{"before_switch hook", "hooks:\n  before_switch: [\"true\"]\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFleet(t, 4, tc.extra)
			var log switchLog
			log.wrap(f)
			f.deploy("r1")
			st := f.deploy("r2")
			calls := log.take("r2")
			if len(calls) != 4 {
				t.Fatalf("switches to r2: %+v, want 4", calls)
			}
			for _, c := range calls {
				if c.action != engine.SwitchDeploy || c.checked != tc.checked {
					t.Errorf("%s: switch %s checked=%v, want %s checked=%v", c.host, c.action, c.checked, engine.SwitchDeploy, tc.checked)
				}
			}
			// The journal says which switches did not list the release.
			evs, err := engine.ReadJournal(f.stateDir, st.Run)
			if err != nil {
				t.Fatal(err)
			}
			said := 0
			for _, e := range evs {
				if e.Type == engine.EvHostPhase && e.Phase == engine.PhaseSwitching &&
					strings.Contains(e.Message, "checked by this run's prepare") {
					said++
				}
			}
			if want := map[bool]int{true: 4, false: 0}[tc.checked]; said != want {
				t.Errorf("%d switching events say the prepare's check was trusted, want %d", said, want)
			}
			f.assertAllOn("r2")
		})
	}
}

// TestLateSwitchChecksTheReleaseAgain: a wave switched long after its
// hosts were prepared (here held, then the clock moved a minute) lists
// the release again, and refuses it when it was damaged meanwhile: the
// run fails and the hosts already switched are put back.
func TestLateSwitchChecksTheReleaseAgain(t *testing.T) {
	f := newFleet(t, 4, "")
	var log switchLog
	log.wrap(f)
	var skew atomic.Int64
	_, _, _, open, done := deployHeldAtRestart(t, f, func(eng *engine.Engine) {
		eng.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})

	// Wave 1 (a, b) is switched and held at its restart; c and d are
	// prepared and wait. A minute passes, and c's release loses a file.
	first := log.take("r2")
	if len(first) != 2 {
		t.Fatalf("wave 1 switches: %+v", first)
	}
	for _, c := range first {
		if !c.checked {
			t.Errorf("%s: wave 1, switched right after its prepare, listed r2 again", c.host)
		}
	}
	skew.Store(int64(time.Minute))
	victim := filepath.Join(f.dir, "hosts", "c", "releases", "r2", "fb.txt")
	if err := os.Chmod(filepath.Dir(victim), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(victim); err != nil {
		t.Fatal(err)
	}
	open()

	st := <-done
	if st.Outcome == engine.OutcomeSucceeded {
		t.Fatal("the deploy succeeded with a damaged release on c")
	}
	for _, c := range log.take("r2") {
		if c.action == engine.SwitchDeploy && c.checked {
			t.Errorf("%s: switched a minute after its prepare without listing r2", c.host)
		}
	}
	if !strings.Contains(st.Err, "fb.txt") {
		t.Errorf("run error %q does not name the missing file", st.Err)
	}
	f.assertAllOn("r1")
}
