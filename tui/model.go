// Package tui is flightdeck's cockpit: a bubbletea v2 program showing a
// run's header, fleet, SLO sparklines, checklist and event log, and
// sending operator commands to the engine.
//
// The cockpit never slows the engine: it subscribes to the hub and takes
// coalesced snapshots at most 20 times a second (never one message per
// engine event), and every command runs in a tea.Cmd. Everything that
// depends on the terminal (size, colour profile) comes from the program's
// messages and options, so the same model can be served over SSH.
package tui

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	tea "charm.land/bubbletea/v2"

	"flightdeck/engine"
	"flightdeck/engine/sampler"
	"flightdeck/themes"
	"flightdeck/tui/describe"
)

// SLO holds the thresholds the sparklines are drawn against.
type SLO struct {
	// ErrorRate is the highest acceptable error rate (fraction; default 0.001).
	ErrorRate float64
	// P99 is the highest acceptable 99th percentile latency (default 200ms).
	P99 time.Duration
	// None says that the plan sets no limits (no gate): the lines are
	// drawn without a threshold and the pane says so.
	None bool
	// NoSource says that the plan has no traffic source (no router, no
	// Prometheus): nothing measures the SLOs, and the pane says so.
	NoSource bool
}

// Scenario names a training scenario and says what to watch for.
type Scenario struct {
	Name, Briefing string
}

// Options configure a cockpit.
type Options struct {
	// Actor is who this session acts as; every command carries it.
	Actor engine.Actor
	// Theme is the palette (zero value: themes.Default()).
	Theme themes.Theme
	// ReadOnly hides every action that changes anything (--read-only,
	// viewers over SSH). The engine refuses them anyway.
	ReadOnly bool
	// Now is the clock (default time.Now); tests fix it.
	Now func() time.Time
	// Location is the time zone of timestamps (default time.Local).
	Location *time.Location
	// KeyMap overrides the default bindings (see LoadConfig).
	KeyMap *KeyMap
	// ASCII draws no Unicode glyphs.
	ASCII bool
	// App and Env are shown before the first run.
	App, Env string
	// SLO thresholds (defaults: 0.1 % errors, 200ms p99).
	SLO SLO
	// QuitStopsRun says that quitting the cockpit interrupts the run (the
	// engine runs in this process). Otherwise the run continues without
	// the cockpit. The quit dialog states which.
	QuitStopsRun bool
	// Context bounds the backend calls (default context.Background()).
	Context context.Context
	// NoAltScreen renders inline instead of on the alternate screen.
	NoAltScreen bool
	// NoHealthCheck says that the plan configures no health check: the
	// fleet's HEALTH column shows a dash, not "up".
	NoHealthCheck bool
	// QuitWarning, when set, is said by a quit dialog that then asks
	// between runs too (e.g. the demo deletes its directory, journal
	// included, when it ends).
	QuitWarning string
	// Scenario is the training scenario the cockpit shows (the demo): its
	// name in the header, its briefing in the help.
	Scenario Scenario
	// TickEvery is how often clocks (time in phase, countdowns) refresh
	// (default 1s; negative disables the tick).
	TickEvery time.Duration
}

// feedEvery bounds how often the model takes a new snapshot: 20 per second.
const feedEvery = 50 * time.Millisecond

// subBuffer is how many events the cockpit's subscription buffers.
const subBuffer = 1024

// logSize is how many event lines the event pane keeps.
const logSize = 500

// hostLogSize is how many events per host the details view keeps.
const hostLogSize = 256

type pane int

const (
	paneFleet pane = iota
	paneSLO
	paneChecklist
	paneEvents
	paneCount
)

func (p pane) String() string {
	return [...]string{"fleet", "SLO", "checklist", "events"}[p]
}

type overlay int

const (
	overlayNone overlay = iota
	overlayHelp
	overlayConfirm
	overlayDetails
	overlayHistory
)

