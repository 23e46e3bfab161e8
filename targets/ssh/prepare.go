package ssh

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"flightdeck/engine"
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

// readOnly is the mode a release file gets on the host: as built, without
// any write bit, so that a hard-linked file shared by several releases
// cannot be edited in place.
func readOnly(mode uint32) os.FileMode { return os.FileMode(mode).Perm() &^ 0o222 }

// linkKey finds a previous file that can be hard-linked: same content and
// same final mode (a link shares the mode too).
type linkKey struct {
	hash string
	mode os.FileMode
}

// job is one file of the new release.
type job struct {
	e    engine.ManifestEntry
	from string // remote path to hard-link from; "" to send
}

// Prepare makes releases/<a.ID> complete on the host (see engine.Host).
// Unchanged files (same sha256 and mode as in one of the newest complete
// releases) are hard-linked with hardlink@openssh.com; the others are
// sent. Everything is written under releases/.tmp-<id>-<rand> and renamed
// into place with posix-rename@openssh.com when complete; on failure the
// temporary directory is removed when the connection still allows it, and
// Inspect removes it otherwise.
func (h *Host) Prepare(ctx context.Context, a *engine.Artifact, progress func(engine.Progress)) error {
	if err := engine.ValidateReleaseID(a.ID); err != nil {
		return h.errorf("prepare", err)
	}
	m := a.Manifest
	if m == nil {
		var err error
		if m, err = engine.BuildManifest(a.Dir, a.ID); err != nil {
			return h.errorf("prepare "+a.ID, err)
		}
	}
	if err := checkManifestPaths(m); err != nil {
		return h.errorf("prepare "+a.ID, err)
	}
	if progress == nil {
		progress = func(engine.Progress) {}
	}
	return h.run(ctx, "prepare "+a.ID, func(ctx context.Context, r *remote) error {
		return r.prepare(ctx, a, m, progress)
	})
}

func checkManifestPaths(m *engine.Manifest) error {
	for _, e := range m.Entries {
		p := e.Path
		if p == "" || path.IsAbs(p) || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") || p == engine.ManifestName {
			return fmt.Errorf("manifest entry %q is not a clean relative path", p)
		}
	}
	return nil
}

func (r *remote) prepare(ctx context.Context, a *engine.Artifact, m *engine.Manifest, progress func(engine.Progress)) (err error) {
	h := r.h
	final := h.ReleasePath(a.ID)
	if st, err := r.sftp.Lstat(final); err == nil {
		if !st.IsDir() {
			return fmt.Errorf("%s exists and is not a directory", final)
		}
		return nil // already complete: releases are renamed into place only when complete
	} else if !isNotExist(err) {
		return fmt.Errorf("stat %s: %w", final, err)
	}
	r.kick()
	for _, d := range []string{h.releasesDir(), path.Join(h.t.DeployTo, engine.SharedDir)} {
		if err := r.sftp.MkdirAll(d); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
		r.kick()
	}

	prev, err := r.previousFiles(ctx)
	if err != nil {
		return err
	}
	var dirs, links []engine.ManifestEntry
	var jobs []job
	var sendFiles int
	var sendBytes int64
	for _, e := range m.Entries {
		switch e.Kind {
		case engine.KindDir:
			dirs = append(dirs, e)
		case engine.KindSymlink:
			links = append(links, e)
		case engine.KindFile:
			from := prev[linkKey{e.Hash, readOnly(e.Mode)}]
			if from == "" {
				sendFiles++
				sendBytes += e.Size
			}
			jobs = append(jobs, job{e: e, from: from})
		default:
			return fmt.Errorf("manifest entry %s: unknown kind %q", e.Path, e.Kind)
		}
	}

	tmp := path.Join(h.releasesDir(), engine.TempPrefix+a.ID+"-"+engine.RandomSuffix(4))
	if err := r.sftp.Mkdir(tmp); err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	r.kick()
	defer func() {
		if err != nil && !r.closed.Load() && !r.dead() {
			_ = r.removeAll(context.WithoutCancel(ctx), tmp)
		}
	}()

	pr := newProgressor(m, progress)
	mode := h.pool.opts.Transfer
	if mode == TransferAuto {
		mode = TransferSFTP
		if sendFiles >= TarMinFiles && sendBytes/int64(sendFiles) <= TarMaxMeanSize {
			mode = TransferTar
		}
	}
	if mode == TransferTar {
		err = r.sendTar(ctx, a.Dir, tmp, dirs, links, jobs, pr)
	} else {
		err = r.sendSFTP(ctx, a.Dir, tmp, dirs, links, jobs, pr)
	}
	if err != nil {
		return err
	}

	stored := *m
	stored.Release = a.ID
	if stored.Commit == "" {
		stored.Commit = a.Commit
	}
	mb, err := stored.Marshal()
	if err != nil {
		return err
	}
	if err := r.writeFile(path.Join(tmp, engine.ManifestName), bytes.NewReader(mb), 0o444); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	if err := r.sftp.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	r.kick()
	if err := r.sftp.PosixRename(tmp, final); err != nil {
		if _, serr := r.sftp.Lstat(final); serr == nil {
			return r.removeAll(ctx, tmp) // prepared concurrently by someone else
		}
		return fmt.Errorf("rename %s to %s: %w", tmp, final, err)
	}
	r.kick()
	return nil
}

