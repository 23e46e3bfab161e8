package tui

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/charmbracelet/x/ansi"

	"flightdeck/engine"
	"flightdeck/engine/sampler"
)

// liveRecorder is a recorder whose backend samples traffic: the snapshot
// the test sets is what the sampler would publish.
type liveRecorder struct {
	*recorder
	mu   sync.Mutex
	snap *sampler.Snapshot
}

func (l *liveRecorder) LiveSLO() *sampler.Snapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.snap
}

func (l *liveRecorder) set(s *sampler.Snapshot) {
	l.mu.Lock()
	l.snap = s
	l.mu.Unlock()
}

// liveSnapshot has n samples a second apart ending at end: r41 steady at
// 200 req/s, r42 at 50 req/s with its error rate and p99 rising through
// the limits (0.1 %, 200 ms) at the end.
func liveSnapshot(version uint64, n int, end time.Time) *sampler.Snapshot {
	s := &sampler.Snapshot{Version: version, Source: "router", Interval: time.Second,
		Hosts: map[string]sampler.Rate{"web-01": {RPS: 25, ErrorRate: 0.02}, "web-02": {RPS: 100}, "web-03": {NoData: true}}}
	old := sampler.Series{Release: "r41"}
	cand := sampler.Series{Release: "r42"}
	for i := range n {
		s.Times = append(s.Times, end.Add(time.Duration(i-n+1)*time.Second))
		old.Points = append(old.Points, sampler.Point{RPS: 200, ErrorRate: 0.0001, P99: 40 * time.Millisecond})
		p := sampler.Point{RPS: 50, ErrorRate: 0.0002, P99: 80 * time.Millisecond}
		if i >= n-3 {
			p = sampler.Point{RPS: 50, ErrorRate: 0.02, P99: 450 * time.Millisecond}
		}
		cand.Points = append(cand.Points, p)
	}
	s.Series = []sampler.Series{cand, old}
	return s
}

func liveCockpit(t *testing.T, w, h int, snap *sampler.Snapshot, mod func(*Options)) (*Model, *liveRecorder) {
	t.Helper()
	evs := rollingRun(4)
	// A gate result in the sampled window.
	evs = withEvents(evs, time.Second, engine.Event{Type: engine.EvGateResult,
		Gate: &engine.GateResult{Step: 1, Verdict: engine.VerdictFail, Reason: "error rate 2.00% > 0.10%"}})
	rec := &liveRecorder{recorder: newRecorder(), snap: snap}
	rec.hub.Publish(evs...)
	rec.hub.SetSnapshot(engine.Fold(evs))
	o := Options{Actor: alice, Now: func() time.Time { return evs[len(evs)-1].Time }, Location: time.UTC, TickEvery: -1, ASCII: false}
	if mod != nil {
		mod(&o)
	}
	m := New(rec, o)
	m.width, m.height = w, h
	got, lost := m.sub.Drain()
	m.apply(feedMsg{snap: rec.hub.Snapshot(), evs: got, lost: lost, at: time.Now()})
	return m, rec
}

// sloLines returns the SLO pane's lines of a render (160 wide: the pane is
// at the right of the │ separator).
func sloLines(m *Model) []string {
	var out []string
	for _, l := range m.sloPane(70, 14) {
		out = append(out, ansi.Strip(l))
	}
	return out
}

