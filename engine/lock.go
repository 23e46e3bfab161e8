package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// LockInfo says who holds an environment's lock.
type LockInfo struct {
	Owner   string    `json:"owner"`
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	Started time.Time `json:"started"`
	Command string    `json:"command"`
	// Run is the run the lock is taken for.
	Run string `json:"run,omitempty"`
	// Unreadable is set for a lock file that is empty or cannot be parsed
	// (a crash between its creation and its write): its holder is
	// unknown and Started is the file's modification time.
	Unreadable string `json:"-"`
}

// Describe names the holder for messages.
func (li LockInfo) Describe() string {
	if li.Unreadable != "" {
		return fmt.Sprintf("an unknown holder (%s)", li.Unreadable)
	}
	return fmt.Sprintf("%s (pid %d on %s, %q)", li.Owner, li.PID, li.Host, li.Command)
}

// LockHeldError is returned when another run holds the lock.
type LockHeldError struct {
	Env  string
	Info LockInfo
	Age  time.Duration
}

func (e *LockHeldError) Error() string {
	return fmt.Sprintf("environment %s is locked by %s for %s; if that run is gone, `flightdeck unlock --env %s` breaks the lock",
		e.Env, e.Info.Describe(), e.Age.Round(time.Second), e.Env)
}

// Lock is a held environment lock: its file, open and locked with
// flock(2) for as long as the lock is held. The kernel lets the flock go
// when the process dies, so a lock file nobody has flocked belongs to a
// dead process, and taking it over is one atomic flock.
type Lock struct {
	f    *os.File
	path string
	// Recovered describes a stale lock of a dead process that was taken over.
	Recovered *LockInfo
}

func lockPath(stateDir, env string) string {
	return filepath.Join(stateDir, "locks", env+".lock")
}

// AcquireLock takes the environment's lock: it opens (creating) the lock
// file and flocks it without waiting. A file flocked by another process is
// held (*LockHeldError, whatever it says, even nothing yet). A file nobody
// flocks was left by a process that died on this machine: it is taken over
// (Recovered says whose it was) — unless it names another machine (never
// assumed stale) or cannot be read (held by an unknown holder: `unlock`
// breaks it).
func AcquireLock(stateDir, env string, info LockInfo) (*Lock, error) {
	p := lockPath(stateDir, env)
	if err := MkdirPrivate(filepath.Dir(p)); err != nil {
		return nil, fmt.Errorf("create lock dir: %w", err)
	}
	b, err := json.Marshal(info)
	if err != nil {
		return nil, err
	}
	// A lock file removed (released or broken) between our open and our
	// flock is not the lock any more: try again with the one at the path.
	for range 16 {
		created := true
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
		if errors.Is(err, os.ErrExist) {
			created = false
			f, err = os.OpenFile(p, os.O_RDWR, 0)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
		}
		if err != nil {
			return nil, fmt.Errorf("take lock: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, heldError(stateDir, env)
			}
			return nil, fmt.Errorf("take lock %s: flock: %w", p, err)
		}
		if !sameFile(f, p) {
			f.Close()
			continue
		}
		var held *LockInfo
		if !created {
			if held, err = readLockFile(f, p); err != nil {
				f.Close()
				return nil, err
			}
			// Nobody flocks it: its holder died — on this machine. A
			// lock of another machine (a shared state directory) is
			// never assumed stale, nor one whose holder is unknown.
			host, _ := os.Hostname()
			if held.Unreadable != "" || held.Host != host || held.PID <= 0 {
				f.Close()
				return nil, &LockHeldError{Env: env, Info: *held, Age: time.Since(held.Started)}
			}
		}
		if err := rewrite(f, b); err != nil {
			f.Close()
			return nil, fmt.Errorf("write lock %s: %w", p, err)
		}
		return &Lock{f: f, path: p, Recovered: held}, nil
	}
	return nil, fmt.Errorf("take lock %s: it kept being removed", p)
}

