package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
)

// KindAdopt is a run that adopts releases made by another tool
// (Capistrano): their files are hashed into a manifest and made read-only,
// so that flightdeck can verify them, roll back to them and hard-link from
// them.
const KindAdopt RunKind = "adopt"

// AdoptResult is what adopting one release on one host did.
type AdoptResult struct {
	// Already is set when the release had a manifest: nothing was changed.
	Already bool
	// Files and Bytes count the regular files hashed into the manifest.
	Files int
	Bytes int64
	// MadeReadOnly counts the files whose write bits were removed.
	MadeReadOnly int
	// Commit is the commit read from Capistrano's REVISION file, if any.
	Commit string
}

// Adopter is a Host that can adopt releases made by another tool.
type Adopter interface {
	Adopt(ctx context.Context, id string) (AdoptResult, error)
}

// Adopt adopts releases made by another tool on every host of the
// environment, under the environment's lock, as a journaled run of kind
// adopt: every release named in ids, or every release present when ids is
// empty (releases that have a manifest already are left alone). A host
// that lacks a named release is reported and fails the run; the other hosts
// are adopted anyway (adopting changes no release's content and switches
// nothing).
func (e *Engine) Adopt(ctx context.Context, actor Actor, ids []string, command string) (*State, error) {
	if err := AuthorizeOwner(actor, "adopt releases"); err != nil {
		return nil, err
	}
	for _, id := range ids {
		if err := ValidateReleaseID(id); err != nil {
			return nil, err
		}
	}
	for _, h := range e.Hosts {
		if _, ok := h.(Adopter); !ok {
			return nil, fmt.Errorf("host %s cannot adopt releases", h.Name())
		}
	}
	id := e.newRunID()
	return e.withLock(ctx, actor, command, id, func(lock HeldLock, notices []string) (*State, error) {
		if uid, _, err := unfinishedRun(ctx, e.StateBackend(), e.Env.Name); err != nil {
			return nil, err
		} else if uid != "" {
			return nil, fmt.Errorf("run %s is unfinished: `flightdeck resume` it first", uid)
		}
		r, err := e.newRun(RunConfig{Kind: KindAdopt, Actor: actor, RunID: id, Lock: lock}, notices)
		if err != nil {
			return nil, err
		}
		defer e.ended(r)
		defer close(r.done)
		return r.adopt(ctx, ids)
	})
}

func (r *Run) adopt(ctx context.Context, ids []string) (*State, error) {
	statuses, _, err := r.inspectAll(ctx, "")
	if err != nil {
		return r.m.st, err
	}
	info := RunInfo{Kind: KindAdopt, App: r.cfg.Plan.App, Env: r.cfg.Env.Name, Strategy: "adopt",
		Release: strings.Join(ids, ","), Plan: r.cfg.Plan.File, PID: os.Getpid()}
	for _, h := range r.cfg.Hosts {
		st := statuses[h.Name()]
		info.Hosts = append(info.Hosts, RunHost{Name: h.Name(), Current: st.Current, Releases: st.Releases})
	}
	if err := r.openJournal(ctx); err != nil {
		return r.m.st, err
	}
	defer r.journal.Close()
	defer r.publishSnapshot()
	r.m.st.Run = r.id
	// The adopt run has no steps to decide: its events are journaled (and
	// published) as they happen, through the machine's state.
	emit := func(evs ...Event) {
		var out output
		r.m.emit(&out, r.cfg.Now(), evs...)
		r.record(context.WithoutCancel(ctx), out)
	}
	emit(Event{Type: EvRunStarted, Actor: r.cfg.Actor.Name, Fingerprint: r.cfg.Actor.Fingerprint, Start: &info})
	if r.cfg.OnStart != nil {
		r.cfg.OnStart(r)
	}
	var mu sync.Mutex
	var failed []string
	var wg sync.WaitGroup
	for _, h := range r.cfg.Hosts {
		want := ids
		if len(want) == 0 {
			want = statuses[h.Name()].Releases
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.sem <- struct{}{}
			defer func() { <-r.sem }()
			evs, err := adoptHost(ctx, h, want, statuses[h.Name()].Releases)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, h.Name())
				evs = append(evs, Event{Type: EvHostPhase, Host: h.Name(), Phase: PhaseFailed, Error: err.Error(), Command: "adopt"})
			}
			emit(evs...)
		}()
	}
	wg.Wait()
	if r.fatal != nil {
		return r.m.st, r.fatal
	}
	outcome, reason := OutcomeSucceeded, ""
	if len(failed) > 0 {
		slices.Sort(failed)
		outcome, reason = OutcomeFailed, "not adopted on "+strings.Join(failed, ", ")
	}
	emit(Event{Type: EvRunFinished, Outcome: outcome, Error: reason, Release: info.Release})
	return r.m.st, r.fatal
}

// adoptHost adopts the releases want on h and returns the events that say
// what it did.
func adoptHost(ctx context.Context, h Host, want, present []string) ([]Event, error) {
	var evs []Event
	var errs []error
	for _, id := range want {
		if !slices.Contains(present, id) {
			errs = append(errs, fmt.Errorf("release %s is not on the host", id))
			continue
		}
		res, err := h.(Adopter).Adopt(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		msg := fmt.Sprintf("adopted %s: %d files (%s) hashed into its manifest, %d made read-only", id, res.Files, humanBytes(res.Bytes), res.MadeReadOnly)
		if res.Commit != "" {
			msg += ", commit " + res.Commit
		}
		if res.Already {
			msg = id + " has a manifest already: left as it is"
		}
		evs = append(evs, Event{Type: EvNotice, Host: h.Name(), Release: id, Message: msg})
	}
	return evs, errors.Join(errs...)
}
