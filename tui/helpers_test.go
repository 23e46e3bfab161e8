package tui

import (
	"context"
	"fmt"
	"sync"
	"time"

	"flightdeck/engine"
	"flightdeck/themes"
)

// recorder is a Backend over a real engine.Hub that records what the
// cockpit asks for. sendErr, when set, is returned by Send.
type recorder struct {
	hub *engine.Hub

	mu        sync.Mutex
	cmds      []engine.Command
	rollbacks []string
	deploys   []string // "good" or "faulty"
	sendErr   error
	presence  []Presence
}

func newRecorder() *recorder { return &recorder{hub: engine.NewHub()} }

func (r *recorder) Hub() *engine.Hub { return r.hub }

func (r *recorder) rec() *recorder { return r }

func (r *recorder) Send(_ context.Context, c engine.Command) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cmds = append(r.cmds, c)
	return r.sendErr
}

func (r *recorder) Rollback(_ context.Context, _ engine.Actor, to string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rollbacks = append(r.rollbacks, to)
	return nil
}

func (r *recorder) Deploy(context.Context, engine.Actor) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deploys = append(r.deploys, "good")
	return nil
}

// faultRecorder is a recorder that can deploy a faulty release (as the
// demo's backend does).
type faultRecorder struct {
	*recorder
	fault string
}

func (f *faultRecorder) Fault() string { return f.fault }

func (f *faultRecorder) DeployFault(context.Context, engine.Actor) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deploys = append(f.deploys, "faulty")
	return nil
}

func (r *recorder) Presence() []Presence {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Presence(nil), r.presence...)
}

func (r *recorder) commands() []engine.Command {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]engine.Command(nil), r.cmds...)
}

var (
	t0    = time.Date(2025, 3, 14, 9, 30, 0, 0, time.UTC)
	alice = engine.Actor{Name: "alice", Role: engine.RoleOperator, Via: "tui"}
	olga  = engine.Actor{Name: "olga", Role: engine.RoleOwner, Via: "tui"}
)

// events is a small builder of a run's events with increasing seq/time.
type events struct {
	run string
	seq uint64
	at  time.Time
	evs []engine.Event
}

func (b *events) add(d time.Duration, e engine.Event) *events {
	b.seq++
	b.at = b.at.Add(d)
	e.Seq, e.Run = b.seq, b.run
	if e.Time.IsZero() {
		e.Time = b.at
	}
	b.evs = append(b.evs, e)
	return b
}

