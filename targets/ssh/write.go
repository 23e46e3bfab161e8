package ssh

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"flightdeck/engine"
	"flightdeck/targets/layout"
)

// Transfer is how Prepare sends changed files.
type Transfer int

// Transfer modes.
const (
	// TransferAuto uses SFTP for releases with few changed files and a tar
	// stream for many (see TarThreshold and README.md).
	TransferAuto Transfer = iota
	// TransferSFTP writes every changed file with SFTP requests.
	TransferSFTP
	// TransferTar streams changed files as a tar archive into `tar -x` run
	// on the host (needs GNU tar or bsdtar there).
	TransferTar
)

func (t Transfer) String() string {
	switch t {
	case TransferSFTP:
		return "sftp"
	case TransferTar:
		return "tar"
	}
	return "auto"
}

// TransferAuto streams a tar archive when at least TarMinFiles files are
// to be sent and their mean size is at most TarMaxMeanSize: then the SFTP
// round trips per file (open, write, fsetstat, close) cost more than the
// exec session and the single stream. Larger files go faster over SFTP's
// concurrent writes. The figures behind these are in README.md.
const (
	TarMinFiles    = 1000
	TarMaxMeanSize = 4 << 10
)

// syncAutoFiles is the number of sent files up to which Write fsyncs each
// one (fsync@openssh.com) and each directory; beyond it one `sync -f`
// flushes the host's file system (as targets/local's SyncAuto).
const syncAutoFiles = 256

// Write creates the release's entries (see layout.FS): directories in
// order, then symlinks, then files: unchanged ones hard-linked (those at
// the same path in another release with one cp -l on the host per
// release, see linkBatch; others with hardlink@openssh.com), changed ones
// sent over SFTP or in one tar stream.
func (f remoteFS) Write(ctx context.Context, ops []layout.Op, done func(i int, sent int64)) error {
	if done == nil {
		done = func(int, int64) {}
	}
	var sendFiles int
	var sendBytes int64
	for _, op := range ops {
		if op.Kind == engine.KindFile && op.Link == "" {
			sendFiles++
			sendBytes += op.Size
		}
	}
	mode := f.r.h.pool.opts.Transfer
	if mode == TransferAuto {
		mode = TransferSFTP
		if sendFiles >= TarMinFiles && sendBytes/int64(sendFiles) <= TarMaxMeanSize {
			mode = TransferTar
		}
	}
	syncEach := sendFiles <= syncAutoFiles
	var err error
	if mode == TransferTar {
		err = f.writeTar(ctx, ops, done)
	} else {
		err = f.writeSFTP(ctx, ops, done, syncEach)
	}
	if err != nil {
		return err
	}
	return f.durable(ctx, ops, syncEach && mode != TransferTar)
}

