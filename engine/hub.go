package engine

import (
	"context"
	"sync"
	"sync/atomic"
)

// Hub fans a run's events out to any number of subscribers (the cockpit,
// SSH sessions, the headless printer). Publishing never blocks: each
// subscriber has a bounded buffer, and a subscriber that falls behind loses
// the oldest buffered events (it is told how many) but can always read the
// latest state snapshot. Memory is bounded by the subscriber count times
// the buffer size.
type Hub struct {
	mu   sync.Mutex
	subs map[*Sub]struct{}
	snap atomic.Pointer[State]
	tail *ring
}

// Sub is one subscriber.
type Sub struct {
	hub    *Hub
	mu     sync.Mutex
	buf    []Event
	max    int
	lost   int
	notify chan struct{}
	closed bool
}

// TailSize is how many recent events the hub keeps for new subscribers.
const TailSize = 256

// NewHub returns an empty hub.
func NewHub() *Hub {
	h := &Hub{subs: map[*Sub]struct{}{}, tail: newRing(TailSize)}
	h.snap.Store(NewState())
	return h
}

// Subscribe adds a subscriber that buffers at most max events (≥1). It
// starts with the hub's recent tail of events.
func (h *Hub) Subscribe(max int) *Sub {
	if max < 1 {
		max = 1
	}
	s := &Sub{hub: h, max: max, notify: make(chan struct{}, 1)}
	h.mu.Lock()
	s.buf = h.tail.last(max)
	if len(s.buf) > 0 {
		s.notify <- struct{}{} // buffered, and nobody else has s yet
	}
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

// Publish hands events to every subscriber without blocking.
func (h *Hub) Publish(evs ...Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range evs {
		h.tail.push(e)
	}
	for s := range h.subs {
		s.push(evs)
	}
}

// SetSnapshot publishes the latest state (it must not be mutated after).
func (h *Hub) SetSnapshot(st *State) {
	h.snap.Store(st)
	h.mu.Lock()
	for s := range h.subs {
		s.wake()
	}
	h.mu.Unlock()
}

// Snapshot returns the latest published state. Treat it as read-only.
func (h *Hub) Snapshot() *State { return h.snap.Load() }

func (s *Sub) push(evs []Event) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.buf = append(s.buf, evs...)
	if over := len(s.buf) - s.max; over > 0 {
		s.lost += over
		n := copy(s.buf, s.buf[over:])
		s.buf = s.buf[:n]
	}
	s.mu.Unlock()
	s.wake()
}

func (s *Sub) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// C is signalled (coalesced) when new events or a new snapshot are available.
func (s *Sub) C() <-chan struct{} { return s.notify }

// Drain takes the buffered events and the number of events lost since the
// last call because the subscriber fell behind.
func (s *Sub) Drain() (evs []Event, lost int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	evs, lost = s.buf, s.lost
	s.buf, s.lost = nil, 0
	return evs, lost
}

// Next waits until something is available (or ctx ends) and drains it.
func (s *Sub) Next(ctx context.Context) ([]Event, int, error) {
	for {
		if evs, lost := s.Drain(); len(evs) > 0 || lost > 0 {
			return evs, lost, nil
		}
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-s.notify:
		}
	}
}

// Close unsubscribes.
func (s *Sub) Close() {
	s.hub.mu.Lock()
	delete(s.hub.subs, s)
	s.hub.mu.Unlock()
	s.mu.Lock()
	s.closed = true
	s.buf = nil
	s.mu.Unlock()
}

// ring is a fixed-size ring of recent events.
type ring struct {
	evs  []Event
	next int
	full bool
}

func newRing(n int) *ring { return &ring{evs: make([]Event, n)} }

func (r *ring) push(e Event) {
	r.evs[r.next] = e
	r.next = (r.next + 1) % len(r.evs)
	if r.next == 0 {
		r.full = true
	}
}

// last returns up to n most recent events, oldest first.
func (r *ring) last(n int) []Event {
	size := r.next
	if r.full {
		size = len(r.evs)
	}
	if n > size {
		n = size
	}
	out := make([]Event, 0, n)
	for i := size - n; i < size; i++ {
		idx := i
		if r.full {
			idx = (r.next + i) % len(r.evs)
		}
		out = append(out, r.evs[idx])
	}
	return out
}

// Watch calls fn on a goroutine for every event published from now on,
// until fn returns true or stop is called. stop waits for fn to return.
func (h *Hub) Watch(ctx context.Context, fn func(ctx context.Context, e Event) (done bool)) (stop func()) {
	sub := h.Subscribe(4096)
	ctx, cancel := context.WithCancel(ctx)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			evs, _, err := sub.Next(ctx)
			if err != nil {
				return
			}
			for _, e := range evs {
				if fn(ctx, e) {
					return
				}
			}
		}
	}()
	return func() { cancel(); <-finished; sub.Close() }
}