// Model is the cockpit's root model.
type Model struct {
	backend Backend
	opts    Options
	keys    KeyMap
	style   styles
	glyphs  glyphs
	hub     *engine.Hub
	sub     *engine.Sub
	stop    chan struct{}
	once    sync.Once

	snap       *engine.State
	eventLog   []engine.Event // ring of the event pane, oldest first
	eventsLost int            // events the subscription dropped (the cockpit fell behind)
	hostLog    map[string][]engine.Event
	lastPhase  map[string]engine.Phase // last phase logged per host (progress within a phase is not logged)
	presence   []Presence
	hostStates map[string]string // from a HostStater backend; nil otherwise
	live       *sampler.Snapshot // from a LiveSource backend; nil without a traffic source
	lastFeed   time.Time

	width, height int
	focus         pane
	overlay       overlay
	confirm       *confirmDialog
	details       string // host shown in the details overlay
	overlayScroll int    // first line shown of the help or details overlay

	cursor       int    // fleet cursor in the filtered list
	offset       int    // first fleet row shown
	selectedHost string // name of the host under the cursor
	filter       string
	filterOn     bool
	weightOn     bool   // typing a canary weight (w)
	weightText   string // the weight typed so far
	visible      []int  // indices of hosts matching the filter (nil: all)
	fleetRows    int    // fleet rows shown in the last render
	nameWidth    int    // width of the HOST column
	nameCount    int    // hosts nameWidth was measured over

	checkCursor int
	eventScroll int // event pane scroll from the newest (0 = follow)

	history       []engine.RunSummary // the environment's runs, oldest first (nil: not read)
	historyErr    string
	historyCursor int // row of the history overlay, newest first

	status    string
	statusErr bool
	busy      string // a deploy or rollback started from the cockpit

	stateVer, uiVer uint64
	cache           viewCache
}

type confirmDialog struct {
	// doing is what other operators are told this session is confirming
	// ("rollback"; "" for nothing worth telling).
	doing  string
	title  string
	lines  []string
	yes    string
	danger bool
	run    func() tea.Cmd
}

// Confirming says which action's confirmation dialog is open
// ("confirming rollback"), "" when none is: serve tells the other
// sessions.
func (m *Model) Confirming() string {
	if m.overlay != overlayConfirm || m.confirm == nil || m.confirm.doing == "" {
		return ""
	}
	return "confirming " + m.confirm.doing
}

// feedMsg is a coalesced update from the hub.
type feedMsg struct {
	snap *engine.State
	evs  []engine.Event
	lost int
	at   time.Time
}

// tickMsg refreshes clocks.
type tickMsg time.Time

// resultMsg reports a backend call.
type resultMsg struct {
	what string
	err  error
	// between marks the end of a deploy/rollback started between runs.
	between bool
}

// New returns a cockpit over backend. It subscribes to the backend's hub
// at once; the subscription ends when the program quits.
func New(backend Backend, opts Options) *Model {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Location == nil {
		opts.Location = time.Local
	}
	if opts.Context == nil {
		opts.Context = context.Background()
	}
	if opts.SLO.ErrorRate <= 0 {
		opts.SLO.ErrorRate = 0.001
	}
	if opts.SLO.P99 <= 0 {
		opts.SLO.P99 = 200 * time.Millisecond
	}
	if opts.TickEvery == 0 {
		opts.TickEvery = time.Second
	}
	if opts.Theme.Name == "" {
		opts.Theme = themes.Default()
	}
	m := &Model{
		backend:   backend,
		opts:      opts,
		hub:       backend.Hub(),
		stop:      make(chan struct{}),
		hostLog:   map[string][]engine.Event{},
		lastPhase: map[string]engine.Phase{},
		width:     80,
		height:    24,
	}
	if opts.KeyMap != nil {
		m.keys = *opts.KeyMap
	} else {
		m.keys = DefaultKeyMap()
	}
	m.style = newStyles(opts.Theme)
	m.glyphs = newGlyphs(opts.ASCII)
	m.sub = m.hub.Subscribe(subBuffer)
	m.snap = m.hub.Snapshot()
	m.presence = backend.Presence()
	if hs, ok := backend.(HostStater); ok {
		m.hostStates = hs.HostStates()
	}
	m.readLive()
	return m
}

