package engine

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// JournalDir is the folder under the state directory that holds one JSON
// lines file per run.
const JournalDir = "journal"

// Journal appends a run's events to <state>/journal/<run>.jsonl. Every
// append is written and fsynced before it returns, so an event that was
// published is on disk.
type Journal struct {
	f    *os.File
	path string
	buf  bytes.Buffer
}

// OpenJournal opens (creating if needed) the journal file of a run for appending.
func OpenJournal(stateDir, run string) (*Journal, error) {
	dir := filepath.Join(stateDir, JournalDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create journal dir: %w", err)
	}
	p := filepath.Join(dir, run+".jsonl")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		return nil, err
	}
	return &Journal{f: f, path: p}, nil
}

// Path is the journal file's path.
func (j *Journal) Path() string { return j.path }

// Append writes events as JSON lines with one write and one fsync (group commit).
func (j *Journal) Append(evs ...Event) error {
	j.buf.Reset()
	enc := json.NewEncoder(&j.buf)
	for i := range evs {
		if err := enc.Encode(&evs[i]); err != nil {
			return fmt.Errorf("encode event %d: %w", evs[i].Seq, err)
		}
	}
	if _, err := j.f.Write(j.buf.Bytes()); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("fsync journal: %w", err)
	}
	return nil
}

// Close closes the journal file.
func (j *Journal) Close() error { return j.f.Close() }

// ReadJournal reads every event of a run. A torn last line (the process
// died mid-write) is ignored; a corrupt line elsewhere is an error.
func ReadJournal(stateDir, run string) ([]Event, error) {
	f, err := os.Open(filepath.Join(stateDir, JournalDir, run+".jsonl"))
	if err != nil {
		return nil, fmt.Errorf("open journal of run %s: %w", run, err)
	}
	defer f.Close()
	return decodeEvents(f)
}

func decodeEvents(r io.Reader) ([]Event, error) {
	var evs []Event
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	var pendingErr error
	line := 0
	for sc.Scan() {
		line++
		if pendingErr != nil {
			return nil, pendingErr
		}
		b := sc.Bytes()
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(b, &e); err != nil {
			pendingErr = fmt.Errorf("journal line %d: %w", line, err)
			continue
		}
		evs = append(evs, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	return evs, nil
}

// RunSummary describes one run in the journal.
type RunSummary struct {
	Run      string        `json:"run"`
	Kind     RunKind       `json:"kind"`
	Env      string        `json:"env"`
	Strategy string        `json:"strategy"`
	Release  string        `json:"release"`
	Previous string        `json:"previous,omitempty"`
	Actor    string        `json:"actor,omitempty"`
	Started  time.Time     `json:"started"`
	Finished time.Time     `json:"finished,omitzero"`
	Outcome  Outcome       `json:"outcome,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`
	Events   int           `json:"events"`
	// Status is StatusFinished, or StatusUnfinished for a run whose process died.
	Status Status `json:"status"`
}

// ListRuns summarises every run in the journal, oldest first.
func ListRuns(stateDir string) ([]RunSummary, error) {
	dir := filepath.Join(stateDir, JournalDir)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list journal: %w", err)
	}
	var out []RunSummary
	for _, de := range ents {
		name, ok := strings.CutSuffix(de.Name(), ".jsonl")
		if !ok || de.IsDir() {
			continue
		}
		evs, err := ReadJournal(stateDir, name)
		if err != nil {
			return nil, err
		}
		if len(evs) == 0 || evs[0].Start == nil {
			continue
		}
		out = append(out, Summarise(evs))
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.Before(out[j].Started)
		}
		return out[i].Run < out[j].Run
	})
	return out, nil
}

// Summarise builds a run summary from its events.
func Summarise(evs []Event) RunSummary {
	st := Fold(evs)
	s := RunSummary{
		Run: st.Run, Kind: st.Info.Kind, Env: st.Info.Env, Strategy: st.Info.Strategy,
		Release: st.Info.Release, Previous: st.Info.Previous, Started: st.Started,
		Events: len(evs), Status: StatusUnfinished,
	}
	if len(evs) > 0 {
		s.Actor = evs[0].Actor
	}
	if st.Status == StatusFinished {
		s.Status = StatusFinished
		s.Finished = st.Finished
		s.Outcome = st.Outcome
		s.Duration = st.Finished.Sub(st.Started)
	}
	return s
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir for fsync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
