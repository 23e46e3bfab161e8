package etcdstate

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"flightdeck/engine"
)

// maxBatchBytes bounds one journal key's value, well under etcd's default
// request limit (1.5 MiB); a larger batch is split over several keys.
const maxBatchBytes = 512 << 10

// ErrConflict is returned when a journal key already holds other events:
// another controller wrote the same run.
var ErrConflict = errors.New("the run's journal in etcd already holds other events at this sequence number")

// Journal appends one run's events to etcd. Each Append is one
// transaction (group commit): the events, as JSON lines, go under a new
// key named by the first event's sequence number, only if that key does
// not exist yet and, when the journal belongs to a lock, only while the
// lock is still ours. A write that fails for want of etcd is retried
// until it commits, so Append returns only once the events are committed
// (or the lock is lost, or ctx ends).
type Journal struct {
	s    *Store
	run  string
	lock *Lock
	last uint64
	// evs is the run so far, for its summary at start and finish.
	evs []engine.Event
	buf bytes.Buffer
}

// ValidRunID reports whether a run id can name etcd keys.
func ValidRunID(run string) error { return engine.ValidateRunID(run) }

// OpenJournal opens run's journal for appending, fenced by lock (nil:
// unfenced, e.g. a migration). A run that already has events (a resumed
// run) continues after them. The journal of the run the lock was taken
// for was read with the lock, and is not read again.
func (s *Store) OpenJournal(ctx context.Context, run string, lock *Lock) (*Journal, error) {
	if err := ValidRunID(run); err != nil {
		return nil, err
	}
	var evs []engine.Event
	var err error
	if kvs, ok := lock.takePrefetchedOf(run); ok {
		evs, err = decodeKeys(run, kvs)
	} else {
		evs, _, err = s.readJournal(ctx, run)
	}
	if err != nil {
		return nil, err
	}
	j := &Journal{s: s, run: run, lock: lock, evs: evs}
	if n := len(evs); n > 0 {
		j.last = evs[n-1].Seq
	}
	return j, nil
}

// Run is the journal's run id.
func (j *Journal) Run() string { return j.run }

// Append commits events (in order, with increasing sequence numbers
// after those already journaled).
func (j *Journal) Append(ctx context.Context, evs ...engine.Event) error {
	last := j.last
	for _, e := range evs {
		if e.Seq <= last {
			return fmt.Errorf("journal of run %s: event seq %d after %d", j.run, e.Seq, last)
		}
		if e.Run != "" && e.Run != j.run {
			return fmt.Errorf("journal of run %s: event of run %s", j.run, e.Run)
		}
		last = e.Seq
	}
	for len(evs) > 0 {
		j.buf.Reset()
		enc := json.NewEncoder(&j.buf)
		n := 0
		for n < len(evs) && (n == 0 || j.buf.Len() < maxBatchBytes) {
			if err := enc.Encode(&evs[n]); err != nil {
				return fmt.Errorf("encode event %d: %w", evs[n].Seq, err)
			}
			n++
		}
		if err := j.commit(ctx, evs[:n], j.buf.String()); err != nil {
			return err
		}
		evs = evs[n:]
	}
	return nil
}

func (j *Journal) commit(ctx context.Context, evs []engine.Event, val string) error {
	s := j.s
	key := s.journalKey(j.run, evs[0].Seq)
	ops := []clientv3.Op{clientv3.OpPut(key, val)}
	all := append(j.evs, evs...)
	if summarised(evs) {
		sum, err := json.Marshal(engine.Summarise(all))
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut(s.runKey(j.run), string(sum)))
	}
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)}
	elses := []clientv3.Op{clientv3.OpGet(key)}
	if j.lock != nil {
		if err := j.lock.Lost(); err != nil {
			return err
		}
		cmps = append(cmps, j.lock.cmp())
		elses = append(elses, clientv3.OpGet(j.lock.key))
	}
	what := fmt.Sprintf("journal write of run %s (events %d–%d)", j.run, evs[0].Seq, evs[len(evs)-1].Seq)
	err := s.retry(ctx, what, func(ctx context.Context) error {
		resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Else(elses...).Commit()
		if err != nil {
			return err
		}
		if resp.Succeeded {
			return nil
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) > 0 && string(kvs[0].Value) == val {
			// An earlier attempt committed and its answer was lost.
			return nil
		}
		// The lock is asked first: a controller that lost it finds the
		// events of whoever took over at its next sequence number, and
		// what it must learn is that it lost the lock, not a conflict.
		if j.lock != nil {
			if lk := resp.Responses[1].GetResponseRange().Kvs; len(lk) == 0 || lk[0].CreateRevision != j.lock.rev {
				lost := fmt.Errorf("%w: the lock key of %s was deleted or taken over (lease expired or lock broken); %s was not committed",
					ErrLockLost, j.lock.env, what)
				j.lock.markLost(lost)
				return final(lost)
			}
		}
		if len(kvs) > 0 {
			return final(fmt.Errorf("%s: %w (%s)", what, ErrConflict, describeStored(kvs[0].Value, kvs[0].ModRevision, evs)))
		}
		return fmt.Errorf("%s: the transaction failed without a reason", what)
	})
	if err != nil {
		return err
	}
	j.evs = all
	j.last = evs[len(evs)-1].Seq
	return nil
}