// previousFiles indexes the files of the release current points to and
// of the newest other complete releases by content hash and mode.
func (r *remote) previousFiles(ctx context.Context) (map[linkKey]string, error) {
	cur, err := r.current()
	if err != nil {
		cur = "" // an odd current link must not stop a prepare
	}
	infos, err := r.listReleases()
	if err != nil {
		return nil, err
	}
	ids := []string{}
	if cur != "" {
		ids = append(ids, cur)
	}
	for i := len(infos) - 1; i >= 0 && len(ids) < 3; i-- {
		if infos[i].id != cur {
			ids = append(ids, infos[i].id)
		}
	}
	idx := map[linkKey]string{}
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		pm, err := r.readManifest(id)
		if err != nil {
			continue // a release without a readable manifest cannot be linked from
		}
		for _, e := range pm.Entries {
			if e.Kind != engine.KindFile || checkManifestPaths(&engine.Manifest{Entries: []engine.ManifestEntry{e}}) != nil {
				continue
			}
			k := linkKey{e.Hash, readOnly(e.Mode)}
			if _, ok := idx[k]; !ok {
				idx[k] = path.Join(r.h.ReleasePath(id), e.Path)
			}
		}
	}
	return idx, nil
}

// progressor serialises progress reports.
type progressor struct {
	mu sync.Mutex
	p  engine.Progress
	fn func(engine.Progress)
}

func newProgressor(m *engine.Manifest, fn func(engine.Progress)) *progressor {
	n, b := m.Files()
	pr := &progressor{p: engine.Progress{FilesTotal: n, BytesTotal: b}, fn: fn}
	fn(pr.p)
	return pr
}

func (pr *progressor) file(size int64, sent bool) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.p.FilesDone++
	pr.p.BytesDone += size
	if sent {
		pr.p.BytesSent += size
	}
	pr.fn(pr.p)
}

// dirMode is the on-host mode of a release directory: as built plus the
// owner's rwx (as targets/local does), so that a release can be removed.
func dirMode(mode uint32) os.FileMode { return os.FileMode(mode).Perm() | 0o700 }

// mkdirs creates the release's directories in order (parents first).
func (r *remote) mkdirs(tmp string, dirs []engine.ManifestEntry) error {
	for _, d := range dirs {
		p := path.Join(tmp, d.Path)
		if err := r.sftp.Mkdir(p); err != nil {
			return fmt.Errorf("create directory %s: %w", d.Path, err)
		}
		if err := r.sftp.Chmod(p, dirMode(d.Mode)); err != nil {
			return fmt.Errorf("chmod directory %s: %w", d.Path, err)
		}
		r.kick()
	}
	return nil
}

func (r *remote) symlinks(tmp string, links []engine.ManifestEntry) error {
	for _, l := range links {
		if err := r.sftp.Symlink(l.Link, path.Join(tmp, l.Path)); err != nil {
			return fmt.Errorf("create symlink %s: %w", l.Path, err)
		}
		r.kick()
	}
	return nil
}

// hardlinks links unchanged files from previous releases, concurrently.
func (r *remote) hardlinks(ctx context.Context, tmp string, jobs []job, pr *progressor) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.h.pool.opts.Workers)
	for _, j := range jobs {
		if j.from == "" {
			continue
		}
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if err := r.sftp.Link(j.from, path.Join(tmp, j.e.Path)); err != nil {
				return fmt.Errorf("hard-link %s: %w", j.e.Path, err)
			}
			r.kick()
			pr.file(j.e.Size, false)
			return nil
		})
	}
	return g.Wait()
}

