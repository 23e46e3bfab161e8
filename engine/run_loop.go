package engine

import (
	"context"
	"fmt"
	"time"
)

// The run loop: every input goes through the step; the step's output is
// journaled, published and performed, and the results of the work come
// back as inputs.

type abortKey struct{}

// WithAbort returns ctx carrying abort: cancelling ctx stops a run after
// its work in flight (a first Ctrl-C); cancelling abort stops that work
// too (a second Ctrl-C: a hung hook or restart is killed, its host fails).
func WithAbort(ctx, abort context.Context) context.Context {
	return context.WithValue(ctx, abortKey{}, abort)
}

// AbortOf returns the abort context WithAbort put in ctx, or nil.
func AbortOf(ctx context.Context) context.Context {
	a, _ := ctx.Value(abortKey{}).(context.Context)
	return a
}

// snapshotEvery bounds how often subscribers get a new state snapshot.
const snapshotEvery = 50 * time.Millisecond

// loop drives the run to its end: every input goes through the step, and
// the step's output is journaled, published and performed.
func (r *Run) loop(ctx context.Context) (*State, error) {
	// Work already started finishes even when ctx is cancelled, so that no
	// host is left between two steps; cancelling only stops new work.
	// An abort (a second Ctrl-C) cancels that work, and what the run does
	// next (rolling back what it switched) gets a context of its own.
	loopCtx, endLoop := context.WithCancel(context.WithoutCancel(ctx))
	defer endLoop()
	// Each generation of work is cancelled with loopCtx at the latest.
	workCtx, abortWork := newWorkContext(loopCtx)
	var aborted <-chan struct{}
	if a := AbortOf(ctx); a != nil {
		aborted = a.Done()
	}
	tick := time.NewTicker(snapshotEvery)
	defer tick.Stop()
	defer r.publishSnapshot()
	defer r.stopMeasuring()
	if w, ok := r.cfg.Router.(RouterWatcher); ok {
		wctx, cancel := context.WithCancel(loopCtx)
		defer cancel()
		go w.Watch(wctx, func(msg string) {
			select {
			case r.inputs <- routerInput{message: msg}:
			case <-wctx.Done():
			}
		})
	}
	interrupt := ctx.Done()
	for !r.m.done() {
		var wakeC <-chan time.Time
		if r.wake != nil {
			wakeC = r.wake.C
		}
		select {
		case in := <-r.inputs:
			for _, in := range r.collect(in) {
				if w, ok := in.(workInput); ok && progressOnly(w) {
					r.holdProgress(w)
					continue
				}
				r.feed(workCtx, r.withProgress(workCtx, in))
			}
		case c := <-r.cmds:
			r.flushProgress(workCtx)
			out := r.m.step(r.cfg.Now(), commandInput{cmd: c.cmd})
			r.record(workCtx, out)
			c.reply <- out.reply
		case <-wakeC:
			r.wake, r.wakeAt = nil, time.Time{}
			r.flushProgress(workCtx)
			r.feed(workCtx, tickInput{})
		case <-tick.C:
			if len(r.progress) > 0 && !r.cfg.Now().Before(r.progressDue) {
				r.flushProgress(workCtx)
			}
			r.publishSnapshot()
		case <-interrupt:
			interrupt = nil
			r.flushProgress(workCtx)
			r.feed(workCtx, stopInput{})
		case <-aborted:
			aborted, interrupt = nil, nil
			r.flushProgress(workCtx)
			abortWork()
			workCtx, abortWork = newWorkContext(loopCtx)
			r.feed(workCtx, abortInput{actor: r.cfg.Actor})
		}
	}
	if r.probe != nil && r.m.st.Status != StatusFinished {
		r.probe.stop() // interrupted: ActFinalize did not stop it
	}
	switch {
	case r.fatal != nil:
		return r.m.st, r.fatal
	case r.m.st.Status != StatusFinished:
		return r.m.st, ErrInterrupted
	}
	return r.m.st, nil
}

