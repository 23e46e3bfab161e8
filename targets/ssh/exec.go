package ssh

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/sync/errgroup"

	"flightdeck/engine"
	"flightdeck/targets/layout"
)

// Exec runs req.Command on the host with `sh -c`, in req.Dir (default
// RELEASE_PATH from req.Env, else deploy_to), with req.Env set.
//
// The variables are requested with the SSH "env" request, but sshd only
// honours names listed in its AcceptEnv, so the command line also carries
// them: cd 'DIR' && env 'K=V'... sh -c 'COMMAND', every word quoted with
// Quote. Output (stdout and stderr) streams to req.Output. On timeout
// (req.Timeout, else command_timeout) or cancellation the command gets
// SIGTERM and the session is closed. Exec is not retried once the command
// has started: a command that may have run is never run twice.
func (h *Host) Exec(ctx context.Context, req engine.ExecRequest) error {
	keys := make([]string, 0, len(req.Env))
	for k := range req.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	prefix, err := envPrefix(keys, req.Env)
	if err != nil {
		return h.errorf("exec", err)
	}
	dir := req.Dir
	if dir == "" {
		dir = req.Env["RELEASE_PATH"]
	}
	if dir == "" {
		dir = h.t.DeployTo
	}
	cmd := "cd " + Quote(dir) + " && "
	if prefix != "" {
		cmd += prefix + " "
	}
	cmd += "sh -c " + Quote(req.Command)
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = h.timeout()
	}
	out := req.Output
	if out == nil {
		out = io.Discard
	}
	out = &syncWriter{w: out}

	var sess *gossh.Session
	for attempt := 0; ; attempt++ {
		l, err := h.conn.get(ctx)
		if err != nil {
			return h.errorf("exec", err)
		}
		sess, err = l.client.NewSession()
		if err == nil {
			break
		}
		if attempt > 0 || !l.lost() {
			return h.errorf("exec", fmt.Errorf("open session: %w", err))
		}
		h.conn.drop(l)
	}
	defer sess.Close()
	for _, k := range keys {
		_ = sess.Setenv(k, req.Env[k]) // refused unless in AcceptEnv; the env prefix covers it
	}
	sess.Stdout = out
	sess.Stderr = out
	if err := sess.Start(cmd); err != nil {
		return h.errorf("exec", fmt.Errorf("start command: %w", err))
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil {
			return h.errorf("exec", fmt.Errorf("%q: %w", req.Command, exitError(err)))
		}
		return nil
	case <-timer.C:
		stopSession(sess, done)
		return h.errorf("exec", fmt.Errorf("%q: timed out after %s", req.Command, timeout))
	case <-ctx.Done():
		stopSession(sess, done)
		return h.errorf("exec", fmt.Errorf("%q: %w", req.Command, ctx.Err()))
	}
}

// stopSession asks the command to stop and closes its channel.
func stopSession(sess *gossh.Session, done <-chan error) {
	_ = sess.Signal(gossh.SIGTERM)
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
	sess.Close()
}

// output runs cmd (already quoted) in a session and returns its stdout.
func (r *remote) output(cmd string) ([]byte, error) { return r.outputWith(cmd, nil) }

// outputWith runs cmd with stdin (when not nil) and returns its stdout.
// Without stdin it runs in one of the connection's command shells (see
// shell.go) when one is free, else in a session of its own. A shell that
// had served earlier commands and turns out to be gone (killed on the
// host, say) is replaced, and the command is run once more in a session
// of its own: every command flightdeck runs for itself may run twice.
func (r *remote) outputWith(cmd string, stdin io.Reader) ([]byte, error) {
	if stdin == nil {
		if sh, err := r.shells.get(r.client, r.viaKeeper); err == nil {
			reused := sh.started
			out, err, broken := sh.run(cmd)
			r.shells.put(sh, broken)
			r.shells.runs.Add(1)
			if !broken || !reused || r.dead() {
				if err == nil {
					r.kick()
				}
				return out, err
			}
		}
	}
	sess, err := r.client.NewSession()
	if err != nil {
		return nil, fmt.Errorf("open session: %w", err)
	}
	defer sess.Close()
	sess.Stdin = stdin
	var stdout bytes.Buffer
	var stderr bytes.Buffer
	sess.Stdout = &stdout
	sess.Stderr = &limitedBuffer{b: &stderr, max: 4096}
	if err := sess.Run(cmd); err != nil {
		return stdout.Bytes(), fmt.Errorf("%w: %s", exitError(err), strings.TrimSpace(stderr.String()))
	}
	r.kick()
	return stdout.Bytes(), nil
}

