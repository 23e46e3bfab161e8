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
	"slices"
	"sort"
	"strings"
	"time"

	"flightdeck/internal/atomicfile"
)

// JournalDir is the folder under the state directory that holds one JSON
// lines file per run.
const JournalDir = "journal"

// Journal appends a run's events to <state>/journal/<run>.jsonl. Every
// append is written and fsynced before it returns, so an event that was
// published is on disk.
type Journal struct {
	f       *os.File
	path    string
	buf     bytes.Buffer
	notices []string
}

// OpenJournal opens (creating if needed) the journal file of a run for
// appending. A torn last line (the process died while writing it, or the
// disk was full) is cut off first, so that the next event starts a line of
// its own; Notices says so, for the run to journal.
func OpenJournal(stateDir, run string) (*Journal, error) {
	if err := ValidateRunID(run); err != nil {
		return nil, err
	}
	dir := filepath.Join(stateDir, JournalDir)
	if err := MkdirPrivate(dir); err != nil {
		return nil, fmt.Errorf("create journal dir: %w", err)
	}
	p := filepath.Join(dir, run+".jsonl")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	j := &Journal{f: f, path: p}
	if err := j.cutTornTail(); err != nil {
		f.Close()
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		return nil, err
	}
	return j, nil
}

// cutTornTail truncates the journal after its last newline.
func (j *Journal) cutTornTail() error {
	fi, err := j.f.Stat()
	if err != nil {
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	size := fi.Size()
	if size == 0 {
		return nil
	}
	keep, err := afterLastNewline(j.f, size)
	if err != nil {
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	if keep == size {
		return nil
	}
	if err := j.f.Truncate(keep); err != nil {
		return fmt.Errorf("journal %s: cut its torn last line: %w", j.path, err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("fsync journal %s: %w", j.path, err)
	}
	j.notices = append(j.notices, fmt.Sprintf("the journal %s ended in a torn line (%d bytes: the process died or the disk was full while writing it); it was cut off before appending", j.path, size-keep))
	return nil
}

// afterLastNewline returns the offset just after the last '\n' of the
// first size bytes of r (0 when there is none).
func afterLastNewline(r io.ReaderAt, size int64) (int64, error) {
	buf := make([]byte, 64*1024)
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		b := buf[:end-start]
		if _, err := r.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// Notices says what opening the journal repaired.
func (j *Journal) Notices() []string { return j.notices }

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
		return fmt.Errorf("write journal %s: %w", j.path, err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("fsync journal %s: %w", j.path, err)
	}
	if slices.ContainsFunc(evs, func(e Event) bool { return e.Type == EvRunFinished }) {
		j.keepSummary()
	}
	return nil
}

// keepSummary caches the summary of the run that just finished beside its
// journal (see cacheSummary), so that no reader has to.
func (j *Journal) keepSummary() {
	f, err := os.Open(j.path)
	if err != nil {
		return
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return
	}
	evs, err := DecodeEvents(f, j.path)
	if err != nil || len(evs) == 0 || evs[0].Start == nil {
		return
	}
	if s := Summarise(evs); s.Status == StatusFinished {
		dir, name := filepath.Split(j.path)
		cacheSummary(filepath.Clean(dir), strings.TrimSuffix(name, ".jsonl"), info, s)
	}
}

// Close closes the journal file.
func (j *Journal) Close() error { return j.f.Close() }

// JournalDamageError says which lines of a journal could not be read. It
// comes with the events of every other line: damage never hides the rest
// of a journal.
type JournalDamageError struct {
	Path string
	// Lines are the damaged lines' numbers (1-based), Errs why, in order
	// (at most the first 10 of each are kept).
	Lines []int
	Errs  []error
	// Count is how many lines were damaged.
	Count int
}

func (e *JournalDamageError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "journal %s: %d damaged line", e.Path, e.Count)
	if e.Count != 1 {
		b.WriteString("s")
	}
	b.WriteString(" skipped (")
	for i, l := range e.Lines {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "line %d: %v", l, e.Errs[i])
	}
	if e.Count > len(e.Lines) {
		b.WriteString("; …")
	}
	b.WriteString(")")
	return b.String()
}

// ReadJournal reads every event of a run. A torn last line (the process
// died mid-write, or is writing it now) is ignored; a damaged line
// elsewhere is skipped, and the events come with a *JournalDamageError
// naming the file and the lines.
func ReadJournal(stateDir, run string) ([]Event, error) {
	if err := ValidateRunID(run); err != nil {
		return nil, err
	}
	p := filepath.Join(stateDir, JournalDir, run+".jsonl")
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("open journal of run %s: %w", run, err)
	}
	defer f.Close()
	evs, err := DecodeEvents(f, p)
	if err != nil {
		return evs, err
	}
	return evs, nil
}

