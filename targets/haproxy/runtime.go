package haproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Runtime speaks HAProxy's Runtime API: the stats socket declared with
// "level admin", on a unix socket path or a TCP host:port. Every call opens
// one connection, sends its commands separated by ";" and reads the
// answers until HAProxy closes the connection (the non-interactive mode):
// no state is kept between calls, so a reloaded HAProxy is simply reached
// again. It is safe for concurrent use.
type Runtime struct {
	network, addr string
	// Timeout bounds one call (connect, send, read); default 5 s.
	Timeout time.Duration
}

// NewRuntime returns a client for socket: a unix socket path, or host:port.
func NewRuntime(socket string) *Runtime {
	network := "unix"
	if strings.Contains(socket, ":") && !strings.HasPrefix(socket, "/") {
		network = "tcp"
	}
	return &Runtime{network: network, addr: socket, Timeout: 5 * time.Second}
}

// Addr is the socket as given.
func (rt *Runtime) Addr() string { return rt.addr }

// ErrUnreachable is wrapped by errors reaching the socket (missing,
// refusing, timing out).
var ErrUnreachable = errors.New("HAProxy's Runtime API is unreachable")

// CommandError is a command HAProxy refused, with its answer.
type CommandError struct {
	Command string
	Answer  string
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("haproxy: %q: %s", e.Command, e.Answer)
}

func (rt *Runtime) dial(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: rt.timeout()}
	c, err := d.DialContext(ctx, rt.network, rt.addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w at %s: %w", ErrUnreachable, rt.addr, err)
	}
	return c, nil
}

func (rt *Runtime) timeout() time.Duration {
	if rt.Timeout > 0 {
		return rt.Timeout
	}
	return 5 * time.Second
}

// Do sends cmds in one connection and returns each command's answer
// (without its terminating empty line). Arguments must already be escaped
// (see Quote). A "Permission denied" answer is an error naming the level
// the socket needs; other answers are returned as they are, for the caller
// to judge (see Set).
func (rt *Runtime) Do(ctx context.Context, cmds ...string) ([]string, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	for _, c := range cmds {
		if strings.ContainsAny(c, "\n\r") {
			return nil, fmt.Errorf("haproxy: command %q holds a line break", c)
		}
	}
	conn, err := rt.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	deadline := time.Now().Add(rt.timeout())
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := io.WriteString(conn, strings.Join(cmds, ";")+"\n"); err != nil {
		return nil, fmt.Errorf("haproxy %s: sending %q: %w", rt.addr, cmds[0], ctxErr(ctx, err))
	}
	data, err := io.ReadAll(conn)
	if err != nil {
		return nil, fmt.Errorf("haproxy %s: reading the answer to %q: %w", rt.addr, cmds[0], ctxErr(ctx, err))
	}
	answers := splitAnswers(string(data))
	for _, a := range answers {
		if strings.HasPrefix(a, "Permission denied") {
			return nil, fmt.Errorf("haproxy %s: permission denied: declare the stats socket with \"level admin\"", rt.addr)
		}
	}
	if len(answers) != len(cmds) {
		return nil, fmt.Errorf("haproxy %s: %d answers to %d commands (%q): %q", rt.addr, len(answers), len(cmds), cmds[0], truncate(string(data), 300))
	}
	return answers, nil
}

// ctxErr prefers the context's error to the i/o error it caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// splitAnswers splits the output of several commands: each answer ends
// with an empty line.
func splitAnswers(out string) []string {
	var answers []string
	var cur []string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			answers = append(answers, strings.Join(cur, "\n"))
			cur = nil
			continue
		}
		cur = append(cur, line)
	}
	if len(cur) > 0 {
		answers = append(answers, strings.Join(cur, "\n"))
	}
	return answers
}

// Set sends commands that answer nothing when they succeed (set server,
// add/set/del map...) in one connection; the first non-empty answer is
// returned as a *CommandError.
func (rt *Runtime) Set(ctx context.Context, cmds ...string) error {
	answers, err := rt.Do(ctx, cmds...)
	if err != nil {
		return err
	}
	for i, a := range answers {
		if a != "" {
			return &CommandError{Command: cmds[i], Answer: a}
		}
	}
	return nil
}

// Stream sends one command, calls opened once it is sent, then line for
// every line HAProxy sends until ctx ends or the connection closes (show
// events RING -w).
func (rt *Runtime) Stream(ctx context.Context, cmd string, opened func(), line func(string)) error {
	conn, err := rt.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
		return fmt.Errorf("haproxy %s: sending %q: %w", rt.addr, cmd, err)
	}
	if opened != nil {
		opened()
	}
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line(sc.Text())
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("haproxy %s: reading %q: %w", rt.addr, cmd, err)
	}
	return io.EOF
}

// Quote escapes a word for the Runtime API's command line: a backslash
// before spaces, semicolons and backslashes.
func Quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, " ", `\ `, ";", `\;`, "\t", `\	`)
	return r.Replace(s)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
