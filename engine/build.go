package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"flightdeck/engine/plan"
	"flightdeck/internal/fsutil"
)

// BuildError is a failed build: nothing was touched on any host.
type BuildError struct {
	Step   string
	Err    error
	Output string
}

func (e *BuildError) Error() string {
	msg := fmt.Sprintf("build step %q failed: %v", e.Step, e.Err)
	if e.Output != "" {
		msg += "\n" + indent(lastLines(e.Output, 20))
	}
	return msg
}

func (e *BuildError) Unwrap() error { return e.Err }

// BuildOptions tune BuildWith.
type BuildOptions struct {
	// CacheDir, when set, keeps a git source without build steps between
	// builds (a bare clone, the last work tree and the SHA-256 of every
	// blob seen; see gitCache), so that a build fetches and rewrites only
	// what changed and hashes only new content. A build that finds the
	// cache in use by another process builds without it.
	CacheDir string
}

// Build makes the release artifact from the plan's source, once, on this
// machine, never on a host. A plain directory source with no build steps is
// used as it is; otherwise the source is copied (or cloned, for git) into a
// temporary workspace where the build commands run, and build_output names
// the folder that becomes the release. cleanup removes the workspace.
func Build(ctx context.Context, p *plan.Plan, id string, out io.Writer) (a *Artifact, cleanup func(), err error) {
	return BuildWith(ctx, p, id, out, BuildOptions{})
}

// BuildWith is Build with options. A release with no files is refused
// unless the plan allows it (allow_empty): it is a source gone wrong.
func BuildWith(ctx context.Context, p *plan.Plan, id string, out io.Writer, opts BuildOptions) (*Artifact, func(), error) {
	a, cleanup, err := buildWith(ctx, p, id, out, opts)
	if err == nil && !p.AllowEmpty {
		if !slices.ContainsFunc(a.Manifest.Entries, func(e ManifestEntry) bool { return e.Kind != KindDir }) {
			return nil, cleanup, &BuildError{Step: "source", Err: fmt.Errorf("release %s would hold no files (from %s); if that is intended, set allow_empty: true in the plan", id, a.Dir)}
		}
	}
	return a, cleanup, err
}

func buildWith(ctx context.Context, p *plan.Plan, id string, out io.Writer, opts BuildOptions) (a *Artifact, cleanup func(), err error) {
	cleanup = func() {}
	if err := ValidateReleaseID(id); err != nil {
		return nil, cleanup, err
	}
	if out == nil {
		out = io.Discard
	}
	out = bestEffort{out}
	src := p.Source
	if src == nil {
		return nil, cleanup, errors.New("plan has no source")
	}
	a = &Artifact{ID: id}
	if src.Git != nil && len(p.Build) == 0 && opts.CacheDir != "" {
		a, cleanup, err := buildCached(ctx, p, id, out, opts.CacheDir)
		if !errors.Is(err, errCacheBusy) {
			return a, cleanup, err
		}
	}
	needWorkspace := src.Git != nil || len(p.Build) > 0
	if !needWorkspace {
		dir, err := sourceRoot(p)
		if err != nil {
			return nil, cleanup, err
		}
		a.Dir = dir
	} else {
		ws, err := os.MkdirTemp("", "flightdeck-build-")
		if err != nil {
			return nil, cleanup, fmt.Errorf("create build workspace: %w", err)
		}
		cleanup = func() { removeAll(ws) }
		work := filepath.Join(ws, "src")
		if src.Git != nil {
			repo := src.Git.Repo
			if local := resolve(p.Dir, repo); dirExists(local) {
				repo = local
			}
			if err := runBuild(ctx, ws, out, "git clone", "git", "clone", "--quiet", "--no-hardlinks", "--", repo, work); err != nil {
				return nil, cleanup, err
			}
			if ref := src.Git.Ref; ref != "" {
				if err := runBuild(ctx, work, out, "git checkout "+ref, "git", "-c", "advice.detachedHead=false", "checkout", "--quiet", ref, "--"); err != nil {
					return nil, cleanup, err
				}
			}
			var sha bytes.Buffer
			if err := runBuild(ctx, work, &sha, "git rev-parse", "git", "rev-parse", "HEAD"); err != nil {
				return nil, cleanup, err
			}
			a.Commit = strings.TrimSpace(sha.String())
			if err := os.RemoveAll(filepath.Join(work, ".git")); err != nil {
				return nil, cleanup, fmt.Errorf("remove .git from workspace: %w", err)
			}
		} else {
			dir, err := sourceRoot(p)
			if err != nil {
				return nil, cleanup, err
			}
			if err := copyTree(dir, work); err != nil {
				return nil, cleanup, fmt.Errorf("copy source into workspace: %w", err)
			}
		}
		for _, step := range p.Build {
			if err := runBuild(ctx, work, out, step, "/bin/sh", "-c", step); err != nil {
				return nil, cleanup, err
			}
		}
		a.Dir = work
		if p.BuildOutput != "" {
			a.Dir = filepath.Join(work, filepath.FromSlash(p.BuildOutput))
			if !dirExists(a.Dir) {
				return nil, cleanup, &BuildError{Step: "build_output", Err: fmt.Errorf("%s was not produced by the build", p.BuildOutput)}
			}
			// The release is what build_output holds, resolved; a link
			// out of the workspace would release another tree.
			real, err := filepath.EvalSymlinks(a.Dir)
			if err != nil {
				return nil, cleanup, &BuildError{Step: "build_output", Err: err}
			}
			realWork, _ := filepath.EvalSymlinks(work)
			if rel, err := filepath.Rel(realWork, real); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
				return nil, cleanup, &BuildError{Step: "build_output", Err: fmt.Errorf("%s leads out of the build workspace (to %s)", p.BuildOutput, real)}
			}
			a.Dir = real
		}
	}
	m, err := BuildManifest(a.Dir, id)
	if err != nil {
		return nil, cleanup, err
	}
	m.Commit = a.Commit
	a.Manifest = m
	return a, cleanup, nil
}

