package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
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
}

// LockHeldError is returned when another run holds the lock.
type LockHeldError struct {
	Env  string
	Info LockInfo
	Age  time.Duration
}

func (e *LockHeldError) Error() string {
	return fmt.Sprintf("environment %s is locked by %s (pid %d on %s, %q) for %s; if that run is gone, `flightdeck unlock --env %s` breaks the lock",
		e.Env, e.Info.Owner, e.Info.PID, e.Info.Host, e.Info.Command, e.Age.Round(time.Second), e.Env)
}

// Lock is a held environment lock.
type Lock struct {
	path string
	// Recovered describes a stale lock of a dead process that was taken over.
	Recovered *LockInfo
}

func lockPath(stateDir, env string) string {
	return filepath.Join(stateDir, "locks", env+".lock")
}

// AcquireLock takes the environment's lock atomically (O_EXCL). A lock
// held by a process that no longer exists on this machine is stale and is
// taken over (Recovered says whose it was); any other holder makes it fail
// with *LockHeldError.
func AcquireLock(stateDir, env string, info LockInfo) (*Lock, error) {
	p := lockPath(stateDir, env)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("create lock dir: %w", err)
	}
	b, err := json.Marshal(info)
	if err != nil {
		return nil, err
	}
	var stale *LockInfo
	for attempt := 0; attempt < 2; attempt++ {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err == nil {
			_, werr := f.Write(b)
			serr := f.Sync()
			cerr := f.Close()
			if err := errors.Join(werr, serr, cerr); err != nil {
				os.Remove(p)
				return nil, fmt.Errorf("write lock: %w", err)
			}
			return &Lock{path: p, Recovered: stale}, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("take lock: %w", err)
		}
		held, rerr := ReadLock(stateDir, env)
		if rerr != nil {
			return nil, rerr
		}
		if !held.deadHere() {
			return nil, &LockHeldError{Env: env, Info: *held, Age: time.Since(held.Started)}
		}
		// The holder died on this machine: the lock is stale. Rename it
		// aside atomically so that only one taker wins, then retry.
		aside := p + ".stale-" + RandomSuffix(4)
		if err := os.Rename(p, aside); err != nil {
			continue
		}
		os.Remove(aside)
		stale = held
	}
	return nil, fmt.Errorf("take lock %s: contended", p)
}

// ReadLock returns the holder of an environment's lock.
func ReadLock(stateDir, env string) (*LockInfo, error) {
	b, err := os.ReadFile(lockPath(stateDir, env))
	if err != nil {
		return nil, fmt.Errorf("read lock: %w", err)
	}
	var li LockInfo
	if err := json.Unmarshal(b, &li); err != nil {
		return nil, fmt.Errorf("read lock %s: %w", lockPath(stateDir, env), err)
	}
	return &li, nil
}

func (li *LockInfo) deadHere() bool {
	host, _ := os.Hostname()
	if li.Host != host || li.PID <= 0 {
		return false
	}
	err := syscall.Kill(li.PID, 0)
	return errors.Is(err, syscall.ESRCH)
}

// Release removes the lock.
func (l *Lock) Release() error {
	if err := os.Remove(l.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("release lock: %w", err)
	}
	return nil
}

// BreakLock removes an environment's lock regardless of its holder and
// returns who held it.
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
		Time   time.Time `json:"time"`
		Env    string    `json:"env"`
		By     string    `json:"by"`
		Held   LockInfo  `json:"held"`
		Reason string    `json:"reason,omitempty"`
	}{time.Now().UTC(), env, by.Name, held, reason}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("record unlock: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("record unlock: %w", err)
	}
	return f.Sync()
}