// heldError describes the holder of a lock we could not flock.
func heldError(stateDir, env string) error {
	held, err := ReadLock(stateDir, env)
	if err != nil {
		// Released in the meantime: still a lost race, held a moment ago.
		held = &LockInfo{Unreadable: "released while it was read", Started: time.Now()}
	}
	return &LockHeldError{Env: env, Info: *held, Age: time.Since(held.Started)}
}

func rewrite(f *os.File, b []byte) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		return err
	}
	return f.Sync()
}

// sameFile reports whether f is still the file at path p.
func sameFile(f *os.File, p string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Lstat(p)
	return err == nil && os.SameFile(a, b)
}

// readLockFile reads an open lock file: an Unreadable holder for an
// empty or damaged one.
func readLockFile(f *os.File, p string) (*LockInfo, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read lock %s: %w", p, err)
	}
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read lock %s: %w", p, err)
	}
	return ParseLock(b, p, fi.ModTime()), nil
}

// ParseLock reads a lock file's content. Content that is not a lock (an
// empty file: a process died between the file's creation and its write,
// or is writing it right now; or damage) is a holder that is unknown,
// Unreadable saying why, whose age counts from mtime.
func ParseLock(b []byte, path string, mtime time.Time) *LockInfo {
	var li LockInfo
	err := json.Unmarshal(b, &li)
	switch {
	case len(bytes.TrimSpace(b)) == 0:
		return &LockInfo{Unreadable: "the lock file " + path + " is empty", Started: mtime}
	case err != nil:
		return &LockInfo{Unreadable: fmt.Sprintf("the lock file %s cannot be read: %v", path, err), Started: mtime}
	case li.Started.IsZero():
		li.Started = mtime
	}
	return &li
}

// ReadLock returns what an environment's lock file says of its holder (an
// Unreadable holder when it says nothing readable).
func ReadLock(stateDir, env string) (*LockInfo, error) {
	p := lockPath(stateDir, env)
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("read lock: %w", err)
	}
	defer f.Close()
	return readLockFile(f, p)
}

// Held reports whether the lock is still this process's: the file at its
// path is the one it flocked (`unlock` did not break it).
func (l *Lock) Held() bool { return sameFile(l.f, l.path) }

// Release removes the lock file (unless the lock was broken and the path
// is another's now) and lets the flock go.
func (l *Lock) Release() error {
	var err error
	if l.Held() {
		if rerr := os.Remove(l.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = fmt.Errorf("release lock: %w", rerr)
		}
	}
	return errors.Join(err, l.f.Close())
}

// BreakLock removes an environment's lock regardless of its holder (even
// one whose file cannot be read) and returns who held it.
func BreakLock(stateDir, env string) (*LockInfo, error) {
	li, err := ReadLock(stateDir, env)
	if err != nil {
		return nil, err
	}
	if err := os.Remove(lockPath(stateDir, env)); err != nil {
		return nil, fmt.Errorf("break lock: %w", err)
	}
	return li, nil
}

// RecordUnlock appends who broke a lock, whose it was and why to
// <state>/locks/unlocks.log (JSON lines, fsynced).
func RecordUnlock(stateDir, env string, by Actor, held LockInfo, reason string) error {
	p := filepath.Join(stateDir, "locks", "unlocks.log")
	rec := struct {
		Time       time.Time `json:"time"`
		Env        string    `json:"env"`
		By         string    `json:"by"`
		Held       LockInfo  `json:"held"`
		Unreadable string    `json:"unreadable,omitempty"`
		Reason     string    `json:"reason,omitempty"`
	}{time.Now().UTC(), env, by.Name, held, held.Unreadable, reason}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("record unlock: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("record unlock: %w", err)
	}
	return f.Sync()
}

// MkdirPrivate makes a state directory (and its parents) readable by its
// owner only: journals keep hook output and locks name people.
func MkdirPrivate(dir string) error {
	return os.MkdirAll(dir, 0o700)
}
