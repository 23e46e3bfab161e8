package ssh

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// onHost runs fn with the host's connection, as the layout's operations do.
func onHost(t *testing.T, h *Host, fn func(r *remote) error) {
	t.Helper()
	if err := h.run(ctxT(t), "test", func(_ context.Context, r *remote) error { return fn(r) }); err != nil {
		t.Fatal(err)
	}
}

// TestShellRunsCommandsInOneShell: flightdeck's own commands run one after
// the other in the same shell on the host, with their output byte for
// byte (NUL bytes, no final newline, a line that imitates the end marker),
// their exit status and stderr, and a command that execs or kills the
// shell does not break the commands after it.
func TestShellRunsCommandsInOneShell(t *testing.T) {
	f := newFleet(t, 1, PoolOptions{})
	h := f.hosts[0]
	onHost(t, h, func(r *remote) error {
		pids := map[string]bool{}
		for _, c := range []struct {
			cmd, out, err string
		}{
			{cmd: `echo $$`},
			{cmd: `printf 'a\0b'`, out: "a\x00b"},
			{cmd: `printf 'line\n'`, out: "line\n"},
			{cmd: `printf '\n\n'`, out: "\n\n"},
			{cmd: `true`, out: ""},
			{cmd: `printf 'x\nflightdeck-00000000000000000000000000000000 0\ny'`, out: "x\nflightdeck-00000000000000000000000000000000 0\ny"},
			{cmd: `printf 'partial'; printf 'oops' >&2; exit 3`, out: "partial", err: "exited with status 3: oops"},
			{cmd: `cd /tmp && exec printf done`, out: "done"},
			{cmd: `echo $$`},
			{cmd: `if read x; then echo "read: $x"; else echo eof; fi`, out: "eof\n"}, // stdin is not the shell's script
			{cmd: `echo $$`},
		} {
			out, err := r.output(c.cmd)
			if c.cmd == `echo $$` {
				if err != nil {
					return err
				}
				pids[strings.TrimSpace(string(out))] = true
				continue
			}
			if c.err == "" && err != nil {
				return fmt.Errorf("%s: %v", c.cmd, err)
			}
			if c.err != "" && (err == nil || !strings.HasPrefix(err.Error(), c.err)) {
				return fmt.Errorf("%s: error %v, want %q", c.cmd, err, c.err)
			}
			if string(out) != c.out {
				return fmt.Errorf("%s: output %q, want %q", c.cmd, out, c.out)
			}
		}
		if len(pids) != 1 {
			return fmt.Errorf("the commands ran in %d shells (%v), want one", len(pids), pids)
		}
		return nil
	})
}

// TestShellReplacedWhenItDies: a command that kills its shell gets an
// error, and the next command runs in a new shell.
func TestShellReplacedWhenItDies(t *testing.T) {
	f := newFleet(t, 1, PoolOptions{})
	onHost(t, f.hosts[0], func(r *remote) error {
		before, err := r.output(`echo $$`)
		if err != nil {
			return err
		}
		if _, err := r.output(`kill -9 $$`); err == nil {
			return fmt.Errorf("a command that killed its shell reported success")
		}
		after, err := r.output(`echo $$`)
		if err != nil {
			return fmt.Errorf("the command after a dead shell: %w", err)
		}
		if string(after) == string(before) {
			return fmt.Errorf("the same shell (%s) after it was killed", after)
		}
		return nil
	})
}

// TestShellCommandsAtOnce: commands started together each get their own
// output, whether they find a shell free or run in a session of their own.
func TestShellCommandsAtOnce(t *testing.T) {
	f := newFleet(t, 1, PoolOptions{})
	onHost(t, f.hosts[0], func(r *remote) error {
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Enough lines to need several reads.
				out, err := r.output(fmt.Sprintf("i=0; while [ $i -lt 3000 ]; do echo %d-$i; i=$((i+1)); done", i))
				if err != nil {
					errs <- err
					return
				}
				sc := bufio.NewScanner(strings.NewReader(string(out)))
				n := 0
				for sc.Scan() {
					if want := fmt.Sprintf("%d-%d", i, n); sc.Text() != want {
						errs <- fmt.Errorf("command %d: line %d is %q, want %q", i, n, sc.Text(), want)
						return
					}
					n++
				}
				if n != 3000 {
					errs <- fmt.Errorf("command %d: %d lines, want 3000", i, n)
				}
			}()
		}
		wg.Wait()
		close(errs)
		return <-errs
	})
}
