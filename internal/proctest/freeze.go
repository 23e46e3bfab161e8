package proctest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Freeze stops the process pid (SIGSTOP) and waits until every one of its
// threads is stopped. kill(2) only queues the signal: each thread stops
// when it next handles signals, so a process that was just sent SIGSTOP
// can still read a request or write an answer for a moment. A test that
// needs a hung process (one whose kernel still accepts bytes that nobody
// reads) must wait for the stop to be complete. A process that exits
// meanwhile counts as frozen.
func Freeze(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("stopping process %d: %w", pid, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		stopped, err := allThreadsStopped(pid)
		if err != nil || stopped {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d: not every thread stopped within 10s of SIGSTOP", pid)
		}
		time.Sleep(time.Millisecond) // polls the kernel's view; not a guess at timing
	}
}

// allThreadsStopped reports whether every thread of pid is in the stopped
// state ('T', or 't' under a tracer), from /proc/PID/task/*/stat.
func allThreadsStopped(pid int) (bool, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil {
		return false, err
	}
	if len(tasks) == 0 {
		return true, nil // gone
	}
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue // a thread that exited
		}
		if err != nil {
			return false, fmt.Errorf("reading %s: %w", p, err)
		}
		// The state follows the command name, which is in parentheses
		// and may itself contain ") ".
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) {
			return false, fmt.Errorf("%s: unexpected format %.80q", p, b)
		}
		if s := b[i+2]; s != 'T' && s != 't' && s != 'Z' && s != 'X' {
			return false, nil
		}
	}
	return true, nil
}