// sendSFTP writes directories, symlinks, links and changed files over SFTP.
func (r *remote) sendSFTP(ctx context.Context, src, tmp string, dirs, links []engine.ManifestEntry, jobs []job, pr *progressor) error {
	if err := r.mkdirs(tmp, dirs); err != nil {
		return err
	}
	if err := r.symlinks(tmp, links); err != nil {
		return err
	}
	// Links and uploads run side by side; the first failure stops both.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	linked := make(chan error, 1)
	go func() {
		err := r.hardlinks(ctx, tmp, jobs, pr)
		if err != nil {
			cancel()
		}
		linked <- err
	}()
	up, uctx := errgroup.WithContext(ctx)
	up.SetLimit(r.h.pool.opts.UploadWorkers)
	for _, j := range jobs {
		if j.from != "" {
			continue
		}
		if uctx.Err() != nil {
			break
		}
		up.Go(func() error {
			f, err := os.Open(filepath.Join(src, filepath.FromSlash(j.e.Path)))
			if err != nil {
				return fmt.Errorf("read %s: %w", j.e.Path, err)
			}
			defer f.Close()
			if err := r.writeFile(path.Join(tmp, j.e.Path), f, readOnly(j.e.Mode)); err != nil {
				return fmt.Errorf("upload %s: %w", j.e.Path, err)
			}
			pr.file(j.e.Size, true)
			return nil
		})
	}
	uerr := up.Wait()
	if uerr != nil {
		cancel()
	}
	lerr := <-linked
	if uerr != nil {
		return uerr
	}
	if lerr != nil {
		return lerr
	}
	return ctx.Err()
}

// writeFile creates p (which must not exist), copies src into it and
// sets mode.
func (r *remote) writeFile(p string, src io.Reader, mode os.FileMode) error {
	f, err := r.sftp.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return err
	}
	if _, err := f.ReadFrom(&kickReader{r: src, kick: r.kick}); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	r.kick()
	return nil
}

// kickReader reports progress to the watchdog as data is read for sending.
type kickReader struct {
	r    io.Reader
	kick func()
}

func (k *kickReader) Read(p []byte) (int, error) {
	n, err := k.r.Read(p)
	k.kick()
	return n, err
}

// sendTar streams directories, symlinks and changed files as one tar
// archive into `tar -x` on the host, then hard-links unchanged files over
// SFTP.
func (r *remote) sendTar(ctx context.Context, src, tmp string, dirs, links []engine.ManifestEntry, jobs []job, pr *progressor) error {
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
	cmd := "tar --no-same-owner -x -p -f - -C " + Quote(tmp)
	if err := sess.Start(cmd); err != nil {
		return fmt.Errorf("start %s: %w", cmd, err)
	}
	r.kick()
	// Buffer so that tar's 512-byte headers and small files travel in
	// large SSH packets rather than one packet per write.
	bw := bufio.NewWriterSize(stdin, 256<<10)
	werr := r.writeTar(ctx, bw, src, dirs, links, jobs, pr)
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
	return r.hardlinks(ctx, tmp, jobs, pr)
}

func (r *remote) writeTar(ctx context.Context, w io.Writer, src string, dirs, links []engine.ManifestEntry, jobs []job, pr *progressor) error {
	tw := tar.NewWriter(w)
	now := time.Now()
	hdr := func(name string, typ byte, mode int64, size int64, link string) *tar.Header {
		return &tar.Header{Name: name, Typeflag: typ, Mode: mode, Size: size, Linkname: link,
			ModTime: now, Format: tar.FormatPAX}
	}
	for _, d := range dirs {
		if err := tw.WriteHeader(hdr(d.Path+"/", tar.TypeDir, int64(dirMode(d.Mode)), 0, "")); err != nil {
			return fmt.Errorf("send archive: %w", err)
		}
	}
	for _, l := range links {
		if err := tw.WriteHeader(hdr(l.Path, tar.TypeSymlink, 0o777, 0, l.Link)); err != nil {
			return fmt.Errorf("send archive: %w", err)
		}
	}
	// Files in path order keep the archive deterministic.
	send := make([]job, 0, len(jobs))
	for _, j := range jobs {
		if j.from == "" {
			send = append(send, j)
		}
	}
	sort.Slice(send, func(a, b int) bool { return send[a].e.Path < send[b].e.Path })
	for _, j := range send {
		if err := ctx.Err(); err != nil {
			return err
		}
		f, err := os.Open(filepath.Join(src, filepath.FromSlash(j.e.Path)))
		if err != nil {
			return fmt.Errorf("read %s: %w", j.e.Path, err)
		}
		st, err := f.Stat()
		if err == nil && st.Size() != j.e.Size {
			err = fmt.Errorf("size is %d, the manifest says %d: the artifact changed after it was built", st.Size(), j.e.Size)
		}
		if err == nil {
			err = tw.WriteHeader(hdr(j.e.Path, tar.TypeReg, int64(readOnly(j.e.Mode)), j.e.Size, ""))
		}
		if err == nil {
			_, err = io.Copy(tw, &kickReader{r: f, kick: r.kick})
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("send %s: %w", j.e.Path, err)
		}
		pr.file(j.e.Size, true)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("send archive: %w", err)
	}
	return nil
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