func TestLiveSLOPane(t *testing.T) {
	evEnd := rollingRun(4)
	end := evEnd[len(evEnd)-1].Time.Add(time.Second)
	m, rec := liveCockpit(t, 160, 48, liveSnapshot(7, 30, end), nil)
	lines := sloLines(m)
	pane := strings.Join(lines, "\n")
	for _, want := range []string{"live router every 1s", "limits: errors 0.10%, p99 200ms", "r41", "r42", "200/s", "50/s", "2.00%", "450ms", "✗ breach", "0.01%", "40ms", "✓ ok"} {
		if !strings.Contains(pane, want) {
			t.Errorf("SLO pane lacks %q:\n%s", want, pane)
		}
	}
	// The previous release first, then the candidate, three lines each.
	var metrics []string
	for _, l := range lines {
		f := strings.Fields(l)
		for i, w := range f {
			if (w == "req" || w == "err" || w == "p99") && i <= 1 {
				metrics = append(metrics, w)
			}
		}
	}
	if strings.Join(metrics, ",") != "req,err,p99,req,err,p99" {
		t.Errorf("metric lines %v; want req, err, p99 per release:\n%s", metrics, pane)
	}
	if strings.Index(pane, "r41") > strings.Index(pane, "r42") {
		t.Errorf("the candidate r42 comes before the previous release r41:\n%s", pane)
	}
	// The limit is a dotted line (row 3 of the Braille cells) on the err
	// and p99 lines, broken where the candidate breaches.
	errLine := lineWith(lines, "err", 1)
	if !strings.ContainsRune(errLine, 0x2800|0x02|0x10) {
		t.Errorf("r42's err line has no limit line (⠒):\n%s", errLine)
	}
	if !strings.ContainsRune(errLine, 0x2800|0x40|0x04|0x02|0x01|0x80|0x20|0x10|0x08) {
		t.Errorf("r42's err line shows no full bar where it breaches (⣿):\n%s", errLine)
	}
	// The req lines share one scale: r41's 200/s fills its cells, r42's
	// 50/s a quarter of them.
	if r41, r42 := lineWith(lines, "req", 0), lineWith(lines, "req", 1); !strings.ContainsRune(r41, '⣿') || strings.ContainsRune(r42, '⣿') || !strings.ContainsRune(r42, '⣀') {
		t.Errorf("req lines on one scale: r41 %q, r42 %q", r41, r42)
	}
	// The gate's failure is marked on the time axis.
	gate := lineWith(lines, "gate", 0)
	if !strings.Contains(gate, "✗") || !strings.Contains(gate, "step 1 FAIL") {
		t.Errorf("gate axis %q; want the failed verdict marked", gate)
	}
	// Per host in the fleet table.
	screen := screen(m)
	if !strings.Contains(screen, "REQ/S") || !strings.Contains(screen, "ERR%") {
		t.Fatalf("no per-host REQ/S and ERR%% columns:\n%s", screen)
	}
	if r := lineWith(strings.Split(screen, "\n"), "web-01", 0); !strings.Contains(r, "25") || !strings.Contains(r, "2.0%") {
		t.Errorf("web-01's row %q; want 25 req/s, 2.0%% errors", r)
	}
	// A new sample shows at the next tick: the line moved.
	before := strings.Join(sloLines(m), "\n")
	next := liveSnapshot(8, 31, end.Add(time.Second))
	next.Series[0].Points[30] = sampler.Point{RPS: 90, ErrorRate: 0.0002, P99: 70 * time.Millisecond}
	rec.set(next)
	m.Update(tickMsg(time.Now()))
	after := strings.Join(sloLines(m), "\n")
	if after == before || !strings.Contains(after, "90/s") || !strings.Contains(after, "70ms") {
		t.Errorf("after a new sample and a tick the pane did not change:\n%s", after)
	}
}

// lineWith returns the n-th line (0-based) with word as one of its
// first two fields.
func lineWith(lines []string, word string, n int) string {
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) > 0 && (f[0] == word || len(f) > 1 && f[1] == word) {
			if n == 0 {
				return l
			}
			n--
		}
	}
	return ""
}

