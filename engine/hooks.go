package engine

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"flightdeck/engine/plan"
)

// defaultHookTimeout bounds a hook or restart whose plan sets no timeout.
const defaultHookTimeout = 5 * time.Minute

// maxOutputLines bounds how much of one command's output is journaled.
const maxOutputLines = 200

func (x *executor) hookEnv(h Host, release string) map[string]string {
	return map[string]string{
		"RELEASE_VERSION":  release,
		"RELEASE_PATH":     h.ReleasePath(release),
		"PREVIOUS_RELEASE": x.previousOf(h.Name()),
		"ENVIRONMENT":      x.env.Name,
		"HOST":             h.Name(),
		"APP":              x.plan.App,
	}
}

func (x *executor) runHooks(ctx context.Context, h Host, stage string, hooks []plan.Hook, release string) error {
	for _, hk := range hooks {
		if err := x.exec(ctx, h, stage, hk, release); err != nil {
			return err
		}
	}
	return nil
}

// outputWriter journals a command's output as HostOutput events, one a line.
func (x *executor) outputWriter(h Host, stage, release string) *lineWriter {
	return &lineWriter{emit: func(line string) {
		x.hostSend(h, Event{Type: EvHostOutput, Release: release, Command: stage, Message: line})
	}, max: maxOutputLines}
}

// exec runs a hook or restart command on the host, streaming its output
// into the journal as HostOutput events.
func (x *executor) exec(ctx context.Context, h Host, stage string, hk plan.Hook, release string, extra ...map[string]string) error {
	timeout := hk.Timeout.Duration
	if timeout <= 0 {
		timeout = defaultHookTimeout
	}
	w := x.outputWriter(h, stage, release)
	env := x.hookEnv(h, release)
	for _, m := range extra {
		for k, v := range m {
			env[k] = v
		}
	}
	err := h.Exec(ctx, ExecRequest{Command: hk.Run, Env: env, Timeout: timeout, Output: w})
	w.Flush()
	if err != nil {
		return fmt.Errorf("%s %q: %w%s", stage, hk.Run, err, w.tail())
	}
	return nil
}

// execLocal runs a hook on this machine (hooks with local: true).
func (x *executor) execLocal(ctx context.Context, h Host, stage string, hk plan.Hook, release string) error {
	timeout := hk.Timeout.Duration
	if timeout <= 0 {
		timeout = defaultHookTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	w := x.outputWriter(h, stage+" (local)", release)
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", hk.Run)
	cmd.Dir = x.plan.Dir
	cmd.Env = os.Environ()
	for k, v := range x.hookEnv(h, release) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = w, w
	err := cmd.Run()
	w.Flush()
	if err != nil {
		return fmt.Errorf("%s (local) %q: %w%s", stage, hk.Run, err, w.tail())
	}
	return nil
}

// lineWriter turns a command's output into one event per line.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	emit  func(string)
	n     int
	max   int
	lines []string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		i := bytes.IndexByte(w.buf.Bytes(), '\n')
		if i < 0 {
			break
		}
		w.line(string(w.buf.Next(i + 1)[:i]))
	}
	return len(p), nil
}

func (w *lineWriter) line(s string) {
	s = strings.TrimRight(s, "\r")
	w.lines = append(w.lines, s)
	if len(w.lines) > 5 {
		w.lines = w.lines[1:]
	}
	w.n++
	switch {
	case w.n <= w.max:
		w.emit(s)
	case w.n == w.max+1:
		w.emit(fmt.Sprintf("… output truncated after %d lines", w.max))
	}
}

// Flush emits a last unterminated line.
func (w *lineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf.Len() > 0 {
		w.line(w.buf.String())
		w.buf.Reset()
	}
}

func (w *lineWriter) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.lines) == 0 {
		return ""
	}
	return "\n  " + strings.Join(w.lines, "\n  ")
}