// maxJournalLine bounds one journal line (one event).
const maxJournalLine = 16 << 20

// DecodeEvents reads a journal's JSON lines from r (path names it in
// errors). A last line without its newline is torn and ignored; other
// lines that are not events are skipped and reported in a
// *JournalDamageError that comes with the events read. Other errors (the
// reader's) return no events.
func DecodeEvents(r io.Reader, path string) ([]Event, error) {
	var evs []Event
	br := bufio.NewReaderSize(r, 64*1024)
	var dmg *JournalDamageError
	damage := func(line int, err error) {
		if dmg == nil {
			dmg = &JournalDamageError{Path: path}
		}
		dmg.Count++
		if len(dmg.Lines) < 10 {
			dmg.Lines = append(dmg.Lines, line)
			dmg.Errs = append(dmg.Errs, err)
		}
	}
	line := 0
	for {
		b, err := readLine(br, maxJournalLine)
		if errors.Is(err, io.EOF) {
			break // b, without its newline, is a torn last line
		}
		line++
		if errors.Is(err, errLongLine) {
			damage(line, err)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read journal %s: %w", path, err)
		}
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(b, &e); err != nil {
			damage(line, err)
			continue
		}
		evs = append(evs, e)
	}
	if dmg != nil {
		return evs, dmg
	}
	return evs, nil
}

var errLongLine = fmt.Errorf("longer than %d bytes", maxJournalLine)

// readLine reads one line, without its newline. At the end of the input
// it returns io.EOF (with what followed the last newline); a line longer
// than limit is consumed and errLongLine returned.
func readLine(br *bufio.Reader, limit int) ([]byte, error) {
	var out []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(out)+len(chunk) <= limit {
			out = append(out, chunk...)
		} else {
			out = out[:0:0]
			limit = -1
		}
		switch {
		case err == nil:
			if limit < 0 {
				return nil, errLongLine
			}
			return out[:len(out)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return out, err
		}
	}
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
	// Damage says which lines of the run's journal could not be read
	// (the summary is made of the others).
	Damage string `json:"damage,omitempty"`
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
		info, err := de.Info()
		if err != nil {
			continue // removed since ReadDir
		}
		if s, ok := cachedSummary(dir, name, info); ok {
			out = append(out, s)
			continue
		}
		evs, err := ReadJournal(stateDir, name)
		var dmg *JournalDamageError
		if err != nil && !errors.As(err, &dmg) {
			return nil, err
		}
		if len(evs) == 0 || evs[0].Start == nil {
			continue
		}
		s := Summarise(evs)
		if dmg != nil {
			s.Damage = dmg.Error()
		} else if s.Status == StatusFinished {
			cacheSummary(dir, name, info, s)
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.Before(out[j].Started)
		}
		return out[i].Run < out[j].Run
	})
	return out, nil
}

// summaryCache is what <run>.summary.json holds: the summary of a
// finished run and the size and modification time of the journal it was
// made from. A finished run's journal is never appended to again, so the
// summary stays right while the file is the same; any change to it (an
// edit, a repair) makes the cache stale and the journal is read again.
type summaryCache struct {
	Size    int64      `json:"size"`
	ModTime time.Time  `json:"mod_time"`
	Summary RunSummary `json:"summary"`
}

func summaryPath(dir, run string) string { return filepath.Join(dir, run+".summary.json") }

// cachedSummary returns the cached summary of run when it was made from
// the journal file as it is now.
func cachedSummary(dir, run string, journal os.FileInfo) (RunSummary, bool) {
	b, err := os.ReadFile(summaryPath(dir, run))
	if err != nil {
		return RunSummary{}, false
	}
	var c summaryCache
	if json.Unmarshal(b, &c) != nil || c.Size != journal.Size() || !c.ModTime.Equal(journal.ModTime()) ||
		c.Summary.Run != run || c.Summary.Status != StatusFinished {
		return RunSummary{}, false
	}
	return c.Summary, true
}

// cacheSummary keeps a finished run's summary beside its journal, so that
// listing the runs does not read every journal again (every deploy lists
// them). It is only a cache: when it cannot be written (a read-only state
// directory), the journal is read the next time.
func cacheSummary(dir, run string, journal os.FileInfo, s RunSummary) {
	b, err := json.Marshal(summaryCache{Size: journal.Size(), ModTime: journal.ModTime(), Summary: s})
	if err != nil {
		return
	}
	_ = atomicfile.Write(summaryPath(dir, run), b, 0o600)
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
