package layout

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"

	"golang.org/x/sync/errgroup"

	"flightdeck/engine"
)

// revisionRe matches a commit id in Capistrano's REVISION file.
var revisionRe = regexp.MustCompile(`^[0-9a-f]{7,64}$`)

// Adopt makes a release prepared by another tool (Capistrano) a release of
// flightdeck's: it lists releases/<id> without following any symlink,
// removes the write bits of its regular files (release files are read-only:
// that is what makes them safe to hard-link and to verify), hashes every
// file on the host, checks that nothing changed meanwhile, and writes the
// manifest (under a temporary name, renamed into place). A release that has
// a manifest already is left alone. Files other than regular files,
// directories and symlinks (sockets, devices) make the release unadoptable.
func (l *Layout) Adopt(ctx context.Context, fsys FS, id string) (engine.AdoptResult, error) {
	a, err := l.adopt(ctx, fsys, id)
	if err != nil {
		return a, fmt.Errorf("adopt %s release %s: %w", l.name, id, err)
	}
	return a, nil
}

func (l *Layout) adopt(ctx context.Context, fsys FS, id string) (engine.AdoptResult, error) {
	var out engine.AdoptResult
	if err := engine.ValidateReleaseID(id); err != nil {
		return out, err
	}
	if _, err := expect(ctx, fsys, l.releasesDir(), "directory"); err != nil {
		return out, err
	}
	root := l.ReleasePath(id)
	if exists, err := expect(ctx, fsys, root, "directory"); err != nil {
		return out, err
	} else if !exists {
		return out, fmt.Errorf("release %s is not on the host", id)
	}
	if _, err := fsys.Lstat(ctx, path.Join(root, engine.ManifestName)); err == nil {
		out.Already = true
		return out, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return out, err
	}
	if err := removeManifestLeftovers(ctx, fsys, root); err != nil {
		return out, err
	}
	entries, err := walk(ctx, fsys, root)
	if err != nil {
		return out, err
	}
	m := &engine.Manifest{Release: id, Entries: entries}
	var names []string
	var files []int
	for i, e := range m.Entries {
		if e.Kind != engine.KindFile {
			continue
		}
		full := path.Join(root, e.Path)
		if GoMode(e.Mode)&0o222 != 0 {
			if err := fsys.Chmod(ctx, full, FileMode(e)); err != nil {
				return out, fmt.Errorf("make %s read-only: %w", e.Path, err)
			}
			out.MadeReadOnly++
		}
		names = append(names, full)
		files = append(files, i)
		out.Files++
		out.Bytes += e.Size
	}
	if len(names) > 0 {
		sums, err := fsys.Hash(ctx, names)
		if err != nil {
			return out, err
		}
		for j, i := range files {
			m.Entries[i].Hash = sums[j]
		}
	}
	if err := CheckManifest(m); err != nil {
		return out, err
	}
	// Sizes and modes as hashed: a file written meanwhile is caught here.
	if err := checkTree(ctx, fsys, root, m); err != nil {
		return out, fmt.Errorf("the release changed while it was adopted: %w", err)
	}
	if b, err := fsys.ReadFile(ctx, path.Join(root, "REVISION"), 128); err == nil {
		if rev := strings.TrimSpace(string(b)); revisionRe.MatchString(rev) {
			m.Commit, out.Commit = rev, rev
		}
	}
	mb, err := m.Marshal()
	if err != nil {
		return out, err
	}
	tmp := path.Join(root, engine.ManifestName+engine.TempPrefix+engine.RandomSuffix(6))
	op := Op{Kind: engine.KindFile, Name: tmp, Mode: 0o444, Size: int64(len(mb)), Open: bytesSource(mb)}
	if err := fsys.Write(ctx, []Op{op}, nil); err != nil {
		_ = fsys.RemoveAll(context.WithoutCancel(ctx), tmp)
		return out, fmt.Errorf("write manifest: %w", err)
	}
	if err := fsys.Rename(ctx, tmp, path.Join(root, engine.ManifestName)); err != nil {
		_ = fsys.RemoveAll(context.WithoutCancel(ctx), tmp)
		return out, fmt.Errorf("write manifest: %w", err)
	}
	if err := fsys.SyncDir(ctx, root); err != nil {
		return out, err
	}
	return out, nil
}

// removeManifestLeftovers removes manifests an interrupted Adopt was
// writing under a temporary name.
func removeManifestLeftovers(ctx context.Context, fsys FS, root string) error {
	ents, err := fsys.ReadDir(ctx, root)
	if err != nil {
		return err
	}
	for _, fi := range ents {
		if strings.HasPrefix(fi.Name(), engine.ManifestName+engine.TempPrefix) {
			if err := fsys.RemoveAll(ctx, path.Join(root, fi.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// walk lists the tree under root, level by level, following no symlink,
// as manifest entries (files without their hash yet), sorted by path.
func walk(ctx context.Context, fsys FS, root string) ([]engine.ManifestEntry, error) {
	var entries []engine.ManifestEntry
	level := []string{"."}
	for len(level) > 0 {
		lists, err := listLevel(ctx, fsys, root, level)
		if err != nil {
			return nil, err
		}
		var next []string
		var links []int
		for i, d := range level {
			for _, fi := range lists[i] {
				p := path.Join(d, fi.Name())
				mode := fi.Mode()
				e := engine.ManifestEntry{Path: p, Mode: engine.UnixMode(mode)}
				switch {
				case mode.IsDir():
					e.Kind = engine.KindDir
					next = append(next, p)
				case mode&fs.ModeSymlink != 0:
					e.Kind = engine.KindSymlink
					e.Mode = 0o777
					links = append(links, len(entries))
				case mode.IsRegular():
					e.Kind = engine.KindFile
					e.Size = fi.Size()
				default:
					return nil, fmt.Errorf("%s: unsupported file type %s", p, mode.Type())
				}
				entries = append(entries, e)
			}
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(listParallel)
		for _, i := range links {
			g.Go(func() error {
				t, err := fsys.ReadLink(gctx, path.Join(root, entries[i].Path))
				if err != nil {
					return fmt.Errorf("%s: %w", entries[i].Path, err)
				}
				entries[i].Link = t
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
		level = next
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Path < entries[j].Path })
	return entries, nil
}
