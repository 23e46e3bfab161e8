package teatest

import (
	"strings"
	"testing"
	"time"
)

// sloPane returns the SLO pane's lines from a 160×48 capture: the text
// right of the fleet's separator, from the SLO title to the checklist's.
func sloPane(screen string) []string {
	var out []string
	in := false
	for _, l := range strings.Split(screen, "\n") {
		i := strings.LastIndex(l, "│")
		if i < 0 {
			continue
		}
		right := l[i+len("│"):]
		switch {
		case strings.Contains(right, "─ SLO"):
			in = true
		case strings.Contains(right, "─ Checklist"):
			in = false
		}
		if in {
			out = append(out, right)
		}
	}
	return out
}

// liveRows are the pane's metric lines ("v2 req …", "   err …") keyed by
// release and metric.
func liveRows(pane []string) map[string]string {
	rows := map[string]string{}
	rel := ""
	for _, l := range pane {
		f := strings.Fields(l)
		switch {
		case len(f) >= 2 && (f[1] == "req" || f[1] == "err" || f[1] == "p99"):
			rel = f[0]
			rows[rel+" "+f[1]] = l
		case len(f) >= 1 && rel != "" && (f[0] == "err" || f[0] == "p99"):
			rows[rel+" "+f[0]] = l
		}
	}
	return rows
}

// TestTmuxLiveSLOs: during a rolling, a blue/green and a symlink demo
// release the SLO pane shows per-release req/s, error rate and p99 lines
// that take a new point every second (two captures a second apart differ),
// while the run is paused and once it goes on.
func TestTmuxLiveSLOs(t *testing.T) {
	if testing.Short() {
		t.Skip("the tmux demo is skipped in -short mode")
	}
	t.Parallel()
	for _, strategy := range []string{"rolling", "bluegreen", "symlink"} {
		t.Run(strategy, func(t *testing.T) {
			// Hold the release: the probe traffic flows while it is paused.
			// A symlink release cannot be: it is over in seconds (and
			// finishing, not pausable, soon after it started); it is
			// measured while it runs. The paused ones start slowly (each
			// new service answers 503 for 3 s), so that the release is
			// still running when p arrives, on a quiet machine too (a good
			// blue/green release is over in under a second there).
			pause := strategy != "symlink"
			args := []string{"--hosts", "4", "--strategy", strategy}
			if pause {
				args = append(args, "--scenario", "slow-start")
			}
			d := startDemo(t, nil, nil, args...)
			d.waitText(waitLong, "RUNNING")
			if pause {
				d.keys("p")
				d.waitText(waitLong, "PAUSED")
			}
			// Traffic measured during the release: a req line with a rate.
			var rel string
			s := d.waitScreen("live req/s of a release", waitLong, func(s string) bool {
				if !strings.Contains(s, "RUNNING") && !strings.Contains(s, "PAUSED") {
					return false
				}
				for k, l := range liveRows(sloPane(s)) {
					if strings.HasSuffix(k, " req") && strings.Contains(l, "/s") && !strings.Contains(l, " 0.0/s") {
						rel = strings.Fields(k)[0]
						return true
					}
				}
				return false
			})
			rows := liveRows(sloPane(s))
			for _, m := range []string{"req", "err", "p99"} {
				if rows[rel+" "+m] == "" {
					t.Errorf("no %s line for %s:\n%s", m, rel, strings.Join(sloPane(s), "\n"))
				}
			}
			if !strings.Contains(strings.Join(sloPane(s), "\n"), "live ") {
				t.Errorf("the SLO pane does not say it is live:\n%s", strings.Join(sloPane(s), "\n"))
			}
			// The next sample shows within a couple of seconds: the line
			// holds more samples or has moved; while paused, and again once
			// the release goes on.
			newPoint := func(before string, paused bool) func(string) bool {
				return func(s string) bool {
					now := liveRows(sloPane(s))[rel+" req"]
					return now != "" && now != before && (!paused || strings.Contains(s, "PAUSED"))
				}
			}
			s = d.waitScreen("a new point on "+rel+"'s req line", 5*time.Second, newPoint(rows[rel+" req"], pause))
			if pause {
				d.keys("p")
				d.waitScreen("a new point once resumed", 5*time.Second, newPoint(liveRows(sloPane(s))[rel+" req"], false))
			}
			if code := d.quit(); code != 0 && code != 1 {
				t.Errorf("the demo exited with status %d; scrollback:\n%s", code, d.history())
			}
			d.assertNoLeftovers()
		})
	}
}