func TestLiveSLOPaneFitsEverySize(t *testing.T) {
	end := t0.Add(time.Hour)
	for _, sz := range [][2]int{{80, 24}, {100, 30}, {120, 40}, {160, 48}, {200, 60}} {
		for _, ascii := range []bool{false, true} {
			m, _ := liveCockpit(t, sz[0], sz[1], liveSnapshot(3, 500, end), func(o *Options) { o.ASCII = ascii })
			screen := screen(m)
			lines := strings.Split(screen, "\n")
			if len(lines) > sz[1] {
				t.Errorf("%dx%d ascii=%v: %d lines", sz[0], sz[1], ascii, len(lines))
			}
			for i, l := range lines {
				if w := ansi.StringWidth(l); w > sz[0] {
					t.Errorf("%dx%d ascii=%v: line %d is %d wide: %q", sz[0], sz[1], ascii, i, w, l)
				}
			}
			if ascii && strings.ContainsFunc(screen, func(r rune) bool { return r > 127 }) {
				t.Errorf("%dx%d ascii: Unicode on screen:\n%s", sz[0], sz[1], screen)
			}
			if !strings.Contains(screen, "r42") || !strings.Contains(screen, "err") || !strings.Contains(screen, "50/s") {
				t.Errorf("%dx%d ascii=%v: no live line:\n%s", sz[0], sz[1], ascii, screen)
			}
		}
	}
}

func TestSLOPaneWithoutTrafficSource(t *testing.T) {
	b := &events{run: "prod-1", at: t0}
	b.add(0, engine.Event{Type: engine.EvRunStarted, Release: "r2", Start: &engine.RunInfo{Kind: engine.KindDeploy, Strategy: "symlink",
		Release: "r2", Previous: "r1", Hosts: []engine.RunHost{{Name: "web-1", Current: "r1"}}}})
	b.add(time.Second, engine.Event{Type: engine.EvHostPhase, Host: "web-1", Phase: engine.PhaseLive, Release: "r2"})
	m, _ := loaded(b.evs, 120, 30, func(o *Options) { o.SLO = SLO{None: true, NoSource: true}; o.NoHealthCheck = true })
	screen := screen(m)
	for _, want := range []string{"no traffic source in this plan", "no SLO limits in the plan"} {
		if !strings.Contains(screen, want) {
			t.Errorf("screen lacks %q:\n%s", want, screen)
		}
	}
	if strings.Contains(screen, "limits: errors") || strings.Contains(screen, "✓ up") || strings.Contains(screen, "ok up") {
		t.Errorf("default limits or a health nobody checked are shown:\n%s", screen)
	}
	if r := lineWith(strings.Split(screen, "\n"), "web-1", 0); !strings.Contains(r, "–") {
		t.Errorf("web-1's HEALTH is not a dash: %q", r)
	}
}

// notifyingRecorder says when a new snapshot is out, as the sampler does.
type notifyingRecorder struct {
	*liveRecorder
	changed chan struct{}
}

func (n *notifyingRecorder) LiveChanged() <-chan struct{} { return n.changed }

// A new sample redraws at once: the cockpit waits on the sampler's signal,
// not only on its clock tick.
func TestLiveSampleRedrawsWithoutTick(t *testing.T) {
	end := t0.Add(time.Hour)
	rec := &notifyingRecorder{liveRecorder: &liveRecorder{recorder: newRecorder(), snap: liveSnapshot(1, 10, end)}, changed: make(chan struct{})}
	m := New(rec, Options{Actor: alice, Now: func() time.Time { return end }, Location: time.UTC, TickEvery: -1})
	defer m.Close()
	m.width, m.height = 160, 48
	wait := m.listenLive()
	if wait == nil {
		t.Fatal("a notifying backend gives no live feed")
	}
	got := make(chan any, 1)
	go func() { got <- wait() }()
	next := liveSnapshot(2, 11, end.Add(time.Second))
	next.Series[0].Points[10] = sampler.Point{RPS: 77, ErrorRate: 0, P99: 10 * time.Millisecond}
	rec.set(next)
	close(rec.changed)
	msg := <-got
	if _, ok := msg.(liveMsg); !ok {
		t.Fatalf("the live feed returned %T, want liveMsg", msg)
	}
	m.Update(msg)
	if !strings.Contains(strings.Join(sloLines(m), "\n"), "77/s") {
		t.Errorf("the new sample is not drawn:\n%s", strings.Join(sloLines(m), "\n"))
	}
}