// maxCommand bounds the length of one sha256sum command line.
const maxCommand = 64 << 10

// Hash reads up to sftpHashFiles files of at most sftpHashSize bytes each
// over SFTP and hashes them here, rather than starting a command on the
// host: a command costs the host a session and two processes (measured
// at ~35 ms of its CPU for openssl on one small file, against ~1 ms for
// reading 40 KB over SFTP), which is what a one-file release's checks
// need.
const (
	sftpHashFiles = 32
	sftpHashSize  = 256 << 10
)

// Hash reads a few small files (sftpHashFiles, sftpHashSize) over SFTP
// and hashes them here; it hashes the others on the host with
// `openssl dgst -sha256 -r -- NAME...`
// (several times faster than coreutils' sha256sum where the CPU has SHA
// instructions), or `sha256sum -- NAME...` where openssl is missing or a
// batch has a name with a newline or backslash (openssl does not escape
// them), in batches of at most 64 KiB of command line, at most 4 sessions
// at once (sshd's default MaxSessions is 10). Every name is quoted with
// Quote; names with a newline or backslash are read back from sha256sum's
// escaped form.
func (f remoteFS) Hash(ctx context.Context, names []string) ([]string, error) {
	sums := map[string]string{}
	if len(names) <= sftpHashFiles {
		here, err := f.hashHere(ctx, names)
		if err != nil {
			return nil, err
		}
		sums = here
	}
	var batches [][]string
	var cur []string
	size := 0
	for _, n := range names {
		if _, ok := sums[n]; ok {
			continue
		}
		q := len(Quote(n)) + 1
		if len(cur) > 0 && size+q > maxCommand {
			batches = append(batches, cur)
			cur, size = nil, 0
		}
		cur = append(cur, n)
		size += q
	}
	if len(cur) > 0 {
		batches = append(batches, cur)
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, b := range batches {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			got, err := f.hashBatch(b)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			for k, v := range got {
				sums[k] = v
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := make([]string, len(names))
	for i, n := range names {
		h, ok := sums[n]
		if !ok {
			return nil, fmt.Errorf("%s: sha256sum printed no hash", n)
		}
		out[i] = h
	}
	return out, nil
}

// hashHere hashes, by name, those of names that are regular files of at
// most sftpHashSize bytes, read over SFTP; the others are left out (for a
// command on the host, which reports a missing or odd file).
func (f remoteFS) hashHere(ctx context.Context, names []string) (map[string]string, error) {
	sums := make([]string, len(names))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(f.r.h.pool.opts.Workers)
	for i, n := range names {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			file, err := f.r.sftp.Open(n)
			if err != nil {
				return nil
			}
			defer file.Close()
			fi, err := file.Stat()
			if err != nil || !fi.Mode().IsRegular() || fi.Size() > sftpHashSize {
				return nil
			}
			h := sha256.New()
			// One read past the size seen: a file that grew meanwhile
			// is left to the host's command.
			n, err := io.Copy(h, io.LimitReader(file, fi.Size()+1))
			if err != nil || n != fi.Size() {
				return nil
			}
			f.r.kick()
			sums[i] = hex.EncodeToString(h.Sum(nil))
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(names))
	for i, n := range names {
		if sums[i] != "" {
			out[n] = sums[i]
		}
	}
	return out, nil
}

// hashBatch hashes names with openssl when it can, else with sha256sum.
func (f remoteFS) hashBatch(names []string) (map[string]string, error) {
	h := f.r.h
	var plain, odd []string
	for _, n := range names {
		if strings.ContainsAny(n, "\n\\") {
			odd = append(odd, n)
		} else {
			plain = append(plain, n)
		}
	}
	sums := map[string]string{}
	if len(plain) > 0 && !h.noOpenSSL.Load() {
		out, err := f.r.output("openssl dgst -sha256 -r -- " + QuoteArgs(plain...))
		if err == nil {
			if got, perr := parseOpenSSLDigest(out); perr == nil {
				sums, plain = got, nil
			}
		}
		// No openssl (or one that prints something else): sha256sum
		// from now on for this host. A file that cannot be read fails
		// below with sha256sum's message.
		if plain != nil && (err == nil || strings.Contains(err.Error(), "status 127")) {
			h.noOpenSSL.Store(true)
		}
	}
	if rest := append(plain, odd...); len(rest) > 0 {
		out, err := f.r.output("sha256sum -- " + QuoteArgs(rest...))
		if err != nil {
			return nil, fmt.Errorf("sha256sum: %w", err)
		}
		got, err := parseSHA256Sum(out)
		if err != nil {
			return nil, err
		}
		maps.Copy(sums, got)
	}
	return sums, nil
}

// Stamps describes the regular files under root: ListTree's listing
// without the other entries. A host without GNU find fails here, and the
// layout hashes its releases in full.
func (f remoteFS) Stamps(ctx context.Context, root string, within time.Duration) (map[string]layout.Stamp, map[string]bool, error) {
	tree, err := f.ListTree(ctx, root, within)
	if err != nil {
		return nil, nil, fmt.Errorf("stamps of %s: %w", root, err)
	}
	stamps, recent := layout.TreeStamps(tree)
	return stamps, recent, nil
}

// ListTree describes everything below root with one GNU find on the host
// (see layout.TreeLister): per entry, R or S as in Stamps, then its type,
// permission bits, size, device, inode and modification time, then its
// symlink target and its path, each NUL-terminated. A host without GNU
// find fails here, and the layout lists directory by directory.
func (f remoteFS) ListTree(ctx context.Context, root string, within time.Duration) (*layout.Tree, error) {
	// find's relative dates take fractions of a second.
	secs := strconv.FormatFloat(within.Seconds(), 'f', -1, 64)
	out, err := f.r.output(fmt.Sprintf(`find -P %s -mindepth 1 \( -newermt '-%s seconds' -printf 'R ' -o -printf 'S ' \) -printf '%%y %%m %%s %%D %%i %%T@\0%%l\0%%P\0'`,
		Quote(root), secs))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", root, err)
	}
	return parseTree(out)
}

// ListTreeSummed lists root as ListTree does, without the stamps, with
// the SHA-256 of root/name, in one command (see layout.SummedTreeLister
// and summedListing): find printing each entry's type, permission bits
// and size, its symlink target and its path, each record NUL-terminated,
// then sha256sum unless the digest is known. A missing or unreadable
// root/name is no digest (summed false), not an error.
func (f remoteFS) ListTreeSummed(ctx context.Context, root, name string) (*layout.Tree, [32]byte, bool, error) {
	return f.summedListing(root, path.Join(root, name), root+"/"+name, func(stamp string) string {
		return fmt.Sprintf(`find -P %s -mindepth 1 %s -printf %s`, Quote(root), stamp, briefRecord)
	})
}

// briefRecord is find's -printf format of a brief listing (see
// parseTreeBrief), quoted for the shell.
const briefRecord = `'%y %m %s\0%l\0%P\0'`

// ListDeployTo lists what layout.Layout.Survey reads with one command
// (see layout.DeployLister and summedListing): one find from root/. (root
// may be a symlink: the plan names it) that lists each entry as
// ListTreeSummed does and descends only into releases/ and
// releases/<release>, then the SHA-256 of the release's manifest.
func (f remoteFS) ListDeployTo(ctx context.Context, root, release string) (*layout.Tree, [32]byte, bool, error) {
	start := root + "/."
	rels := start + "/" + engine.ReleasesDir
	descend := "-path " + Quote(findPattern(rels))
	rel := rels + "/" + release
	if release != "" {
		descend += " -o -path " + Quote(findPattern(rel)) + " -o -path " + Quote(findPattern(rel)+"/*")
	}
	find := func(stamp string) string {
		return fmt.Sprintf(`find -P %s -mindepth 1 %s \( %s \) -printf %s -o -printf %s -prune`,
			Quote(start), stamp, descend, briefRecord, briefRecord)
	}
	if release == "" {
		out, err := f.r.output(find(""))
		if err != nil {
			return nil, [32]byte{}, false, fmt.Errorf("list %s: %w", root, err)
		}
		tree, err := parseTreeBrief(out)
		return tree, [32]byte{}, false, err
	}
	return f.summedListing(root, path.Join(root, engine.ReleasesDir, release, engine.ManifestName), rel+"/"+engine.ManifestName, find)
}

// findPattern is name as a pattern of find's -path that matches it alone.
func findPattern(name string) string {
	var b strings.Builder
	for _, c := range name {
		if strings.ContainsRune(`\*?[`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// summedListing lists with one command: the find that find builds around
// stampClause (which prints the identity of file, named listed by find,
// before its record), then sha256sum of file unless the pool knows the
// digest of the file so identified (manifestSums). The digest is given
// from the record when the file is listed with the identity recorded;
// else it is hashed (and recorded unless just changed) or, when the file
// changed since it was recorded, not given (summed false: the layout
// reads and checks the manifest itself).
func (f remoteFS) summedListing(root, file, listed string, find func(stamp string) string) (*layout.Tree, [32]byte, bool, error) {
	sums := f.r.h.pool.sums
	key := sumKey{target: f.r.h.t.Key(), path: file}
	knownStamp, knownSum, known := sums.lookup(key)
	cmd := find(stampClause(listed))
	if !known {
		cmd += "; sha256sum 2>/dev/null <" + Quote(file)
	}
	out, err := f.r.output(cmd)
	if err != nil {
		return nil, [32]byte{}, false, fmt.Errorf("list %s: %w", root, err)
	}
	l, err := parseSummed(out)
	if err != nil {
		return nil, [32]byte{}, false, err
	}
	switch {
	case known && l.stamped && l.stamp != "" && l.stamp == knownStamp:
		sums.hits.Add(1)
		return l.tree, knownSum, true, nil
	case known:
		sums.forget(key)
		return l.tree, [32]byte{}, false, nil
	case l.summed && l.stamped && l.stamp != "":
		sums.record(key, l.stamp, l.sum)
	}
	return l.tree, l.sum, l.summed, nil
}

// stampClause is a find expression, always true, that prints the
// identity of the entry at listed (a path as find names it) in a field of
// its own before the entry's record: '=' and its device, inode, size and
// ctime, or '=' alone when its ctime is within the racy margin of the
// listing (a write in the same clock tick would leave it unchanged). The
// name is tested first: it costs the other entries less than the path.
// Only a regular file is identified: a symlink's own identity says
// nothing of what sha256sum reads through it.
func stampClause(listed string) string {
	return `\( -name ` + Quote(findPattern(path.Base(listed))) + ` -path ` + Quote(findPattern(listed)) + ` -type f \( -newerct '-0.1 seconds' -printf '=\0' -o -printf '=%D %i %s %C@\0' \) -o -true \)`
}

// summedOutput is a summed listing as parseSummed reads it.
type summedOutput struct {
	tree *layout.Tree
	// stamp is the identity stampClause printed (stamped: it printed
	// one; "" when the file changed within the racy margin).
	stamp   string
	stamped bool
	// sum is sha256sum's digest (summed: it printed one).
	sum    [32]byte
	summed bool
}

// parseSummed reads the output of a summed listing: a brief listing
// (parseTreeBrief) with at most one identity field of stampClause where a
// record starts, then the output of sha256sum of stdin ("<64 hex digits>
// -\n"; absent when sha256sum did not run or could not read the file).
func parseSummed(out []byte) (summedOutput, error) {
	var l summedOutput
	records, tail := []byte(nil), out
	if i := bytes.LastIndexByte(out, 0); i >= 0 {
		records, tail = out[:i+1], out[i+1:]
	}
	if len(tail) > 0 {
		line, ok := bytes.CutSuffix(tail, []byte("  -\n"))
		if _, err := hex.Decode(l.sum[:], line); !ok || err != nil || len(line) != hex.EncodedLen(len(l.sum)) {
			return l, fmt.Errorf("list: unexpected output after the listing: %q", tail)
		}
		l.summed = true
	}
	l.stamp, l.stamped, records = cutStamp(records)
	tree, err := parseTreeBrief(records)
	if err != nil {
		return l, err
	}
	l.tree = tree
	return l, nil
}

// cutStamp takes the identity field of stampClause out of a brief
// listing: a field that starts with '=' where a record starts (a record's
// first field is its type, never '='; its link and path may start so).
func cutStamp(records []byte) (stamp string, found bool, rest []byte) {
	field := func(i int) int { // the end of the field at i, its NUL included
		j := bytes.IndexByte(records[i:], 0)
		if j < 0 {
			return len(records)
		}
		return i + j + 1
	}
	for i := 0; i < len(records); {
		if records[i] == '=' {
			end := field(i)
			stamp = string(bytes.TrimSuffix(records[i+1:end], []byte{0}))
			return stamp, true, append(records[:i:i], records[end:]...)
		}
		for range 3 {
			if i < len(records) {
				i = field(i)
			}
		}
	}
	return "", false, records
}

// TreeListingCheap reports whether a command shell is at hand: one
// running on the connection, or the keeper's (it keeps a warm one per
// host once a process is done with it). One find then costs the host a
// fork and the find, against a session and the login shell's start when
// none is running (more than listing a 500-file release over SFTP). Over
// SFTP a listing is ~21 round trips for a 500-file release, and OpenSSH's
// server formats an ls -l line per entry; the find's one stream costs the
// host, the keeper's relay and this process about half as much (a cold
// rollback of 500 hosts through the keeper: 6.7-7.8 s -> 3.7-4.5 s).
func (f remoteFS) TreeListingCheap() bool { return f.r.shells.warm() || f.r.viaKeeper }

// parseTree reads the output of ListTree's command. Nothing of out is
// kept: the tree copies the paths and link targets, into one string (a
// tree of a few thousand entries is read by every host of a fleet at
// once). A path listed twice is an error (find lists each entry once).
func parseTree(out []byte) (*layout.Tree, error) { return parseTreeAs(out, false) }

// parseTreeBrief reads the output of ListTreeSummed's find: per entry
// only its type, permission bits and size before its link and path.
func parseTreeBrief(out []byte) (*layout.Tree, error) { return parseTreeAs(out, true) }

// parseTreeAs reads a listing with the stamps (R or S, type, permission
// bits, size, device, inode, modification time) or, brief, with the type,
// permission bits and size only.
func parseTreeAs(out []byte, brief bool) (*layout.Tree, error) {
	var tb layout.TreeBuilder
	tb.Grow(treeSize(out))
	rest := out
	field := func() ([]byte, bool) {
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			return nil, false
		}
		f := rest[:i]
		rest = rest[i+1:]
		return f, true
	}
	for len(rest) > 0 {
		head, ok1 := field()
		link, ok2 := field()
		name, ok3 := field()
		if !ok1 || !ok2 || !ok3 {
			return nil, fmt.Errorf("list: a record of %q is not complete", head)
		}
		// Split by hand: a slice per entry is most of what a listing
		// allocates. A brief record has no R or S (S is implied) and ends
		// after the size.
		var f [7][]byte
		n, end := 0, len(f)
		if brief {
			f[0], n, end = []byte{'S'}, 1, 4
		}
		h := head
		for ; n < end; n++ {
			var ok bool
			if f[n], h, ok = bytes.Cut(h, []byte{' '}); !ok {
				n++
				break
			}
		}
		if n != end || len(h) != 0 || len(f[0]) != 1 || (f[0][0] != 'R' && f[0][0] != 'S') || len(f[1]) != 1 || len(name) == 0 {
			return nil, fmt.Errorf("list: unexpected record %q %q", head, name)
		}
		// The numbers are converted to strings that do not escape (no
		// copy on the heap).
		e := layout.TreeEntry{Recent: f[0][0] == 'R'}
		var perm uint64
		var errs [6]error
		perm, errs[0] = strconv.ParseUint(string(f[2]), 8, 32)
		e.Stamp.Size, errs[1] = strconv.ParseInt(string(f[3]), 10, 64)
		if !brief {
			e.Stamp.Dev, errs[2] = strconv.ParseUint(string(f[4]), 10, 64)
			e.Stamp.Ino, errs[3] = strconv.ParseUint(string(f[5]), 10, 64)
			e.Stamp.MTime, errs[4] = parseNanos(f[6])
		}
		if perm > 0o7777 {
			errs[5] = fmt.Errorf("mode %o", perm)
		}
		if err := errors.Join(errs[:]...); err != nil {
			return nil, fmt.Errorf("list: record %q: %w", head, err)
		}
		e.Stamp.Perm = uint32(perm)
		switch f[1][0] {
		case 'f':
		case 'd':
			e.Type = fs.ModeDir
		case 'l':
			e.Type = fs.ModeSymlink
			e.Link = string(link)
		case 'p':
			e.Type = fs.ModeNamedPipe
		case 's':
			e.Type = fs.ModeSocket
		case 'c':
			e.Type = fs.ModeDevice | fs.ModeCharDevice
		case 'b':
			e.Type = fs.ModeDevice
		default:
			e.Type = fs.ModeIrregular
		}
		if err := tb.Add(name, e); err != nil {
			return nil, fmt.Errorf("list: %w", err)
		}
	}
	tree, err := tb.Tree()
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	return tree, nil
}

// treeSize counts the records of ListTree's output and the bytes of their
// link targets and paths, so that a TreeBuilder grows once.
func treeSize(out []byte) (records, size int) {
	for k := 0; ; k++ {
		i := bytes.IndexByte(out, 0)
		if i < 0 {
			return records, size
		}
		if k%3 == 0 {
			records++
		} else {
			size += i
		}
		out = out[i+1:]
	}
}

// parseNanos reads SECONDS.FRACTION (as find's %T@ prints it) as
// nanoseconds since the epoch; the fraction must have at least nine
// digits, so that no nanoseconds are guessed.
func parseNanos(s []byte) (int64, error) {
	sec, frac, ok := bytes.Cut(s, []byte{'.'})
	if !ok || len(frac) < 9 || len(bytes.Trim(frac, "0123456789")) != 0 {
		return 0, fmt.Errorf("%q: want seconds and nanoseconds", s)
	}
	n, err := strconv.ParseInt(string(sec), 10, 64)
	if err != nil {
		return 0, err
	}
	ns, err := strconv.ParseInt(string(frac[:9]), 10, 64)
	if err != nil {
		return 0, err
	}
	return n*1e9 + ns, nil
}

// parseOpenSSLDigest reads `openssl dgst -r` output: "HASH *NAME" per line.
func parseOpenSSLDigest(out []byte) (map[string]string, error) {
	sums := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		h, name, ok := strings.Cut(line, " *")
		if !ok || len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
			return nil, fmt.Errorf("openssl dgst: unexpected line %q", line)
		}
		sums[name] = h
	}
	return sums, nil
}

// parseSHA256Sum reads sha256sum output: "HASH  NAME" per line, or
// "\HASH  NAME" with NAME escaped (\\ and \n) when it holds a backslash or
// newline.
func parseSHA256Sum(out []byte) (map[string]string, error) {
	got := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		escaped := strings.HasPrefix(line, `\`)
		if escaped {
			line = line[1:]
		}
		hash, name, ok := strings.Cut(line, "  ")
		if !ok {
			hash, name, ok = strings.Cut(line, " *")
		}
		if !ok || len(hash) != 64 || strings.Trim(hash, "0123456789abcdef") != "" {
			return nil, fmt.Errorf("sha256sum: unexpected line %q", line)
		}
		if escaped {
			var b strings.Builder
			for i := 0; i < len(name); i++ {
				if name[i] == '\\' && i+1 < len(name) {
					i++
					switch name[i] {
					case 'n':
						b.WriteByte('\n')
					case 'r':
						b.WriteByte('\r')
					default:
						b.WriteByte(name[i])
					}
					continue
				}
				b.WriteByte(name[i])
			}
			name = b.String()
		}
		got[name] = hash
	}
	if err := sc.Err(); err != nil {
		return nil, errors.New("sha256sum: " + err.Error())
	}
	return got, nil
}