// progressEvery is how long a prepare's progress may wait to be journaled
// with other events. Progress decides nothing (the step acts when the
// prepare is done): it only moves the cockpit's host rows and bars. Journaled on its own, each report was a write of its own, and to
// a shared store (etcd: a replicated, fsynced transaction) a 20-host
// deploy over SSH made most of its writes for progress.
const progressEvery = 250 * time.Millisecond

// progressOnly reports whether a batch of work holds only prepare
// progress (a host's preparing phase, with or without its counts): nothing
// done, no error.
func progressOnly(w workInput) bool {
	if len(w.results) == 0 {
		return false
	}
	for _, res := range w.results {
		if res.done || res.err != nil || len(res.events) == 0 {
			return false
		}
		for _, e := range res.events {
			if e.Type != EvHostPhase || e.Phase != PhasePreparing {
				return false
			}
		}
	}
	return true
}

// holdProgress keeps progress to journal with the next write, or on its
// own once it has waited progressEvery. Nothing is published before it is
// journaled, as always; a crash loses only progress of work that is
// redone on resume.
func (r *Run) holdProgress(w workInput) {
	if len(r.progress) == 0 {
		r.progressDue = r.cfg.Now().Add(progressEvery)
	}
	r.progress = append(r.progress, w.results...)
}

// withProgress puts the progress held before the results of a batch of
// work, so that both are journaled with one write, in the order they came;
// before any other input, the progress is journaled first.
func (r *Run) withProgress(workCtx context.Context, in input) input {
	if len(r.progress) == 0 {
		return in
	}
	switch in := in.(type) {
	case workInput:
		in.results = append(r.takeProgress(), in.results...)
		return in
	case committedInput:
		in.work.results = append(r.takeProgress(), in.work.results...)
		return in
	}
	r.flushProgress(workCtx)
	return in
}

// flushProgress journals the progress held, if any.
func (r *Run) flushProgress(workCtx context.Context) {
	if len(r.progress) > 0 {
		r.feed(workCtx, workInput{results: r.takeProgress()})
	}
}

func (r *Run) takeProgress() []workResult {
	p := r.progress
	r.progress = nil
	return p
}

// newWorkContext returns the context the run's work is started with, and
// the function that aborts that work; the loop's own context bounds it.
func newWorkContext(loopCtx context.Context) (context.Context, context.CancelFunc) {
	return context.WithCancel(loopCtx)
}

// collect takes an input and, when it is work, every other work result
// already waiting, so that they are journaled with one write (group
// commit). An input of another kind ends the batch, in order.
func (r *Run) collect(first input) []input {
	w, replies, ok := asWork(first)
	if !ok {
		return []input{first}
	}
	for len(w.results) < 256 {
		select {
		case in := <-r.inputs:
			if more, mr, ok := asWork(in); ok {
				w.results = append(w.results, more.results...)
				replies = append(replies, mr...)
				continue
			}
			return []input{workBatch(w, replies), in}
		default:
		}
		break
	}
	return []input{workBatch(w, replies)}
}

// asWork reports whether in is work (waited for or not).
func asWork(in input) (workInput, []chan<- error, bool) {
	switch in := in.(type) {
	case workInput:
		return in, nil, true
	case committedInput:
		return in.work, in.replies, true
	}
	return workInput{}, nil, false
}

func workBatch(w workInput, replies []chan<- error) input {
	if len(replies) > 0 {
		return committedInput{work: w, replies: replies}
	}
	return w
}

// fence returns nil while the environment's lock is surely ours (always,
// without a lock of a shared store).
func (r *Run) fence(ctx context.Context) error {
	if r.cfg.Lock == nil {
		return nil
	}
	return r.cfg.Lock.Fence(ctx)
}

// committedInput is work whose events the executor waits to see
// journaled (a host's switching phase): the loop answers with nil once they
// are, or with the error that stopped the journal.
type committedInput struct {
	work    workInput
	replies []chan<- error
}

func (committedInput) isInput() {}

