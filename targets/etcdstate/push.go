package etcdstate

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	clientv3 "go.etcd.io/etcd/client/v3"

	"flightdeck/engine"
)

// PushReport says what Push copied.
type PushReport struct {
	// Runs are the runs that got events; Present those already complete in etcd.
	Runs, Present []string
	// Events is how many events were copied.
	Events int
	// Unlocks is how many unlock records were copied.
	Unlocks int
}

// pushChunk is how many events Push writes per journal key.
const pushChunk = 64

// Push copies a local state directory's journal (every run, and the record
// of broken locks) into etcd. It is idempotent: a run already in etcd gets
// only the events it lacks, and a run whose events differ from the local
// ones is refused with ErrConflict, touching nothing of that run.
func (s *Store) Push(ctx context.Context, stateDir string) (*PushReport, error) {
	runs, err := engine.ListRuns(stateDir)
	if err != nil {
		return nil, fmt.Errorf("read the local journal: %w", err)
	}
	rep := &PushReport{}
	var errs []error
	for _, r := range runs {
		local, err := engine.ReadJournal(stateDir, r.Run)
		if err != nil {
			return rep, fmt.Errorf("read the local journal of run %s: %w", r.Run, err)
		}
		n, err := s.pushRun(ctx, r.Run, local)
		switch {
		case err != nil:
			errs = append(errs, err)
		case n > 0:
			rep.Runs = append(rep.Runs, r.Run)
			rep.Events += n
		default:
			rep.Present = append(rep.Present, r.Run)
		}
	}
	n, err := s.pushUnlocks(ctx, filepath.Join(stateDir, "locks", "unlocks.log"))
	rep.Unlocks = n
	if err != nil {
		errs = append(errs, err)
	}
	return rep, errors.Join(errs...)
}

func (s *Store) pushRun(ctx context.Context, run string, local []engine.Event) (int, error) {
	if err := ValidRunID(run); err != nil {
		return 0, err
	}
	remote, _, err := s.readJournal(ctx, run)
	if err != nil {
		return 0, err
	}
	for i, e := range remote {
		if i >= len(local) || !sameEvent(e, local[i]) {
			return 0, fmt.Errorf("run %s: etcd's event %d differs from the local journal's: %w", run, e.Seq, ErrConflict)
		}
	}
	j := &Journal{s: s, run: run, evs: remote}
	if len(remote) > 0 {
		j.last = remote[len(remote)-1].Seq
	}
	rest := local[len(remote):]
	pushed := len(rest)
	for len(rest) > 0 {
		n := min(pushChunk, len(rest))
		if err := j.Append(ctx, rest[:n]...); err != nil {
			return 0, fmt.Errorf("push run %s: %w", run, err)
		}
		rest = rest[n:]
	}
	// The summary, whatever batches the events came in.
	sum, err := json.Marshal(engine.Summarise(local))
	if err != nil {
		return 0, err
	}
	err = s.retry(ctx, "summary of run "+run, func(ctx context.Context) error {
		_, err := s.cli.Put(ctx, s.runKey(run), string(sum))
		return err
	})
	return pushed, err
}

func sameEvent(a, b engine.Event) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

func (s *Store) pushUnlocks(ctx context.Context, path string) (int, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		var rec Unlock
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || rec.Env == "" {
			return n, fmt.Errorf("%s:%d: not an unlock record", path, line)
		}
		// The key is derived from the record, so pushing twice writes it once.
		sum := sha256.Sum256(sc.Bytes())
		key := fmt.Sprintf("%s%020d-%x", s.unlockPrefix(rec.Env), rec.Time.UnixNano(), sum[:4])
		val, err := json.Marshal(rec)
		if err != nil {
			return n, err
		}
		var created bool
		err = s.retry(ctx, "unlock record", func(ctx context.Context) error {
			resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
				Then(clientv3.OpPut(key, string(val))).Commit()
			if err == nil {
				created = resp.Succeeded
			}
			return err
		})
		if err != nil {
			return n, err
		}
		if created {
			n++
		}
	}
	return n, sc.Err()
}
