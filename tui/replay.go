package tui

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"

	"flightdeck/engine"
)

// errReplay refuses every action of a replay.
var errReplay = errors.New("this is a replay of a journaled run: nothing can be changed")

// replayBackend feeds a cockpit from a replayed journal and refuses every
// action.
type replayBackend struct{ hub *engine.Hub }

func (b replayBackend) Hub() *engine.Hub                                     { return b.hub }
func (b replayBackend) Send(context.Context, engine.Command) error           { return errReplay }
func (b replayBackend) Rollback(context.Context, engine.Actor, string) error { return errReplay }
func (b replayBackend) Deploy(context.Context, engine.Actor) error           { return errReplay }
func (b replayBackend) Presence() []Presence                                 { return nil }

// replayStep is how often a playing replay advances.
const replayStep = 100 * time.Millisecond

// replaySeek is how far the seek keys move.
const replaySeek = 10 * time.Second

// replayTickMsg advances a playing replay.
type replayTickMsg struct{ gen int }

// Replay plays a journaled run back in a read-only cockpit: the events are
// published at their journaled pace (times Speed), the cockpit's clock is
// the replay's, and the operator can pause (p or space), seek (← → or < >
// by 10 s, home and end) and change the speed ([ and ]). Every other key
// goes to the cockpit, which changes nothing.
type Replay struct {
	evs   []engine.Event
	opts  Options
	speed float64

	inner *Model
	hub   *engine.Hub
	state *engine.State
	pos   int       // events published
	at    time.Time // the replay's clock
	play  bool
	gen   int // tick generation: a seek or pause drops ticks in flight

	width, height int
}

// NewReplay returns a replay of a run's events (speed 1 = as it happened;
// ≤ 0 jumps to the end at once).
func NewReplay(evs []engine.Event, opts Options, speed float64) *Replay {
	r := &Replay{evs: evs, speed: speed, width: 80, height: 24}
	opts.ReadOnly = true
	opts.QuitStopsRun = false
	opts.Now = func() time.Time { return r.at }
	r.opts = opts
	start := time.Time{}
	if len(evs) > 0 {
		start = evs[0].Time
	}
	if speed <= 0 {
		r.rebuild(len(evs), r.end())
	} else {
		r.rebuild(0, start)
		r.play = true
	}
	return r
}

func (r *Replay) start() time.Time {
	if len(r.evs) == 0 {
		return time.Time{}
	}
	return r.evs[0].Time
}

func (r *Replay) end() time.Time {
	if len(r.evs) == 0 {
		return time.Time{}
	}
	return r.evs[len(r.evs)-1].Time
}

// rebuild makes a new cockpit showing the first n events at time at (a
// seek backwards cannot take events out of a cockpit).
func (r *Replay) rebuild(n int, at time.Time) {
	if r.inner != nil {
		r.inner.Close()
	}
	r.hub = engine.NewHub()
	r.state = engine.NewState()
	r.pos, r.at = 0, at
	r.inner = New(replayBackend{hub: r.hub}, r.opts)
	r.inner.width, r.inner.height = r.width, r.height
	r.advance(n)
}

// advance publishes the events up to index n.
func (r *Replay) advance(n int) {
	if n <= r.pos {
		return
	}
	batch := r.evs[r.pos:n]
	for _, e := range batch {
		r.state.Apply(e)
	}
	// The snapshot first: the cockpit may drain the events as soon as
	// they are published, and it takes the hub's snapshot with them; an
	// older snapshot would show the end of the run (its events) over the
	// state before it (seen: "run finished" over a fleet of 0 hosts).
	r.hub.SetSnapshot(r.state.Clone())
	r.hub.Publish(batch...)
	r.pos = n
}

// seek moves the replay to time t.
func (r *Replay) seek(t time.Time) tea.Cmd {
	if t.Before(r.start()) {
		t = r.start()
	}
	if t.After(r.end()) {
		t = r.end()
	}
	n := 0
	for n < len(r.evs) && !r.evs[n].Time.After(t) {
		n++
	}
	r.gen++
	if n < r.pos {
		r.rebuild(n, t)
		return tea.Batch(r.inner.Init(), r.tick())
	}
	r.at = t
	r.advance(n)
	return r.tick()
}