// feed steps the machine with an input and records the output.
func (r *Run) feed(workCtx context.Context, in input) {
	if r.cfg.Notes != nil {
		if notes := r.cfg.Notes(); len(notes) > 0 {
			evs := make([]Event, len(notes))
			for i, n := range notes {
				evs[i] = Event{Type: EvNotice, Message: n}
			}
			r.record(workCtx, r.m.step(r.cfg.Now(), workInput{results: []workResult{{events: evs}}}))
		}
	}
	if c, ok := in.(committedInput); ok {
		r.record(workCtx, r.m.step(r.cfg.Now(), c.work))
		for _, reply := range c.replies {
			reply <- r.fatal
		}
		return
	}
	if m, ok := in.(measureInput); ok {
		if cancel, ok := r.measuring[m.key]; ok && r.m.work[m.key].Serial == m.action.Serial {
			cancel()
			delete(r.measuring, m.key)
		}
	}
	r.record(workCtx, r.m.step(r.cfg.Now(), in))
}

// record journals the step's events (fsync), publishes them, and performs
// its actions, in that order. A run whose journal cannot be written stops
// where it is: nothing is published or done that the journal does not hold.
func (r *Run) record(workCtx context.Context, out output) {
	if len(out.events) > 0 && r.fatal == nil {
		if err := r.journal.Append(r.jctx, out.events...); err != nil {
			r.fatal = fmt.Errorf("%w (%v): the run stopped where it was and reports no outcome; "+
				"hosts keep what they have; `flightdeck resume` finishes it once the journal can be written", ErrJournal, err)
			last := out.events[len(out.events)-1]
			r.cfg.Hub.Publish(Event{Seq: last.Seq, Time: last.Time, Run: r.id, Type: EvNotice, Error: r.fatal.Error()})
		} else {
			r.cfg.Hub.Publish(out.events...)
			r.dirty = true
		}
	}
	var unstarted []Action
	for _, a := range out.actions {
		if r.fatal != nil && a.Kind != ActCancel {
			unstarted = append(unstarted, a)
			continue
		}
		r.perform(workCtx, a)
	}
	if r.fatal != nil && (!r.m.halted || len(unstarted) > 0) {
		// The step is told which of its work never started (a halted
		// step starts none), or the loop would wait for it forever.
		r.record(workCtx, r.m.step(r.cfg.Now(), haltInput{unstarted: unstarted}))
		return
	}
	if !out.wake.IsZero() && (r.wakeAt.IsZero() || out.wake.Before(r.wakeAt)) {
		if r.wake != nil {
			r.wake.Stop()
		}
		r.wakeAt = out.wake
		r.wake = time.NewTimer(time.Until(out.wake))
	}
}

// perform starts one action of the step.
func (r *Run) perform(ctx context.Context, a Action) {
	switch a.Kind {
	case ActCancel:
		if cancel, ok := r.measuring[a.Work]; ok {
			cancel()
			delete(r.measuring, a.Work)
		}
	case ActMeasure, ActTrigger:
		k := gateWork
		if a.Kind == ActTrigger {
			k = triggerWork
		}
		if cancel, ok := r.measuring[k]; ok {
			cancel()
		}
		mctx, cancel := context.WithCancel(ctx)
		r.measuring[k] = cancel
		go r.x.measure(mctx, k, a)
	case ActFinalize:
		go r.finalize(ctx, a)
	default:
		go r.x.do(ctx, a)
	}
}

// finalize ends the run's I/O: the route settled on the run's release,
// old releases pruned, the probe traffic summarised.
func (r *Run) finalize(ctx context.Context, a Action) {
	var in finalInput
	in.events = append(in.events, r.x.undrainLeftovers(ctx, a.KeepDrained)...)
	if a.SettleRoute {
		in.events = append(in.events, r.x.settleRoute(ctx, a.Release, a.CohortOn)...)
	}
	if a.Prune {
		in.events = append(in.events, r.x.prune(ctx)...)
	}
	if r.probe != nil {
		in.probe = r.probe.stop()
	}
	r.inputs <- in
}

func (r *Run) stopMeasuring() {
	for k, cancel := range r.measuring {
		cancel()
		delete(r.measuring, k)
	}
	if r.wake != nil {
		r.wake.Stop()
	}
}

func (r *Run) publishSnapshot() {
	if r.dirty {
		r.cfg.Hub.SetSnapshot(r.m.st.Clone())
		r.dirty = false
	}
}