// readLive takes the live SLO sampler's latest snapshot (one coalesced
// value per sample, however many hosts).
func (m *Model) readLive() {
	if ls, ok := m.backend.(LiveSource); ok {
		m.live = ls.LiveSLO()
	}
}

// liveVer is the live snapshot's version (0 without one), for cache keys.
func (m *Model) liveVer() uint64 {
	if m.live == nil {
		return 0
	}
	return m.live.Version
}

// Init starts the hub subscription, the clock and the live SLO feed.
func (m *Model) Init() tea.Cmd {
	return tea.Batch(m.listen(), m.tick(), m.loadHistory(), m.listenLive())
}

// liveMsg says that the live SLO sampler published a new snapshot.
type liveMsg struct{}

// listenLive waits for the sampler's next snapshot (nil without one).
func (m *Model) listenLive() tea.Cmd {
	ln, ok := m.backend.(LiveNotifier)
	if !ok {
		return nil
	}
	ch, stop := ln.LiveChanged(), m.stop
	if ch == nil {
		return nil
	}
	return func() tea.Msg {
		select {
		case <-ch:
			return liveMsg{}
		case <-stop:
			return nil
		}
	}
}

// Close ends the model's subscription (Run and quitting do it; call it
// when a model is dropped without running).
func (m *Model) Close() {
	m.once.Do(func() {
		close(m.stop)
		m.sub.Close()
	})
}

func (m *Model) listen() tea.Cmd {
	sub, hub, stop, last := m.sub, m.hub, m.stop, m.lastFeed
	return func() tea.Msg {
		select {
		case <-sub.C():
		case <-stop:
			return nil
		}
		// Coalesce: at most one feed per feedEvery, whatever the event rate.
		if wait := feedEvery - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-stop:
				t.Stop()
				return nil
			}
		}
		evs, lost := sub.Drain()
		return feedMsg{snap: hub.Snapshot(), evs: evs, lost: lost, at: time.Now()}
	}
}

func (m *Model) tick() tea.Cmd {
	if m.opts.TickEvery < 0 {
		return nil
	}
	return tea.Tick(m.opts.TickEvery, func(t time.Time) tea.Msg { return tickMsg(t) })
}

// Update handles a message.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.uiVer++
		return m, nil
	case feedMsg:
		wasActive := m.active()
		m.apply(msg)
		if wasActive && !m.active() {
			// A run ended: the history has a new line.
			return m, tea.Batch(m.listen(), m.loadHistory())
		}
		return m, m.listen()
	case historyMsg:
		m.history, m.historyErr = msg.runs, ""
		if m.history == nil {
			m.history = []engine.RunSummary{}
		}
		if msg.err != nil {
			m.historyErr = msg.err.Error()
		}
		m.stateVer++
		return m, nil
	case liveMsg:
		m.readLive()
		return m, m.listenLive()
	case tickMsg:
		// Clocks move; who is connected may change without any run event.
		if p := m.backend.Presence(); !slices.Equal(p, m.presence) {
			m.presence = p
			m.stateVer++
		}
		if hs, ok := m.backend.(HostStater); ok {
			if st := hs.HostStates(); !maps.Equal(st, m.hostStates) {
				m.hostStates = st
				m.stateVer++
			}
		}
		m.readLive()
		return m, m.tick()
	case resultMsg:
		m.uiVer++
		if msg.between {
			m.busy = ""
		}
		if msg.err != nil {
			m.setStatus(msg.what+": "+msg.err.Error(), true)
		} else {
			m.setStatus(msg.what+": done", false)
		}
		return m, nil
	case tea.KeyPressMsg:
		m.uiVer++
		return m, m.key(msg)
	}
	return m, nil
}

