package ssh

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"flightdeck/targets/layout"
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

// TestListTreeMatchesLstat: ListTree (one find on the host) describes
// every entry below a release as Lstat does here (the test's host is this
// machine): kind, permission bits with setuid/setgid/sticky, size, symlink
// target (one with spaces and a newline), device, inode and modification
// time; the root itself is not listed and no symlink is followed.
func TestListTreeMatchesLstat(t *testing.T) {
	f := newFleet(t, 1, PoolOptions{})
	h := f.hosts[0]
	root := filepath.Join(f.c.Servers[0].DeployTo, "tree")
	for _, d := range []string{"a/b", "s"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, content string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(root, p), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(root, p), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("a/b/file.txt", "hello\n", 0o444)
	write("a/run.sh", "#!/bin/sh\n", 0o755|os.ModeSetuid)
	write("name with spaces\nand newline", "x", 0o644)
	if err := os.Chmod(filepath.Join(root, "s"), 0o755|os.ModeSticky|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"link": "a/b/file.txt", "odd link": "../x y\nz", "into": "/etc"} {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	var tree *layout.Tree
	onHost(t, h, func(r *remote) error {
		var err error
		tree, err = r.fs().ListTree(ctxT(t), root, 0)
		return err
	})
	want := 0
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		want++
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e, ok := tree.Lookup(rel)
		if !ok {
			t.Errorf("%q: not listed", rel)
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		if e.Mode() != fi.Mode() || e.Stamp.Size != fi.Size() || e.Stamp.Ino != st.Ino || e.Stamp.Dev != uint64(st.Dev) ||
			e.Stamp.MTime != fi.ModTime().UnixNano() || e.Stamp.Perm != uint32(st.Mode&0o7777) {
			t.Errorf("%q: listed %+v, Lstat says mode %v size %d ino %d mtime %d", rel, e, fi.Mode(), fi.Size(), st.Ino, fi.ModTime().UnixNano())
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			if e.Link != target {
				t.Errorf("%q: link %q, want %q", rel, e.Link, target)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if tree.Len() != want {
		t.Errorf("%d entries listed, want %d (the root is not listed, symlinks are not followed)", tree.Len(), want)
	}
}

func TestParseTreeRejectsMalformedOutput(t *testing.T) {
	for _, out := range []string{
		"R f 644 1 2 3 1.000000000\x00\x00name",                                        // no final NUL
		"R f 644 1 2 3 1.000000000\x00\x00",                                            // no name
		"X f 644 1 2 3 1.000000000\x00\x00n\x00",                                       // not R or S
		"R f 644 1 2 3\x00\x00n\x00",                                                   // a field short
		"R f 644 1 2 3 4 1.000000000\x00\x00n\x00",                                     // a field too many
		"R f 99999 1 2 3 1.000000000\x00\x00n\x00",                                     // not a mode
		"R f 644 1 2 3 1.5\x00\x00n\x00",                                               // no nanoseconds
		"R f 644 1 2 3 1.000000000\x00\x00n\x00R d 755 0 0 0 x\x00",                    // torn record
		"R f 644 1 2 3 1.000000000\x00\x00n\x00S d 755 1 2 4 1.000000000\x00\x00n\x00", // a path twice
	} {
		if _, err := parseTree([]byte(out)); err == nil {
			t.Errorf("%q: parsed", out)
		}
	}
	tree, err := parseTree([]byte("S l 777 5 1 2 1.000000001\x00a b\nc\x00x\x00R d 2755 40 1 3 2.000000000\x00\x00d\x00" +
		"S f 4755 91135 26 45691 1796581177.8725723850\x00\x00line\nbreak\x00"))
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := tree.Lookup("x"); e.Link != "a b\nc" || e.Mode() != os.ModeSymlink|0o777 || e.Recent {
		t.Errorf("x: %+v", e)
	}
	if e, _ := tree.Lookup("d"); e.Mode() != os.ModeDir|os.ModeSetgid|0o755 || !e.Recent || e.Stamp.MTime != 2e9 {
		t.Errorf("d: %+v", e)
	}
	if e, _ := tree.Lookup("line\nbreak"); e.Mode() != os.ModeSetuid|0o755 || e.Stamp.Size != 91135 || e.Recent ||
		e.Stamp != (layout.Stamp{Dev: 26, Ino: 45691, Size: 91135, Perm: 0o4755, MTime: 1796581177872572385}) {
		t.Errorf("line\\nbreak: %+v", e)
	}
	if st, recent := layout.TreeStamps(tree); len(st) != 1 || st["line\nbreak"].Ino != 45691 || len(recent) != 0 {
		t.Errorf("stamps of the tree: %+v, recent %v: want the one regular file", st, recent)
	}
}

// TestCheckListsTreeOnlyWhenAShellRuns: a Check on a connection that has
// run no command lists directories over SFTP (a rollback's check starts no
// process on the host); once a shell runs (a Verify needs the stamps, one
// find), a Check lists the whole tree with one find in it.
func TestCheckListsTreeOnlyWhenAShellRuns(t *testing.T) {
	f := newFleet(t, 1, PoolOptions{})
	ctx := ctxT(t)
	setup := f.hosts[0]
	files := map[string]string{}
	for i := range 30 {
		files[fmt.Sprintf("d%d/f%02d.txt", i%3, i)] = fmt.Sprintf("file %d\n", i)
	}
	if err := setup.Prepare(ctx, release(t, "r1", files), nil); err != nil {
		t.Fatal(err)
	}
	// A host of its own pool: a connection of its own.
	p := NewPool(PoolOptions{})
	t.Cleanup(func() { p.Close() })
	h := p.Host("web1", target(f.c, f.c.Servers[0]))
	runs := func() uint64 {
		var n uint64
		onHost(t, h, func(r *remote) error { n = r.shells.runs.Load(); return nil })
		return n
	}
	if err := h.Check(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	if n := runs(); n != 0 {
		t.Fatalf("a check on a fresh connection ran %d commands on the host", n)
	}
	if err := h.Verify(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	if n := runs(); n != 1 {
		t.Fatalf("a verify ran %d commands, want one find", n)
	}
	if err := h.Check(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	if n := runs(); n != 2 {
		t.Fatalf("a check with a shell running ran %d commands in all, want 2 (one find each)", n)
	}
}

// TestShellKilledWhileIdleIsReplaced: a shell killed on the host between
// two commands costs the next command nothing: it runs in a session of
// its own and succeeds, and a new shell serves the commands after it.
func TestShellKilledWhileIdleIsReplaced(t *testing.T) {
	f := newFleet(t, 1, PoolOptions{})
	onHost(t, f.hosts[0], func(r *remote) error {
		out, err := r.output(`echo $$`)
		if err != nil {
			return err
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
		if err != nil {
			return err
		}
		// The host is this machine: kill the idle shell, and wait until
		// it is gone.
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return err
		}
		for {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
				break
			}
			runtime.Gosched()
		}
		for i := range 2 {
			out, err := r.output(`echo ok`)
			if err != nil || string(out) != "ok\n" {
				return fmt.Errorf("command %d after the shell was killed: %q, %v", i+1, out, err)
			}
		}
		return nil
	})
}
