package engine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"flightdeck/internal/atomicfile"
)

// A gitCache keeps a plan's git source between builds, under the build
// cache directory (BuildOptions.CacheDir), one entry per repository:
//
//	<entry>/git      a bare clone, fetched before each build
//	<entry>/tree     the work tree of the last build (no .git inside)
//	<entry>/sha256   the SHA-256 of checked-out files by git blob
//	<entry>/lock     flock(2)ed while a build uses the entry
//
// A build then fetches what is new, lets git rewrite only the files that
// changed (checkout -f and clean put back anything edited in the tree),
// and hashes only files whose blob it has not seen: git already names the
// content of every unchanged file. The entry stays locked until the
// build's cleanup, so that the tree does not change under a deploy that
// reads it.
type gitCache struct {
	dir, gitDir, tree string
	lock              *os.File
	// hashes maps blobKey to the SHA-256 of the checked-out file.
	hashes map[string]string
	added  bool
}

// errCacheBusy: another build holds the entry; the caller builds without it.
var errCacheBusy = errors.New("build cache entry in use")

// openGitCache locks the entry of repo under root (errCacheBusy when
// another process holds it) and brings its clone up to date.
func openGitCache(ctx context.Context, root, repo string, out io.Writer) (_ *gitCache, err error) {
	sum := sha256.Sum256([]byte(repo))
	dir := filepath.Join(root, "git-"+hex.EncodeToString(sum[:8]))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("build cache: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("build cache: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errCacheBusy
		}
		return nil, fmt.Errorf("build cache: lock: %w", err)
	}
	c := &gitCache{dir: dir, gitDir: filepath.Join(dir, "git"), tree: filepath.Join(dir, "tree"), lock: f, hashes: map[string]string{}}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	if _, err := os.Stat(filepath.Join(c.gitDir, "HEAD")); err != nil {
		// First build of this repository (or a clone that never finished).
		removeAll(c.gitDir)
		removeAll(c.tree)
		os.Remove(filepath.Join(dir, "sha256"))
		if err := runBuild(ctx, dir, out, "git clone", "git", "clone", "--quiet", "--bare", "--no-hardlinks", "--", repo, c.gitDir); err != nil {
			return nil, err
		}
	} else if err := c.git(ctx, out, "git fetch", "fetch", "--quiet", "--prune", "--force", "--", repo,
		"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.tree, 0o755); err != nil {
		return nil, fmt.Errorf("build cache: %w", err)
	}
	c.loadHashes()
	return c, nil
}

// git runs git on the entry's clone and work tree.
func (c *gitCache) git(ctx context.Context, out io.Writer, step string, args ...string) error {
	return runBuild(ctx, c.dir, out, step, "git", append([]string{"--git-dir=" + c.gitDir, "--work-tree=" + c.tree, "-c", "core.bare=false"}, args...)...)
}

// checkout puts the commit ref names into the tree and returns its id.
func (c *gitCache) checkout(ctx context.Context, ref string, out io.Writer) (string, error) {
	if ref == "" {
		ref = "HEAD"
	}
	var sha bytes.Buffer
	err := c.git(ctx, &sha, "git rev-parse "+ref, "rev-parse", "--verify", "--quiet", "--end-of-options", ref+"^{commit}")
	if err != nil && strings.HasPrefix(ref, "origin/") {
		// A clone's remote-tracking name: the branch of the same name here.
		sha.Reset()
		err = c.git(ctx, &sha, "git rev-parse "+ref, "rev-parse", "--verify", "--quiet", "--end-of-options", "refs/heads/"+strings.TrimPrefix(ref, "origin/")+"^{commit}")
	}
	if err != nil {
		return "", err
	}
	commit := strings.TrimSpace(sha.String())
	if err := c.git(ctx, out, "git checkout "+ref, "-c", "advice.detachedHead=false", "checkout", "--quiet", "--force", "--detach", commit); err != nil {
		return "", err
	}
	if err := c.git(ctx, out, "git clean", "clean", "-ffdqx"); err != nil {
		return "", err
	}
	return commit, nil
}

// blobs lists the regular files of commit by path: the key of their blob.
func (c *gitCache) blobs(ctx context.Context, commit string) (map[string]string, error) {
	var list bytes.Buffer
	if err := c.git(ctx, &list, "git ls-tree", "ls-tree", "-r", "-z", "--full-tree", commit); err != nil {
		return nil, err
	}
	type entry struct{ mode, blob, path string }
	var ents []entry
	var attrs []string
	for _, rec := range bytes.Split(list.Bytes(), []byte{0}) {
		meta, p, ok := strings.Cut(string(rec), "\t")
		f := strings.Fields(meta)
		if !ok || len(f) != 3 || f[1] != "blob" {
			continue
		}
		ents = append(ents, entry{f[0], f[2], p})
		if filepath.Base(p) == ".gitattributes" {
			attrs = append(attrs, f[2]+" "+p)
		}
	}
	// What a checked-out file holds depends on the blob and, through
	// attributes (line endings, filters), on its path and the tree's
	// .gitattributes: all are in the key.
	sum := sha256.Sum256([]byte(strings.Join(attrs, "\n")))
	attrKey := hex.EncodeToString(sum[:8])
	out := make(map[string]string, len(ents))
	for _, e := range ents {
		if e.mode == "100644" || e.mode == "100755" {
			out[e.path] = e.blob + " " + attrKey + " " + strconv.Quote(e.path)
		}
	}
	return out, nil
}

// manifest builds the manifest of the tree's folder sub ("" for all of
// it), hashing only the files whose blob
// key (and size) it has not seen.
func (c *gitCache) manifest(ctx context.Context, commit, release, sub string) (*Manifest, error) {
	blobs, err := c.blobs(ctx, commit)
	if err != nil {
		return nil, err
	}
	return buildManifest(filepath.Join(c.tree, filepath.FromSlash(sub)), release, func(rel, p string, size int64) (string, error) {
		key, ok := blobs[path.Join(sub, rel)]
		if !ok {
			return HashFile(p)
		}
		key += " " + strconv.FormatInt(size, 10)
		if h, ok := c.hashes[key]; ok {
			return h, nil
		}
		h, err := HashFile(p)
		if err == nil {
			c.hashes[key], c.added = h, true
		}
		return h, err
	})
}

func (c *gitCache) loadHashes() {
	b, err := os.ReadFile(filepath.Join(c.dir, "sha256"))
	if err != nil {
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec [2]string
		if json.Unmarshal(sc.Bytes(), &rec) == nil && len(rec[1]) == sha256.Size*2 {
			c.hashes[rec[0]] = rec[1]
		}
	}
}

// saveHashes rewrites the hash file atomically: a torn file would only
// cost hashing again, but a wrong hash must never be read.
func (c *gitCache) saveHashes() error {
	if !c.added {
		return nil
	}
	var b bytes.Buffer
	for k, h := range c.hashes {
		line, _ := json.Marshal([2]string{k, h})
		b.Write(line)
		b.WriteByte('\n')
	}
	return atomicfile.Write(filepath.Join(c.dir, "sha256"), b.Bytes(), 0o600)
}

// close unlocks the entry.
func (c *gitCache) close() {
	if c.lock != nil {
		c.lock.Close() // releases the flock
		c.lock = nil
	}
}