func (r *Replay) tick() tea.Cmd {
	if !r.play || r.pos >= len(r.evs) {
		return nil
	}
	gen := r.gen
	return tea.Tick(replayStep, func(time.Time) tea.Msg { return replayTickMsg{gen: gen} })
}

// Init starts the cockpit and the playback.
func (r *Replay) Init() tea.Cmd { return tea.Batch(r.inner.Init(), r.tick()) }

// Update handles the replay's keys and ticks, and passes the rest on.
func (r *Replay) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		r.width, r.height = msg.Width, msg.Height
	case replayTickMsg:
		if msg.gen != r.gen || !r.play {
			return r, nil
		}
		next := r.at.Add(time.Duration(float64(replayStep) * r.speed))
		cmd := r.seek(next)
		if r.pos >= len(r.evs) {
			r.play = false
		}
		return r, cmd
	case tea.KeyPressMsg:
		if r.inner.overlay == overlayNone && !r.inner.filterOn {
			switch msg.String() {
			case "p", "space":
				r.play = !r.play
				r.gen++
				if r.play && r.pos >= len(r.evs) {
					return r, r.seek(r.start())
				}
				return r, r.tick()
			case "left", "<", ",":
				return r, r.seek(r.at.Add(-replaySeek))
			case "right", ">", ".":
				return r, r.seek(r.at.Add(replaySeek))
			case "home":
				return r, r.seek(r.start())
			case "end":
				return r, r.seek(r.end())
			case "[":
				r.speed = max(r.speed/2, 0.25)
				return r, nil
			case "]":
				r.speed = min(r.speed*2, 64)
				return r, nil
			}
		}
	}
	_, cmd := r.inner.Update(msg)
	return r, cmd
}

// View is the cockpit with the replay's bar instead of the key bar.
func (r *Replay) View() tea.View {
	v := r.inner.View()
	v.SetContent(r.Render())
	v.WindowTitle = "flightdeck replay " + r.inner.appEnv()
	return v
}

// Render is the cockpit's screen with the replay's bar as its last line.
func (r *Replay) Render() string {
	frame := r.inner.Render()
	i := strings.LastIndexByte(frame, '\n')
	if i < 0 {
		return frame
	}
	return frame[:i+1] + r.inner.glyphs.fit(r.bar(), r.inner.width)
}

func (r *Replay) bar() string {
	g := &r.inner.glyphs
	state := g.running + " playing"
	switch {
	case r.pos >= len(r.evs) && !r.play:
		state = "end of run"
	case !r.play:
		state = g.paused + " paused"
	}
	pos := r.at.Sub(r.start()).Round(time.Second)
	total := r.end().Sub(r.start()).Round(time.Second)
	head := r.inner.style.accent.Bold(true).Render("REPLAY") + " " + fmt.Sprintf("%s%s%s / %s%s×%g", state, g.sep, fmtClock(pos), fmtClock(total), g.sep, r.speed)
	keys := r.inner.style.muted.Render("  p play/pause  ← → seek 10s  home end  [ ] speed  q quit")
	if g.ascii {
		keys = r.inner.style.muted.Render("  p play/pause  < > seek 10s  home end  [ ] speed  q quit")
	}
	return head + keys
}

func fmtClock(d time.Duration) string {
	return fmt.Sprintf("%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

// Close ends the cockpit's subscription.
func (r *Replay) Close() { r.inner.Close() }

// RunReplay plays evs back on this process's terminal until the operator
// quits or ctx ends.
func RunReplay(ctx context.Context, evs []engine.Event, opts Options, speed float64) error {
	if opts.Context == nil {
		opts.Context = ctx
	}
	r := NewReplay(evs, opts, speed)
	defer r.Close()
	_, err := tea.NewProgram(r, tea.WithContext(ctx), tea.WithFPS(FrameRate)).Run()
	if errors.Is(err, tea.ErrProgramKilled) && ctx.Err() != nil {
		return nil
	}
	return err
}