// describeStored says how a journal key's stored batch differs from the
// events that were to be written there, for the conflict's message.
func describeStored(stored []byte, rev int64, ours []engine.Event) string {
	got, err := decodeBatch(stored)
	if err != nil || len(got) == 0 {
		return fmt.Sprintf("the key, written at revision %d, holds %d unreadable bytes", rev, len(stored))
	}
	same := len(got) == len(ours)
	for i := 0; same && i < len(got); i++ {
		same = got[i].Seq == ours[i].Seq && got[i].Type == ours[i].Type && got[i].Host == ours[i].Host
	}
	return fmt.Sprintf("the key, written at revision %d, holds events %d–%d (%s first; same sequence and types as ours: %t)",
		rev, got[0].Seq, got[len(got)-1].Seq, got[0].Type, same)
}

// summarised reports whether a batch changes the run's summary.
func summarised(evs []engine.Event) bool {
	for _, e := range evs {
		switch e.Type {
		case engine.EvRunStarted, engine.EvRunResumed, engine.EvRunFinished:
			return true
		}
	}
	return false
}

// Close ends the journal (it holds no resource of its own).
func (j *Journal) Close() error { return nil }

// ReadJournal reads every event of a run, in order.
func (s *Store) ReadJournal(ctx context.Context, run string) ([]engine.Event, error) {
	if err := ValidRunID(run); err != nil {
		return nil, err
	}
	evs, rev, err := s.readJournal(ctx, run)
	if err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		// Tell an unknown run from a run with no events yet.
		var resp *clientv3.GetResponse
		if err := s.request(ctx, func(ctx context.Context) (err error) {
			resp, err = s.cli.Get(ctx, s.runKey(run), clientv3.WithRev(rev), clientv3.WithCountOnly())
			return err
		}); err != nil {
			return nil, fmt.Errorf("etcd: read run %s: %w", run, err)
		}
		if resp.Count == 0 {
			return nil, fmt.Errorf("no run %s in %s", run, s.Describe())
		}
	}
	return evs, nil
}

// readJournal reads a run's events at one revision, page by page, and
// returns that revision.
func (s *Store) readJournal(ctx context.Context, run string) ([]engine.Event, int64, error) {
	pfx := s.journalPrefix(run)
	end := clientv3.GetPrefixRangeEnd(pfx)
	from := pfx
	var rev int64
	var kvs []*mvccpb.KeyValue
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(256)}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		var resp *clientv3.GetResponse
		if err := s.request(ctx, func(ctx context.Context) (err error) {
			resp, err = s.cli.Get(ctx, from, opts...)
			return err
		}); err != nil {
			return nil, 0, fmt.Errorf("etcd: read the journal of run %s: %w", run, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		kvs = append(kvs, resp.Kvs...)
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	evs, err := decodeKeys(run, kvs)
	return evs, rev, err
}

// decodeKeys decodes a run's journal keys (in key order) and checks that
// their events are in order.
func decodeKeys(run string, kvs []*mvccpb.KeyValue) ([]engine.Event, error) {
	var evs []engine.Event
	for _, kv := range kvs {
		batch, err := decodeBatch(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("etcd: journal key %s: %w", kv.Key, err)
		}
		evs = append(evs, batch...)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].Seq <= evs[i-1].Seq {
			return nil, fmt.Errorf("etcd: the journal of run %s has event %d after %d", run, evs[i].Seq, evs[i-1].Seq)
		}
	}
	return evs, nil
}

func decodeBatch(b []byte) ([]engine.Event, error) {
	var evs []engine.Event
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 2*maxBatchBytes)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var e engine.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, err
		}
		evs = append(evs, e)
	}
	return evs, sc.Err()
}

// ListRuns summarises every run, oldest first. Finished runs come from
// their summary keys; an unfinished run's journal is read to count it.
func (s *Store) ListRuns(ctx context.Context) ([]engine.RunSummary, error) {
	pfx := s.pfx + "/runs/"
	var resp *clientv3.GetResponse
	if err := s.request(ctx, func(ctx context.Context) (err error) {
		resp, err = s.cli.Get(ctx, pfx, clientv3.WithPrefix())
		return err
	}); err != nil {
		return nil, fmt.Errorf("etcd: list runs: %w", err)
	}
	return s.summariseRuns(ctx, resp.Kvs)
}

// summariseRuns makes the run list of ListRuns from the run summary keys.
func (s *Store) summariseRuns(ctx context.Context, kvs []*mvccpb.KeyValue) ([]engine.RunSummary, error) {
	out := make([]engine.RunSummary, 0, len(kvs))
	for _, kv := range kvs {
		var sum engine.RunSummary
		if err := json.Unmarshal(kv.Value, &sum); err != nil {
			return nil, fmt.Errorf("etcd: run summary %s: %w", kv.Key, err)
		}
		if sum.Status != "finished" {
			evs, _, err := s.readJournal(ctx, sum.Run)
			if err != nil {
				return nil, err
			}
			if len(evs) > 0 && evs[0].Start != nil {
				sum = engine.Summarise(evs)
			}
		}
		out = append(out, sum)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.Before(out[j].Started)
		}
		return out[i].Run < out[j].Run
	})
	return out, nil
}
