package etcdstate

import (
	"context"
	"encoding/json"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"flightdeck/engine"
)

// Follow calls fn with the run's events after sequence number after, in
// order and each once, as they are committed: first those already in etcd,
// then live through etcd's watch. It returns nil once the run's
// RunFinished event was delivered, fn's error, or ctx's. A watch that
// breaks (a member dies, the history was compacted) is resumed where it
// stopped.
func (s *Store) Follow(ctx context.Context, run string, after uint64, fn func([]engine.Event) error) error {
	if err := ValidRunID(run); err != nil {
		return err
	}
	last := after
	deliver := func(evs []engine.Event) (finished bool, err error) {
		var out []engine.Event
		for _, e := range evs {
			if e.Seq > last {
				out = append(out, e)
				last = e.Seq
				if e.Type == engine.EvRunFinished {
					finished = true
				}
			}
		}
		if len(out) > 0 {
			if err := fn(out); err != nil {
				return false, err
			}
		}
		return finished, nil
	}
	for {
		evs, rev, err := s.readJournalRetry(ctx, run)
		if err != nil {
			return err
		}
		if done, err := deliver(evs); done || err != nil {
			return err
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := s.cli.Watch(wctx, s.journalPrefix(run), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		done, err := func() (bool, error) {
			defer cancel()
			for wr := range wch {
				if wr.Err() != nil {
					return false, nil // read again from where we are
				}
				for _, ev := range wr.Events {
					if ev.Type != mvccpb.PUT {
						continue
					}
					batch, err := decodeBatch(ev.Kv.Value)
					if err != nil {
						return false, fmt.Errorf("etcd: journal key %s: %w", ev.Kv.Key, err)
					}
					if done, err := deliver(batch); done || err != nil {
						return done, err
					}
				}
			}
			return false, nil
		}()
		if done || err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// readJournalRetry reads a run's journal, waiting for etcd when it does
// not answer.
func (s *Store) readJournalRetry(ctx context.Context, run string) ([]engine.Event, int64, error) {
	var evs []engine.Event
	var rev int64
	err := s.retry(ctx, "read of run "+run, func(ctx context.Context) (err error) {
		evs, rev, err = s.readJournal(ctx, run)
		return err
	})
	if ctx.Err() != nil {
		return nil, 0, ctx.Err()
	}
	return evs, rev, err
}

// LatestRun returns the newest run of env (nil when it has none).
func (s *Store) LatestRun(ctx context.Context, env string) (*engine.RunSummary, error) {
	runs, err := s.ListRuns(ctx)
	if err != nil {
		return nil, err
	}
	for i := len(runs) - 1; i >= 0; i-- {
		if runs[i].Env == env {
			return &runs[i], nil
		}
	}
	return nil, nil
}

// NextRun waits for a run of env that is not finished: the newest one if
// it is still running, else the next one to start. It returns its id.
func (s *Store) NextRun(ctx context.Context, env string) (string, error) {
	pfx := s.pfx + "/runs/"
	for {
		var resp *clientv3.GetResponse
		err := s.retry(ctx, "list of runs", func(ctx context.Context) (err error) {
			resp, err = s.cli.Get(ctx, pfx, clientv3.WithPrefix())
			return err
		})
		if err != nil {
			return "", err
		}
		var newest *engine.RunSummary
		for _, kv := range resp.Kvs {
			var sum engine.RunSummary
			if json.Unmarshal(kv.Value, &sum) == nil && sum.Env == env &&
				(newest == nil || sum.Started.After(newest.Started)) {
				newest = &sum
			}
		}
		if newest != nil && newest.Status != "finished" {
			return newest.Run, nil
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := s.cli.Watch(wctx, pfx, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
		id := func() string {
			defer cancel()
			for wr := range wch {
				if wr.Err() != nil {
					return ""
				}
				for _, ev := range wr.Events {
					var sum engine.RunSummary
					if ev.Type == mvccpb.PUT && json.Unmarshal(ev.Kv.Value, &sum) == nil &&
						sum.Env == env && sum.Status != "finished" {
						return sum.Run
					}
				}
			}
			return ""
		}()
		if id != "" {
			return id, nil
		}
		if err := ctx.Err(); err != nil {
			return "", err
		}
	}
}