// rollingRun returns the events of a rolling deploy of n hosts (waves of
// two) caught in wave 1: hosts of wave 1 switching, one preparing host,
// SLO samples and a checklist.
func rollingRun(n int) []engine.Event {
	b := &events{run: "prod-20250314T093000-abc", at: t0}
	hosts := make([]engine.RunHost, n)
	var waves [][]string
	for i := range n {
		hosts[i] = engine.RunHost{Name: fmt.Sprintf("web-%02d", i+1), Current: "r41", Releases: []string{"r40", "r41"}}
		if i%2 == 0 {
			waves = append(waves, nil)
		}
		waves[len(waves)-1] = append(waves[len(waves)-1], hosts[i].Name)
	}
	b.add(0, engine.Event{Type: engine.EvRunStarted, Actor: "olivia", Release: "r42", Start: &engine.RunInfo{
		Kind: engine.KindDeploy, App: "shop", Env: "prod", Strategy: "rolling", Release: "r42", Previous: "r41",
		Hosts: hosts, Waves: waves}})
	for i, h := range hosts {
		switch {
		case i == 2:
			b.add(100*time.Millisecond, engine.Event{Type: engine.EvHostPhase, Host: h.Name, Phase: engine.PhasePreparing, Release: "r42",
				Progress: &engine.Progress{FilesDone: 7, FilesTotal: 20, BytesDone: 3 << 20, BytesTotal: 8 << 20, BytesSent: 1 << 20}})
		default:
			b.add(100*time.Millisecond, engine.Event{Type: engine.EvHostPhase, Host: h.Name, Phase: engine.PhasePrepared, Release: "r42"})
		}
	}
	b.add(time.Second, engine.Event{Type: engine.EvWaveStarted, Wave: 1, Message: "wave 1/" + fmt.Sprint(len(waves)) + ": web-01, web-02"})
	b.add(200*time.Millisecond, engine.Event{Type: engine.EvHostPhase, Host: "web-01", Phase: engine.PhaseSwitching, Release: "r42"})
	b.add(200*time.Millisecond, engine.Event{Type: engine.EvHostPhase, Host: "web-01", Phase: engine.PhaseRestart, Release: "r42"})
	b.add(0, engine.Event{Type: engine.EvHostOutput, Host: "web-01", Command: "restart", Message: "restarting shop (pid 4242)"})
	b.add(300*time.Millisecond, engine.Event{Type: engine.EvHostPhase, Host: "web-01", Phase: engine.PhaseLive, Release: "r42"})
	b.add(100*time.Millisecond, engine.Event{Type: engine.EvHostPhase, Host: "web-02", Phase: engine.PhaseSwitching, Release: "r42"})
	b.add(100*time.Millisecond, engine.Event{Type: engine.EvHostPhase, Host: "web-02", Phase: engine.PhaseHealth, Release: "r42"})
	for i := range 24 {
		b.add(500*time.Millisecond, engine.Event{Type: engine.EvMetricSample, Sample: &engine.Measurement{
			Release: "r41", Requests: float64(400 + i*3), ErrorRate: 0.0002, P99: time.Duration(90+i%5) * time.Millisecond}})
		b.add(0, engine.Event{Type: engine.EvMetricSample, Sample: &engine.Measurement{
			Release: "r42", Requests: float64(100 + i), ErrorRate: 0.00005 * float64(i%20), P99: time.Duration(120+i*4) * time.Millisecond}})
	}
	b.add(0, engine.Event{Type: engine.EvChecklistItem, Item: &engine.ChecklistItem{ID: "health-503", Title: "health returns 503 while starting", State: "verified", Evidence: "503 for 180ms after restart"}})
	b.add(0, engine.Event{Type: engine.EvChecklistItem, Item: &engine.ChecklistItem{ID: "migrations", Title: "migrations additive-only", State: "unknown", Required: true}})
	b.add(0, engine.Event{Type: engine.EvChecklistItem, Item: &engine.ChecklistItem{ID: "jobs", Title: "background jobs idempotent", State: "acknowledged", AckBy: "bob"}})
	b.add(0, engine.Event{Type: engine.EvChecklistItem, Item: &engine.ChecklistItem{ID: "smoke", Title: "post-deploy smoke test", State: "failed", Evidence: "GET /cart 500"}})
	b.add(0, engine.Event{Type: engine.EvWaiting, Until: b.at.Add(15 * time.Second), Message: "pausing 15s before the next wave"})
	return b.evs
}

// withEvents appends events after a run's events.
func withEvents(base []engine.Event, d time.Duration, more ...engine.Event) []engine.Event {
	last := base[len(base)-1]
	for i := range more {
		more[i].Seq = last.Seq + uint64(i) + 1
		more[i].Run = last.Run
		if more[i].Time.IsZero() {
			more[i].Time = last.Time.Add(d * time.Duration(i+1))
		}
	}
	return append(append([]engine.Event(nil), base...), more...)
}

// loaded returns a cockpit whose hub holds the state folded from evs (as
// the engine publishes it) and whose model has taken the feed.
func loaded(evs []engine.Event, w, h int, mod func(*Options)) (*Model, *recorder) {
	return loadedOn(newRecorder(), evs, w, h, mod)
}

// loadedOn is loaded over a given recorder (or a backend built on one).
func loadedOn[B interface {
	Backend
	rec() *recorder
}](b B, evs []engine.Event, w, h int, mod func(*Options)) (*Model, *recorder) {
	rec := b.rec()
	rec.hub.Publish(evs...)
	rec.hub.SetSnapshot(engine.Fold(evs))
	o := Options{Actor: alice, Theme: themes.NoColor(), Now: func() time.Time { return evs[len(evs)-1].Time.Add(2 * time.Second) },
		Location: time.UTC, TickEvery: -1}
	if mod != nil {
		mod(&o)
	}
	m := New(b, o)
	m.width, m.height = w, h
	evs2, lost := m.sub.Drain()
	m.apply(feedMsg{snap: rec.hub.Snapshot(), evs: evs2, lost: lost, at: time.Now()})
	return m, rec
}