// durable makes what Write created durable: each directory that got
// entries is fsynced (files were, as they were written) when syncEach,
// else the host's file system is flushed with `sync -f` (plain `sync`
// where -f is not known).
func (f remoteFS) durable(ctx context.Context, ops []layout.Op, syncEach bool) error {
	if len(ops) == 0 {
		return nil
	}
	if !syncEach {
		dir := path.Dir(ops[0].Name)
		if _, err := f.r.output("sync -f " + Quote(dir) + " 2>/dev/null || sync"); err != nil {
			return fmt.Errorf("sync the host's file system: %w", err)
		}
		return nil
	}
	var dirs []string
	seen := map[string]bool{}
	for _, op := range ops {
		if d := path.Dir(op.Name); !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	if cmd := "sync -- " + QuoteArgs(dirs...); len(dirs) > 1 && len(cmd) <= maxCommand && f.r.shells.warm() {
		// One `sync DIR...` (coreutils fsyncs each name it is given) in
		// the running command shell rather than an open, fsync and close
		// per directory over SFTP; where sync does not take names, the
		// directories are fsynced over SFTP below.
		if _, err := f.r.output(cmd); err == nil {
			return nil
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(f.r.h.pool.opts.Workers)
	for _, d := range slices.Backward(dirs) {
		g.Go(func() error { return f.SyncDir(gctx, d) })
	}
	return g.Wait()
}

// mkdirs creates the directories of ops, then their symlinks. Ops list a
// directory before anything in it, so the directories of one depth are
// created at once (their parents exist), each depth after the one above.
func (f remoteFS) mkdirs(ctx context.Context, ops []layout.Op) error {
	var levels [][]layout.Op
	var links []layout.Op
	for _, op := range ops {
		switch op.Kind {
		case engine.KindDir:
			d := strings.Count(op.Name, "/")
			for len(levels) <= d {
				levels = append(levels, nil)
			}
			levels[d] = append(levels[d], op)
		case engine.KindSymlink:
			links = append(links, op)
		}
	}
	// afterCommand: a mkdir command failed, maybe after making some.
	afterCommand := false
	create := func(ops []layout.Op) error {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(f.r.h.pool.opts.Workers)
		for _, op := range ops {
			g.Go(func() error {
				var err error
				if op.Kind == engine.KindDir {
					err = f.Mkdir(gctx, op.Name, op.Mode)
					if err != nil && afterCommand {
						if fi, lerr := f.r.sftp.Lstat(op.Name); lerr == nil && fi.IsDir() {
							err = f.Chmod(gctx, op.Name, op.Mode)
						}
					}
				} else {
					err = f.Symlink(gctx, op.Target, op.Name)
				}
				if err != nil {
					return fmt.Errorf("create %s: %w", op.Name, err)
				}
				return nil
			})
		}
		return g.Wait()
	}
	if f.TreeListingCheap() {
		if f.mkdirCommands(levels) == nil {
			return create(links)
		}
		afterCommand = true
	}
	for _, level := range levels {
		if err := create(level); err != nil {
			return err
		}
	}
	return create(links)
}

// mkdirCommands creates the directories of levels (parents first) with
// `mkdir -m MODE` in the command shell, one command for a release's
// directories where SFTP takes a mkdir and a chmod each, level by level
// (at 500 hosts, 21 directories were 21,000 requests). A failure (no
// command runs on an account that forces its SFTP server, say) undoes
// nothing: the caller creates them over SFTP, and sets the mode of those
// made here (they are below the release's temporary directory, which
// this prepare made).
func (f remoteFS) mkdirCommands(levels [][]layout.Op) error {
	var cmds []string
	var b strings.Builder
	var mode fs.FileMode // of the mkdir b ends with
	for _, level := range levels {
		for _, op := range level {
			q := " " + Quote(op.Name)
			if b.Len() > 0 && b.Len()+len(q) > maxCommand {
				cmds = append(cmds, b.String())
				b.Reset()
			}
			if b.Len() == 0 || op.Mode != mode {
				if b.Len() > 0 {
					b.WriteString(" && ")
				}
				fmt.Fprintf(&b, "mkdir -m %04o --", engine.UnixMode(op.Mode))
				mode = op.Mode
			}
			b.WriteString(q)
		}
	}
	if b.Len() > 0 {
		cmds = append(cmds, b.String())
	}
	for _, cmd := range cmds {
		if _, err := f.r.output(cmd); err != nil {
			return err
		}
		f.r.kick()
	}
	return nil
}

// linkBatchMin is the number of files linked from one release at the same
// path from which Write links them with one command on the host (cp -l)
// rather than one SFTP request each.
const linkBatchMin = 16

// linkBatch hard-links, with `cp -l --parents` run on the host per base
// release (names on its command line, see linkCommands), the
// file ops whose Link is the same path in another release; ops maps
// each op's index to the op. It returns the indexes it linked. When a
// command fails (a host without GNU cp, a file at its link limit), the
// ops it may have linked are checked with Lstat: those present are linked
// (nothing else writes in the temporary release), the rest are left to
// SFTP.
func (f remoteFS) linkBatch(ctx context.Context, root string, ops []layout.Op) map[int]bool {
	groups := map[string][]int{}
	for i, op := range ops {
		if op.Kind != engine.KindFile || op.Link == "" {
			continue
		}
		rel := strings.TrimPrefix(op.Name, root+"/")
		if rel == op.Name || !strings.HasSuffix(op.Link, "/"+rel) {
			continue
		}
		base := strings.TrimSuffix(op.Link, "/"+rel)
		groups[base] = append(groups[base], i)
	}
	linked := map[int]bool{}
	for base, idx := range groups {
		if len(idx) < linkBatchMin || ctx.Err() != nil {
			continue
		}
		for _, batch := range linkCommands(base, root, ops, idx) {
			_, err := f.r.output(batch.cmd)
			f.r.kick()
			if err == nil {
				for _, i := range batch.idx {
					linked[i] = true
				}
				continue
			}
			for _, i := range batch.idx {
				if fi, err := f.r.sftp.Lstat(ops[i].Name); err == nil && fi.Mode().IsRegular() {
					linked[i] = true
				}
			}
			f.r.kick()
		}
	}
	return linked
}

// linkCommand is one `cp -l` run on the host and the ops it links.
type linkCommand struct {
	cmd string
	idx []int
}

// linkCommands splits the ops idx, linked from base at the same paths,
// into `cd BASE && exec cp -l --parents -t ROOT -- NAME...` commands of at
// most maxCommand bytes, every name quoted: the shell becomes cp (no other
// process on the host, which costs more there than the command line).
func linkCommands(base, root string, ops []layout.Op, idx []int) []linkCommand {
	head := "cd " + Quote(base) + " && exec cp -l --parents -t " + Quote(root) + " --"
	var out []linkCommand
	var cur linkCommand
	var b strings.Builder
	for _, i := range idx {
		q := " " + Quote(strings.TrimPrefix(ops[i].Name, root+"/"))
		if len(cur.idx) > 0 && b.Len()+len(q) > maxCommand {
			cur.cmd = b.String()
			out = append(out, cur)
			cur = linkCommand{}
			b.Reset()
		}
		if b.Len() == 0 {
			b.WriteString(head)
		}
		b.WriteString(q)
		cur.idx = append(cur.idx, i)
	}
	if len(cur.idx) > 0 {
		cur.cmd = b.String()
		out = append(out, cur)
	}
	return out
}

// writeSFTP creates directories and symlinks, then links and uploads
// files side by side (the batched links while the changed files are
// sent); the first failure stops both.
func (f remoteFS) writeSFTP(ctx context.Context, ops []layout.Op, done func(int, int64), syncEach bool) error {
	if err := f.mkdirs(ctx, ops); err != nil {
		return err
	}
	r := f.r
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The batched links (one command on the host) run while the files
	// without a link are sent; the links left over go one by one after.
	batch := make(chan map[int]bool, 1)
	go func() {
		var batched map[int]bool
		if len(ops) > 0 {
			batched = f.linkBatch(ctx, path.Dir(ops[0].Name), ops)
		}
		batch <- batched
	}()
	links, lctx := errgroup.WithContext(ctx)
	links.SetLimit(r.h.pool.opts.Workers)
	up, uctx := errgroup.WithContext(ctx)
	up.SetLimit(r.h.pool.opts.UploadWorkers)
	start := func(g *errgroup.Group, gctx context.Context, i int, op layout.Op) {
		if gctx.Err() != nil {
			return
		}
		g.Go(func() error {
			if err := f.place(gctx, op, i, done, syncEach); err != nil {
				cancel()
				return err
			}
			return nil
		})
	}
	for i, op := range ops {
		if op.Kind == engine.KindFile && op.Link == "" {
			start(up, uctx, i, op)
		}
	}
	batched := <-batch
	for i := range batched {
		done(i, 0)
	}
	for i, op := range ops {
		if op.Kind == engine.KindFile && op.Link != "" && !batched[i] {
			start(links, lctx, i, op)
		}
	}
	uerr := up.Wait()
	lerr := links.Wait()
	if uerr != nil {
		return uerr
	}
	if lerr != nil {
		return lerr
	}
	return ctx.Err()
}

// place hard-links op.Link to op.Name, or sends op's content when there
// is no link or linking fails (EMLINK, a release pruned meanwhile), and
// reports the file done.
func (f remoteFS) place(ctx context.Context, op layout.Op, i int, done func(int, int64), sync bool) error {
	if op.Link != "" {
		if err := f.r.sftp.Link(op.Link, op.Name); err == nil {
			f.r.kick()
			done(i, 0)
			return nil
		}
	}
	n, err := f.upload(ctx, op, sync)
	if err != nil {
		return err
	}
	done(i, n)
	return nil
}

// upload creates op.Name (which must not exist) from op.Open, sets its
// mode and, with sync, fsyncs it (fsync@openssh.com) before closing. It
// holds one of the pool's upload slots (PoolOptions.MaxUploads) meanwhile.
func (f remoteFS) upload(ctx context.Context, op layout.Op, sync bool) (int64, error) {
	r := f.r
	uploads := r.h.pool.uploads
	select {
	case uploads <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-uploads }()
	src, err := op.Open()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", op.Name, err)
	}
	defer src.Close()
	h, err := r.sftp.OpenFile(op.Name, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", op.Name, err)
	}
	n, err := h.ReadFrom(&kickReader{r: src, size: op.Size, kick: r.kick})
	if err == nil {
		err = h.Chmod(op.Mode)
	}
	if err == nil && sync {
		err = h.Sync()
	}
	if err != nil {
		h.Close()
		return n, fmt.Errorf("upload %s: %w", op.Name, err)
	}
	if err := h.Close(); err != nil {
		return n, fmt.Errorf("upload %s: %w", op.Name, err)
	}
	r.kick()
	return n, nil
}

// kickReader reports progress to the watchdog as data is read for
// sending. Its Size lets pkg/sftp write a file with concurrent requests.
type kickReader struct {
	r    io.Reader
	size int64
	kick func()
}

func (k *kickReader) Read(p []byte) (int, error) {
	n, err := k.r.Read(p)
	k.kick()
	return n, err
}

func (k *kickReader) Size() int64 { return k.size }

// writeTar streams directories, symlinks and files to send as one tar
// archive into `tar -x` on the host, then hard-links unchanged files
// (linkBatch, then SFTP).
func (f remoteFS) writeTar(ctx context.Context, ops []layout.Op, done func(int, int64)) error {
	r := f.r
	if len(ops) == 0 {
		return nil
	}
	// Every op is under one directory, the temporary release.
	root := path.Dir(ops[0].Name)
	for _, op := range ops {
		if !strings.HasPrefix(op.Name, root+"/") {
			return fmt.Errorf("tar transfer: %s is not under %s", op.Name, root)
		}
	}
	sess, err := r.client.NewSession()
	if err != nil {
		return fmt.Errorf("open session: %w", err)
	}
	defer sess.Close()
	var stderr bytes.Buffer
	sess.Stderr = &limitedBuffer{b: &stderr, max: 4096}
	stdin, err := sess.StdinPipe()
	if err != nil {
		return fmt.Errorf("open session: %w", err)
	}
	cmd := "tar --no-same-owner -x -p -f - -C " + Quote(root)
	if err := sess.Start(cmd); err != nil {
		return fmt.Errorf("start %s: %w", cmd, err)
	}
	r.kick()
	// Buffer so that tar's 512-byte headers and small files travel in
	// large SSH packets rather than one packet per write.
	bw := bufio.NewWriterSize(stdin, 256<<10)
	werr := f.tarStream(ctx, bw, root, ops, done)
	if werr == nil {
		werr = bw.Flush()
	}
	cerr := stdin.Close()
	waitErr := sess.Wait()
	if werr != nil {
		return werr
	}
	if waitErr != nil {
		return fmt.Errorf("tar -x on the host: %w: %s", exitError(waitErr), strings.TrimSpace(stderr.String()))
	}
	if cerr != nil {
		return fmt.Errorf("send archive: %w", cerr)
	}
	r.kick()
	batched := f.linkBatch(ctx, root, ops)
	for i := range batched {
		done(i, 0)
	}
	g, _ := errgroup.WithContext(ctx)
	g.SetLimit(r.h.pool.opts.Workers)
	for i, op := range ops {
		if op.Kind == engine.KindFile && op.Link != "" && !batched[i] {
			g.Go(func() error { return f.place(ctx, op, i, done, false) })
		}
	}
	return g.Wait()
}

func (f remoteFS) tarStream(ctx context.Context, w io.Writer, root string, ops []layout.Op, done func(int, int64)) error {
	tw := tar.NewWriter(w)
	now := time.Now()
	hdr := func(op layout.Op, typ byte) *tar.Header {
		return &tar.Header{Name: strings.TrimPrefix(op.Name, root+"/"), Typeflag: typ,
			Mode: int64(engine.UnixMode(op.Mode)), ModTime: now, Format: tar.FormatPAX}
	}
	for i, op := range ops {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		switch op.Kind {
		case engine.KindDir:
			h := hdr(op, tar.TypeDir)
			h.Name += "/"
			err = tw.WriteHeader(h)
		case engine.KindSymlink:
			h := hdr(op, tar.TypeSymlink)
			h.Mode, h.Linkname = 0o777, op.Target
			err = tw.WriteHeader(h)
		case engine.KindFile:
			if op.Link != "" {
				continue // linked over SFTP once the archive is in
			}
			err = f.tarFile(tw, hdr(op, tar.TypeReg), op)
			if err == nil {
				done(i, op.Size)
			}
		}
		if err != nil {
			return fmt.Errorf("send %s: %w", op.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("send archive: %w", err)
	}
	return nil
}

func (f remoteFS) tarFile(tw *tar.Writer, h *tar.Header, op layout.Op) error {
	src, err := op.Open()
	if err != nil {
		return err
	}
	defer src.Close()
	h.Size = op.Size
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	// The checking reader fails at the end when the content is not what
	// the manifest says; the archive is then abandoned.
	_, err = io.Copy(tw, &kickReader{r: src, size: op.Size, kick: f.r.kick})
	return err
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