// apply folds a coalesced feed into the model.
func (m *Model) apply(f feedMsg) {
	m.lastFeed = f.at
	if f.snap != nil {
		if m.snap == nil || f.snap.Run != m.snap.Run {
			m.lastPhase = map[string]engine.Phase{}
		}
		m.snap = f.snap
		if m.snap.Active() {
			// The deploy or rollback started from here is now a run.
			m.busy = ""
		}
	}
	m.eventsLost += f.lost
	for _, e := range f.evs {
		m.ingest(e)
	}
	if len(m.eventLog) > logSize {
		n := copy(m.eventLog, m.eventLog[len(m.eventLog)-logSize:])
		clear(m.eventLog[n:])
		m.eventLog = m.eventLog[:n]
	}
	m.presence = m.backend.Presence()
	m.refilter()
	m.stateVer++
}

func (m *Model) ingest(e engine.Event) {
	if e.Host != "" {
		hl := m.hostLog[e.Host]
		if e.Type != engine.EvHostPhase || m.lastPhase[e.Host] != e.Phase || e.Error != "" {
			hl = append(hl, e)
			if len(hl) > hostLogSize {
				hl = hl[len(hl)-hostLogSize:]
			}
			m.hostLog[e.Host] = hl
		}
	}
	switch e.Type {
	case engine.EvHostPhase:
		// Progress updates within a phase are shown by the fleet, not logged.
		if m.lastPhase[e.Host] == e.Phase && e.Error == "" {
			return
		}
		m.lastPhase[e.Host] = e.Phase
	case engine.EvMetricSample:
		return // drawn by the SLO pane
	case engine.EvObserved, engine.EvFinishing:
		return // the checklist item or the report that follows says it
	}
	m.eventLog = append(m.eventLog, e)
}

func (m *Model) setStatus(s string, isErr bool) {
	m.status, m.statusErr = describe.Clean(s), isErr
}

func (m *Model) now() time.Time { return m.opts.Now() }

// active reports whether a run is in progress.
func (m *Model) active() bool { return m.snap != nil && m.snap.Active() }

// refilter recomputes which hosts match the filter and keeps the cursor
// on the same host.
func (m *Model) refilter() {
	hosts := m.snap.Hosts
	if len(hosts) != m.nameCount {
		m.nameCount = len(hosts)
		m.nameWidth = 4
		for _, h := range hosts {
			m.nameWidth = max(m.nameWidth, len(h.Name))
		}
		m.nameWidth = min(m.nameWidth, 24)
	}
	if m.filter == "" {
		m.visible = nil
	} else {
		f := strings.ToLower(m.filter)
		m.visible = m.visible[:0]
		for i, h := range hosts {
			// A host matches by name, or by phase: /failed, /prep.
			if strings.Contains(strings.ToLower(h.Name), f) || strings.HasPrefix(string(h.Phase), f) {
				m.visible = append(m.visible, i)
			}
		}
	}
	n := m.fleetLen()
	if m.selectedHost != "" {
		// Keep the selection on the same host when the list changes.
		if i := m.hostAt(m.cursor); i == nil || i.Name != m.selectedHost {
			for j := range n {
				if m.hostAt(j).Name == m.selectedHost {
					m.cursor = j
					break
				}
			}
		}
	}
	m.cursor = clampInt(m.cursor, 0, max(n-1, 0))
	if h := m.hostAt(m.cursor); h != nil {
		m.selectedHost = h.Name
	}
}

func (m *Model) fleetLen() int {
	if m.visible != nil || m.filter != "" {
		return len(m.visible)
	}
	return len(m.snap.Hosts)
}

func (m *Model) hostAt(i int) *engine.HostState {
	if i < 0 || i >= m.fleetLen() {
		return nil
	}
	if m.visible != nil || m.filter != "" {
		return m.snap.Hosts[m.visible[i]]
	}
	return m.snap.Hosts[i]
}

func clampInt(v, lo, hi int) int {
	if v < lo {
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}

// quit ends the program and the subscription.
func (m *Model) quit() tea.Cmd {
	m.Close()
	return tea.Quit
}
