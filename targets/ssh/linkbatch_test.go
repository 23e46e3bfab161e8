package ssh

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"flightdeck/engine"
	"flightdeck/targets/layout"
)

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// TestPrepareLinksUnchangedFiles: a release with one file changed (40
// files in all, so that they are linked in a batch) gets every other file
// as a hard link of the previous release's (same inode), and only the
// changed file is sent.
func TestPrepareLinksUnchangedFiles(t *testing.T) {
	f := newFleet(t, 1, PoolOptions{})
	ctx := ctxT(t)
	h := f.hosts[0]
	files := map[string]string{}
	for i := range 40 {
		files[fmt.Sprintf("d%d/f%02d.txt", i%3, i)] = fmt.Sprintf("file %d\n", i)
	}
	if err := h.Prepare(ctx, release(t, "r1", files), nil); err != nil {
		t.Fatal(err)
	}
	files["d0/f00.txt"] = "changed\n"
	var last engine.Progress
	if err := h.Prepare(ctx, release(t, "r2", files), func(p engine.Progress) { last = p }); err != nil {
		t.Fatal(err)
	}
	if last.FilesDone != 40 || last.BytesSent != int64(len("changed\n")) {
		t.Fatalf("progress %+v: want 40 files done, only the changed one sent", last)
	}
	rels := filepath.Join(f.c.Servers[0].DeployTo, "releases")
	for name := range files {
		same := inode(t, filepath.Join(rels, "r1", name)) == inode(t, filepath.Join(rels, "r2", name))
		if same != (name != "d0/f00.txt") {
			t.Errorf("%s: shares its inode with r1: %v", name, same)
		}
	}
}

// TestLinkBatchFallsBackPerFile: when the host's cp fails part-way (here a
// source is missing and a name exists already), linkBatch reports linked
// exactly the files that are present, so that Write sends or links the
// others one by one.
func TestLinkBatchFallsBackPerFile(t *testing.T) {
	f := newFleet(t, 1, PoolOptions{})
	ctx := ctxT(t)
	h := f.hosts[0]
	root := f.c.Servers[0].DeployTo
	base, tmp := path.Join(root, "base"), path.Join(root, "tmp")
	var ops []layout.Op
	for i := range linkBatchMin + 4 {
		rel := fmt.Sprintf("d/f%02d", i)
		if err := os.MkdirAll(filepath.Join(base, "d"), 0o755); err != nil {
			t.Fatal(err)
		}
		if i != 3 { // f03 has no source
			if err := os.WriteFile(filepath.Join(base, rel), []byte(rel), 0o444); err != nil {
				t.Fatal(err)
			}
		}
		ops = append(ops, layout.Op{Kind: engine.KindFile, Name: path.Join(tmp, rel), Link: path.Join(base, rel), Mode: 0o444})
	}
	if err := os.MkdirAll(filepath.Join(tmp, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	// f05 exists already (as if an earlier attempt had linked it).
	if err := os.Link(filepath.Join(base, "d/f05"), filepath.Join(tmp, "d/f05")); err != nil {
		t.Fatal(err)
	}
	var linked map[int]bool
	err := h.run(ctx, "link", func(ctx context.Context, r *remote) error {
		linked = r.fs().linkBatch(ctx, tmp, ops)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, op := range ops {
		_, statErr := os.Lstat(op.Name)
		if linked[i] != (i != 3) || (statErr == nil) != (i != 3) {
			t.Errorf("%s: linked %v, present %v; want both %v", op.Name, linked[i], statErr == nil, i != 3)
		}
		if i != 3 && inode(t, op.Name) != inode(t, op.Link) {
			t.Errorf("%s is not a hard link of %s", op.Name, op.Link)
		}
	}
}

// TestLinkCommandsSplit: names that do not fit one command line are
// spread over several, each within maxCommand, every op in exactly one,
// in order.
func TestLinkCommandsSplit(t *testing.T) {
	var ops []layout.Op
	var idx []int
	for i := range 3000 {
		ops = append(ops, layout.Op{Kind: engine.KindFile, Name: fmt.Sprintf("/r/tmp/dir/it's file %04d.bin", i)})
		idx = append(idx, i)
	}
	cmds := linkCommands("/r/base", "/r/tmp", ops, idx)
	if len(cmds) < 2 {
		t.Fatalf("%d commands for %d names, want several", len(cmds), len(ops))
	}
	next := 0
	for _, c := range cmds {
		if len(c.cmd) > maxCommand {
			t.Errorf("command of %d bytes, over %d", len(c.cmd), maxCommand)
		}
		if !strings.HasPrefix(c.cmd, "cd /r/base && exec cp -l --parents -t /r/tmp -- ") {
			t.Errorf("command starts %.60q", c.cmd)
		}
		for _, i := range c.idx {
			if i != next {
				t.Fatalf("op %d in place of %d", i, next)
			}
			next++
		}
		if want := " " + Quote(strings.TrimPrefix(ops[c.idx[0]].Name, "/r/tmp/")); !strings.Contains(c.cmd, want) {
			t.Errorf("command lacks %s", want)
		}
	}
	if next != len(ops) {
		t.Errorf("%d ops in commands, want %d", next, len(ops))
	}
}