// buildCached builds a git source without build steps from the cache.
func buildCached(ctx context.Context, p *plan.Plan, id string, out io.Writer, cacheDir string) (*Artifact, func(), error) {
	repo := p.Source.Git.Repo
	if local := resolve(p.Dir, repo); dirExists(local) {
		repo = local
	}
	c, err := openGitCache(ctx, cacheDir, repo, out)
	if err != nil {
		return nil, func() {}, err
	}
	commit, err := c.checkout(ctx, p.Source.Git.Ref, out)
	if err != nil {
		c.close()
		return nil, func() {}, err
	}
	a := &Artifact{ID: id, Commit: commit, Dir: c.tree}
	if p.BuildOutput != "" {
		a.Dir = filepath.Join(c.tree, filepath.FromSlash(p.BuildOutput))
		if !dirExists(a.Dir) {
			c.close()
			return nil, func() {}, &BuildError{Step: "build_output", Err: fmt.Errorf("%s is not in the repository", p.BuildOutput)}
		}
	}
	m, err := c.manifest(ctx, commit, id, p.BuildOutput)
	if err != nil {
		c.close()
		return nil, func() {}, err
	}
	_ = c.saveHashes() // a hash not saved is only hashed again next time
	m.Commit = commit
	a.Manifest = m
	return a, c.close, nil
}

func runBuild(ctx context.Context, dir string, out io.Writer, step string, name string, args ...string) error {
	var buf bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stdout = io.MultiWriter(out, &buf)
	cmd.Stderr = io.MultiWriter(out, &buf)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	if err := cmd.Run(); err != nil {
		return &BuildError{Step: step, Err: err, Output: buf.String()}
	}
	return nil
}

// sourceRoot is the plan's source directory with symlinks resolved: a
// source that is a link (build -> dist) releases its target's contents.
func sourceRoot(p *plan.Plan) (string, error) {
	dir := resolve(p.Dir, p.Source.Dir)
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("source %s: %w", dir, err)
	}
	if !dirExists(real) {
		return "", fmt.Errorf("source %s: not a directory", dir)
	}
	return real, nil
}

// bestEffort is output for people: a write that fails (its reader went
// away) is dropped and never fails the build.
type bestEffort struct{ w io.Writer }

func (b bestEffort) Write(p []byte) (int, error) {
	_, _ = b.w.Write(p)
	return len(p), nil
}

func resolve(base, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(base, p)
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// copyTree copies a directory tree (files, dirs, symlinks) to dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		// Modes are set exactly (the umask does not apply), special bits
		// included: a sticky tmp/ or a setgid directory keeps its bits.
		mode := info.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		switch {
		case d.IsDir():
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
			return os.Chmod(target, mode|0o700)
		case info.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		case info.Mode().IsRegular():
			if err := fsutil.CopyFile(p, target, 0o600); err != nil {
				return err
			}
			return os.Chmod(target, mode|0o200)
		}
		return nil
	})
}

// removeAll removes a tree even where files or dirs were made read-only.
func removeAll(p string) {
	_ = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(q, 0o755)
		}
		return nil
	})
	_ = os.RemoveAll(p)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }
