// Package layout owns flightdeck's on-host release layout and its rules,
// written once for every kind of host over a small file-system interface
// (FS):
//
//	<deploy_to>/releases/<id>/   immutable once prepared, read-only files
//	<deploy_to>/shared/          linked files and dirs
//	<deploy_to>/current          -> releases/<id>, switched by rename(2)
//	<deploy_to>/revisions.log    one line per switch or rollback
//
// The rules:
//
//   - A directory named releases/<id> is always complete: a release is
//     written under releases/.tmp-<id>-<rand>, checked against its manifest
//     (every entry present with its kind, size and mode), made durable, and
//     only then renamed into place without replacing anything.
//   - Release files are read-only (the built mode minus every write bit),
//     because unchanged files are hard links shared with older releases;
//     a file is linked only from a release's file that still has the
//     manifest's size and read-only mode. Directories keep their built mode
//     (setuid, setgid and sticky bits included) plus owner rwx.
//   - current is only ever replaced by renaming a fresh current.tmp-<rand>
//     link over it, and only to a release checked complete.
//   - revisions.log gets one line per switch, fsynced, everywhere.
//   - Prune never removes current nor a protected release (the rollback
//     target); a pruned release is first renamed to a temporary name.
//   - Reading (Inspect, Check) never changes anything; Verify writes only
//     its record of the files it found intact (releases/.verified, see
//     Layout.Verify); only Clean removes leftovers of interrupted work, and
//     it must run under the engine's lock.
//   - releases/, shared/, revisions.log and everything under them are
//     untrusted: a symlink where a directory or file is expected is refused
//     with a SymlinkError naming it, never followed.
package layout

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"flightdeck/engine"
)

// maxManifest bounds the size of a stored manifest that is read back.
const maxManifest = 256 << 20

// Layout applies the release layout to one host's deploy_to. The FS is
// passed to every method, so that a host kind can bind it to a connection
// per operation. A Layout is safe for concurrent use.
type Layout struct {
	name      string
	root      string
	now       func() time.Time
	bases     int
	manifests *Manifests
	// fullVerify: Verify hashes every file (Options.FullVerify).
	fullVerify bool

	mu sync.Mutex
	// checked is the release this layout last found complete, and when
	// (see checkedManifest); checking holds the checks in progress.
	checked  checkedRelease
	checking map[string]*checkFlight
}

// checkedRelease is a release found complete: every entry of its
// manifest m present with its kind, size and read-only mode.
type checkedRelease struct {
	id string
	m  *engine.Manifest
	at time.Time
}

// checkFlight is a check of a release in progress: done is closed when it
// ends, m is then its manifest if the release was found complete.
type checkFlight struct {
	done chan struct{}
	m    *engine.Manifest
}

// checkedFor is how long a release found complete by this layout is taken
// as still complete by Prepare when it links files from it: the listings
// of the rollback-path verification that runs beside a deploy's prepare
// are not read a second time. A file changed meanwhile is caught all the
// same: one that vanished is sent instead of linked, and one whose mode or
// size changed fails the check of the written release, which is then
// written again with every base listed.
const checkedFor = 5 * time.Second

// startCheck records that a check of release id begins, so that a
// prepare that needs it waits for it (checkedManifest); the returned
// function ends it with the manifest when the release was found complete
// (nil otherwise). A check of id already in progress is the one waited for.
func (l *Layout) startCheck(id string) func(m *engine.Manifest) {
	l.mu.Lock()
	if l.checking == nil {
		l.checking = map[string]*checkFlight{}
	}
	if _, busy := l.checking[id]; !busy {
		l.checking[id] = &checkFlight{done: make(chan struct{})}
	}
	l.mu.Unlock()
	return func(m *engine.Manifest) { l.noteChecked(id, m) }
}

// noteChecked records what a check of release id found: complete, with
// manifest m, or incomplete (m nil); a prepare waiting for a check of id
// gets the answer at once.
func (l *Layout) noteChecked(id string, m *engine.Manifest) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case m != nil:
		l.checked = checkedRelease{id: id, m: m, at: time.Now()}
	case l.checked.id == id:
		l.checked = checkedRelease{} // found incomplete since
	}
	if f := l.checking[id]; f != nil {
		f.m = m
		delete(l.checking, id)
		close(f.done)
	}
}

// forgetChecked drops the record of the release found complete.
func (l *Layout) forgetChecked() {
	l.mu.Lock()
	l.checked = checkedRelease{}
	l.mu.Unlock()
}

// checkedManifest returns the manifest of release id when this layout
// found it complete less than checkedFor ago, or when a check of it in
// progress (the rollback-path verification running beside a deploy's
// prepare) finds it complete; else nil.
func (l *Layout) checkedManifest(ctx context.Context, id string) *engine.Manifest {
	l.mu.Lock()
	if l.checked.id == id && time.Since(l.checked.at) < checkedFor {
		m := l.checked.m
		l.mu.Unlock()
		return m
	}
	f := l.checking[id]
	l.mu.Unlock()
	if f == nil {
		return nil
	}
	select {
	case <-f.done:
		return f.m
	case <-ctx.Done():
		return nil
	}
}

// Options configure a Layout. Zero values mean the defaults.
type Options struct {
	// Now is the clock for revisions.log lines (default time.Now).
	Now func() time.Time
	// LinkBases is how many complete releases besides current Prepare
	// may read manifests from to find files it can hard-link (default 2,
	// the newest by name; a manifest larger than the files it could spare
	// sending is not read); negative means none.
	LinkBases int
	// Manifests, when not nil, is shared by the layouts of a fleet so that
	// a manifest read from many hosts is parsed once.
	Manifests *Manifests
	// FullVerify makes Verify hash every file of the release, instead of
	// only those whose stamp changed since the host's last verification
	// (see Layout.Verify).
	FullVerify bool
}

// New returns the layout of the host name whose deploy_to is the absolute
// slash-separated path deployTo.
func New(name, deployTo string, opts Options) *Layout {
	l := &Layout{name: name, root: path.Clean(deployTo), now: opts.Now, bases: opts.LinkBases, manifests: opts.Manifests,
		fullVerify: opts.FullVerify}
	if l.now == nil {
		l.now = time.Now
	}
	switch {
	case l.bases == 0:
		l.bases = 2
	case l.bases < 0:
		l.bases = 0
	}
	return l
}

// Name is the host's display name.
func (l *Layout) Name() string { return l.name }

// DeployTo is the deploy_to directory.
func (l *Layout) DeployTo() string { return l.root }

// ReleasePath is the path of releases/<id>.
func (l *Layout) ReleasePath(id string) string { return path.Join(l.root, engine.ReleasesDir, id) }

func (l *Layout) releasesDir() string { return path.Join(l.root, engine.ReleasesDir) }

// SymlinkError reports a symlink found where the layout expects a
// directory or a regular file: flightdeck never follows it (it could lead
// a prune or a write outside deploy_to).
type SymlinkError struct {
	Path string
	Want string // "directory" or "file"
}

func (e *SymlinkError) Error() string {
	return fmt.Sprintf("%s is a symbolic link where a %s is expected; refusing to follow it (remove it and check who made it)", e.Path, e.Want)
}

// KindError reports an entry of the wrong kind where the layout expects a
// directory or a regular file.
type KindError struct {
	Path string
	Want string
	Got  fs.FileMode
}

func (e *KindError) Error() string {
	return fmt.Sprintf("%s is %s where a %s is expected", e.Path, kindName(e.Got), e.Want)
}

func kindName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m.IsRegular():
		return "a regular file"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "a " + m.Type().String() + " file"
}

// expect checks that name is missing (exists false) or of the wanted kind
// ("directory" or "file"), never a symlink.
func expect(ctx context.Context, fsys FS, name, want string) (exists bool, err error) {
	fi, err := fsys.Lstat(ctx, name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, expectInfo(name, fi, want)
}

func expectInfo(name string, fi fs.FileInfo, want string) error {
	m := fi.Mode()
	switch {
	case m&fs.ModeSymlink != 0:
		return &SymlinkError{Path: name, Want: want}
	case want == "directory" && !m.IsDir(), want == "file" && !m.IsRegular():
		return &KindError{Path: name, Want: want, Got: m}
	}
	return nil
}

// Status is what Inspect reports, with the entries it saw.
//
// Inspect reports the release current points to and the releases present
// (every directory under releases/ named like a release id, so releases
// made by Capistrano are listed too), sorted by name: release ids default
// to UTC timestamps, which sort oldest first; rollback always names an
// explicit id. It changes nothing: a missing deploy_to is an empty status,
// leftovers of interrupted work are left for Clean. Current is reported as
// the link says, even when that release is missing.
func (l *Layout) Inspect(ctx context.Context, fsys FS) (engine.HostStatus, error) {
	var st engine.HostStatus
	if err := ctx.Err(); err != nil {
		return st, err
	}
	// deploy_to, current and releases/ are read at once (deploy_to is
	// trusted; the other two are its entries): one round trip over SFTP
	// before releases/ is listed, instead of one per step.
	var rootErr, curErr, relsErr error
	var cur string
	var rels []string
	together(fsys,
		func() { _, rootErr = fsys.Lstat(ctx, l.root) },
		func() { cur, curErr = l.current(ctx, fsys) },
		func() { rels, relsErr = l.releases(ctx, fsys) },
	)
	if errors.Is(rootErr, fs.ErrNotExist) {
		return st, nil
	}
	if err := cmp.Or(rootErr, curErr, relsErr); err != nil {
		return st, fmt.Errorf("inspect %s: %w", l.name, err)
	}
	st.Current, st.Releases = cur, rels
	return st, nil
}

// together runs fns and returns when all have: steps that do not depend
// on one another. Over an FS that pipelines (a remote host, where each
// request costs a round trip) they run at once, so that they are all in
// flight in one round trip; over another (system calls here) one after
// another, which costs less than starting goroutines. Each fn must only
// read, or use names whose components were checked before (no
// speculative step goes through a symlink).
func together(fsys FS, fns ...func()) {
	if p, ok := fsys.(Pipeliner); !ok || !p.Pipelined() {
		for _, f := range fns {
			f()
		}
		return
	}
	var wg sync.WaitGroup
	wg.Add(len(fns) - 1)
	for _, f := range fns[1:] {
		go func() {
			defer wg.Done()
			f()
		}()
	}
	fns[0]()
	wg.Wait()
}

// current returns the release id the current link names, "" when there is
// no current link.
func (l *Layout) current(ctx context.Context, fsys FS) (string, error) {
	link := path.Join(l.root, engine.CurrentLink)
	// readlink never follows the link; its answer counts only when lstat
	// says current is one.
	var fi fs.FileInfo
	var target string
	var err, linkErr error
	together(fsys,
		func() { fi, err = fsys.Lstat(ctx, link) },
		func() { target, linkErr = fsys.ReadLink(ctx, link) },
	)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", engine.CurrentLink, err)
	}
	return l.currentOf(fi, target, linkErr)
}

// currentOf is current from the link's lstat, fi, and what readlink
// answered for it.
func (l *Layout) currentOf(fi fs.FileInfo, target string, linkErr error) (string, error) {
	link := path.Join(l.root, engine.CurrentLink)
	if fi.Mode()&fs.ModeSymlink == 0 {
		return "", fmt.Errorf("%s is not a symlink", link)
	}
	if err := linkErr; err != nil {
		return "", fmt.Errorf("read %s: %w", engine.CurrentLink, err)
	}
	abs := target
	if !path.IsAbs(abs) {
		abs = path.Join(l.root, abs)
	}
	abs = path.Clean(abs)
	dir, id := path.Split(abs)
	if path.Clean(dir) != l.releasesDir() {
		return "", fmt.Errorf("%s points outside %s: %s", engine.CurrentLink, l.releasesDir(), target)
	}
	if err := engine.ValidateReleaseID(id); err != nil {
		return "", fmt.Errorf("%s points at %s: %w", engine.CurrentLink, target, err)
	}
	return id, nil
}

// releases lists the release directories by name. releases/ itself must
// be a directory (or missing), never a symlink.
func (l *Layout) releases(ctx context.Context, fsys FS) ([]string, error) {
	ents, err := l.listReleasesDir(ctx, fsys)
	if err != nil {
		return nil, err
	}
	return releaseIDs(ents), nil
}

// releaseIDs are the release directories of a listing of releases/, by
// name.
func releaseIDs(ents []fs.FileInfo) []string {
	var ids []string
	for _, e := range ents {
		if e.IsDir() && engine.ValidateReleaseID(e.Name()) == nil {
			ids = append(ids, e.Name())
		}
	}
	slices.Sort(ids)
	return ids
}

func (l *Layout) listReleasesDir(ctx context.Context, fsys FS) ([]fs.FileInfo, error) {
	exists, err := expect(ctx, fsys, l.releasesDir(), "directory")
	if err != nil || !exists {
		return nil, err
	}
	ents, err := fsys.ReadDir(ctx, l.releasesDir())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", engine.ReleasesDir, err)
	}
	return ents, nil
}

// Clean removes leftovers of interrupted work, so that they can never
// become current: releases/.tmp-* (half-prepared or half-pruned releases)
// and current.tmp-* or .tmp-* links in deploy_to. It must only be called by
// the holder of the engine's lock: another process's Prepare writes under
// such a name. A missing deploy_to is fine.
func (l *Layout) Clean(ctx context.Context, fsys FS) error {
	if err := l.clean(ctx, fsys); err != nil {
		return fmt.Errorf("clean %s: %w", l.name, err)
	}
	return nil
}

func (l *Layout) clean(ctx context.Context, fsys FS) error {
	v, err := l.surveyRead(ctx, fsys, "")
	if err != nil || v.missing {
		return err
	}
	return l.cleanListed(ctx, fsys, v)
}

// cleanListed removes the leftovers that v lists; those under releases/
// go even when deploy_to's listing failed (then its error).
func (l *Layout) cleanListed(ctx context.Context, fsys FS, v surveyed) error {
	if err := l.removeLeftovers(ctx, fsys, v.releases, v.top); err != nil {
		return err
	}
	if v.topErr != nil {
		return fmt.Errorf("list %s: %w", l.root, v.topErr)
	}
	return nil
}

// removeLeftovers removes, of the listings of releases/ (ents) and of
// deploy_to (top), releases/.tmp-* and the current.tmp-* and .tmp-* links.
func (l *Layout) removeLeftovers(ctx context.Context, fsys FS, ents, top []fs.FileInfo) error {
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), engine.TempPrefix) {
			continue
		}
		if err := fsys.RemoveAll(ctx, path.Join(l.releasesDir(), e.Name())); err != nil {
			return fmt.Errorf("remove leftover %s: %w", e.Name(), err)
		}
	}
	for _, e := range top {
		n := e.Name()
		if e.Mode()&fs.ModeSymlink == 0 {
			continue
		}
		if strings.HasPrefix(n, engine.CurrentLink+engine.TempPrefix) || strings.HasPrefix(n, engine.TempPrefix) {
			if err := fsys.RemoveAll(ctx, path.Join(l.root, n)); err != nil {
				return fmt.Errorf("remove leftover link %s: %w", n, err)
			}
		}
	}
	return nil
}

// Survey does what Clean, Inspect and, with a target, Check do before a
// run, from one listing of deploy_to and one of releases/ (each of the
// three listed them on its own: over SSH, at 500 hosts, seven requests
// per host that a rollback then waited for), or, when fsys can and it is
// cheap, from one ListDeployTo. Like Clean it must only be called by the
// holder of the engine's lock. check is Check's answer for
// releases/<target>, given when the host has the target and current is
// not it (nil otherwise: nothing was checked).
func (l *Layout) Survey(ctx context.Context, fsys FS, target string) (st engine.HostStatus, check error, err error) {
	if target != "" {
		if err := engine.ValidateReleaseID(target); err != nil {
			return st, nil, fmt.Errorf("inspect %s: %w", l.name, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return st, nil, err
	}
	v, err := l.surveyRead(ctx, fsys, target)
	if err != nil {
		return st, nil, fmt.Errorf("inspect %s: %w", l.name, err)
	}
	if v.missing {
		return st, nil, nil
	}
	if err := l.cleanListed(ctx, fsys, v); err != nil {
		return st, nil, fmt.Errorf("clean %s: %w", l.name, err)
	}
	for _, e := range v.top {
		if e.Name() == engine.CurrentLink {
			if st.Current, err = l.currentOf(e, v.link, v.linkErr); err != nil {
				return engine.HostStatus{}, nil, fmt.Errorf("inspect %s: %w", l.name, err)
			}
		}
	}
	st.Releases = releaseIDs(v.releases)
	if target == "" || target == st.Current || !slices.Contains(st.Releases, target) {
		return st, nil, nil
	}
	// releases/ and releases/<target> were seen to be directories (the
	// listings lstat their entries).
	end := l.startCheck(target)
	var m *engine.Manifest
	if v.tree != nil {
		m = l.manifestListed(ctx, fsys, target, v.tree.Sub(path.Join(engine.ReleasesDir, target)), v.sum, v.summed)
	}
	if m == nil {
		// Not listed, or not found complete from the listing: checked the
		// careful way, for Check's own answer.
		m, check = l.checkRelease(ctx, fsys, target)
		if check != nil {
			check = fmt.Errorf("check %s release %s: %w", l.name, target, check)
		}
	}
	end(m)
	return st, check, nil
}

// surveyed is what Survey reads: deploy_to's entries (top, or the error
// listing them), current's link target (or readlink's error) and the
// entries of releases/, each as lstat describes it; missing when deploy_to
// is; with tree, the ListDeployTo they came from.
type surveyed struct {
	missing       bool
	top, releases []fs.FileInfo
	topErr        error
	link          string
	linkErr       error
	tree          *Tree
	sum           [32]byte
	summed        bool
}

// surveyRead reads what Survey (and Clean) need: with one ListDeployTo when fsys can
// and it is cheap, else with lstat, readdir and readlink as Clean and
// Inspect do (also when the listing fails, e.g. a missing deploy_to).
func (l *Layout) surveyRead(ctx context.Context, fsys FS, target string) (surveyed, error) {
	if dl, ok := fsys.(DeployLister); ok && dl.TreeListingCheap() {
		if tree, sum, summed, err := dl.ListDeployTo(ctx, l.root, target); err == nil {
			v := surveyed{tree: tree, sum: sum, summed: summed}
			for p, e := range tree.All() {
				switch dir, _ := path.Split(p); dir {
				case "":
					v.top = append(v.top, treeInfo{p, e})
					if p == engine.CurrentLink {
						v.link = e.Link
					}
				case engine.ReleasesDir + "/":
					v.releases = append(v.releases, treeInfo{p, e})
				}
			}
			if e, listed := tree.Lookup(engine.ReleasesDir); listed {
				if err := expectInfo(l.releasesDir(), treeInfo{engine.ReleasesDir, e}, "directory"); err != nil {
					return v, err
				}
			}
			return v, nil
		}
	}
	// deploy_to's lstat and listing, releases/'s lstat and current's
	// readlink at once (one round trip over SFTP): "/." lists deploy_to
	// itself even when it is a symlink (trusted: the plan names it); only
	// what is under it is untrusted, so releases/ is listed only once its
	// lstat is seen. The listing's entry for current is its lstat.
	var v surveyed
	var rootErr, relsErr error
	var rels bool
	together(fsys,
		func() { _, rootErr = fsys.Lstat(ctx, l.root) },
		func() { rels, relsErr = expect(ctx, fsys, l.releasesDir(), "directory") },
		func() { v.top, v.topErr = fsys.ReadDir(ctx, l.root+"/.") },
		func() { v.link, v.linkErr = fsys.ReadLink(ctx, path.Join(l.root, engine.CurrentLink)) },
	)
	if errors.Is(rootErr, fs.ErrNotExist) {
		return surveyed{missing: true}, nil
	}
	if err := cmp.Or(rootErr, relsErr); err != nil {
		return v, err
	}
	if rels {
		var err error
		if v.releases, err = fsys.ReadDir(ctx, l.releasesDir()); err != nil {
			return v, fmt.Errorf("list %s: %w", engine.ReleasesDir, err)
		}
	}
	return v, nil
}

// manifestListed returns the manifest of releases/<id> when a listing of
// the release, rel, and the digest of its manifest show it complete
// (Check's rules), else nil. The manifest is read from this host only when
// no other host of the fleet read the same bytes (Options.Manifests).
func (l *Layout) manifestListed(ctx context.Context, fsys FS, id string, rel *Tree, sum [32]byte, summed bool) *engine.Manifest {
	// The digest is of what a read would open: a regular file, listed.
	if e, listed := rel.Lookup(engine.ManifestName); !summed || l.manifests == nil || !listed || e.Type != 0 {
		return nil
	}
	m, err := l.manifests.bySum(ctx, sum, func() ([]byte, error) {
		return fsys.ReadFile(ctx, path.Join(l.ReleasePath(id), engine.ManifestName), maxManifest)
	})
	if err != nil || m.Release != id || checkTreeEntries(m, rel) != nil {
		return nil
	}
	return m
}

// Switch points current at releases/<info.Release>: the release must be a
// directory that is complete (Check; skipped when info.Checked says the
// caller checked it just before); then current.tmp-<rand> -> releases/<id> (relative, like
// Capistrano) is created and renamed over current, deploy_to is fsynced,
// and a line is appended to revisions.log and fsynced. An empty
// info.Previous is filled from the link being replaced.
func (l *Layout) Switch(ctx context.Context, fsys FS, info engine.SwitchInfo) error {
	if err := l.doSwitch(ctx, fsys, info); err != nil {
		return fmt.Errorf("switch %s to %s: %w", l.name, info.Release, err)
	}
	return nil
}

func (l *Layout) doSwitch(ctx context.Context, fsys FS, info engine.SwitchInfo) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := engine.ValidateReleaseID(info.Release); err != nil {
		return err
	}
	// What the switch reads first, at once (one round trip over SFTP):
	// releases/ and the release, revisions.log (refused before current
	// changes when it is not a file) and current when the caller did not
	// say what it was. The release's answer counts only once releases/ is
	// seen to be a directory (through a symlink it would name another).
	var relsErr, relErr, logErr, prevErr error
	var rels bool
	together(fsys,
		func() { rels, relsErr = expect(ctx, fsys, l.releasesDir(), "directory") },
		func() { relErr = l.expectRelease(ctx, fsys, info.Release) },
		func() { _, logErr = expect(ctx, fsys, path.Join(l.root, engine.RevisionsLog), "file") },
		func() {
			if info.Previous == "" {
				info.Previous, prevErr = l.current(ctx, fsys)
			}
		},
	)
	if relsErr != nil {
		return relsErr
	}
	if !rels {
		return fmt.Errorf("release %s is not on the host", info.Release)
	}
	if relErr != nil {
		return relErr
	}
	if !info.Checked {
		if _, err := l.checkRelease(ctx, fsys, info.Release); err != nil {
			return fmt.Errorf("release is not complete: %w", err)
		}
	}
	if err := cmp.Or(prevErr, logErr); err != nil {
		return err
	}
	tmp := path.Join(l.root, engine.CurrentLink+engine.TempPrefix+engine.RandomSuffix(8))
	if err := fsys.Symlink(ctx, engine.ReleasesDir+"/"+info.Release, tmp); err != nil {
		return fmt.Errorf("create link: %w", err)
	}
	if err := fsys.Replace(ctx, tmp, path.Join(l.root, engine.CurrentLink)); err != nil {
		_ = fsys.RemoveAll(context.WithoutCancel(ctx), tmp)
		return fmt.Errorf("rename link over %s: %w", engine.CurrentLink, err)
	}
	if err := fsys.SyncDir(ctx, l.root); err != nil {
		return err
	}
	line := engine.RevisionLine(l.now(), info) + "\n"
	if err := fsys.Append(ctx, path.Join(l.root, engine.RevisionsLog), []byte(line)); err != nil {
		return fmt.Errorf("current now points at %s but %s was not written: %w", info.Release, engine.RevisionsLog, err)
	}
	return nil
}

// Prune removes the oldest releases (by name) so that the newest keep
// remain; the release current points to and those in protect are never
// removed (they are kept in addition). Each removed release is first
// renamed to releases/.tmp-<id>-<rand>, so that a crash mid-removal leaves
// a leftover Clean deletes, never a half-deleted directory that looks like
// a release. It returns the removed ids, oldest first.
func (l *Layout) Prune(ctx context.Context, fsys FS, keep int, protect []string) ([]string, error) {
	removed, err := l.prune(ctx, fsys, keep, protect)
	if err != nil {
		return removed, fmt.Errorf("prune %s: %w", l.name, err)
	}
	return removed, nil
}

func (l *Layout) prune(ctx context.Context, fsys FS, keep int, protect []string) ([]string, error) {
	if keep < 0 {
		return nil, fmt.Errorf("keep must be >= 0, got %d", keep)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cur, err := l.current(ctx, fsys)
	if err != nil {
		return nil, err
	}
	rels, err := l.releases(ctx, fsys)
	if err != nil {
		return nil, err
	}
	if len(rels) <= keep {
		return nil, nil
	}
	var removed []string
	for _, id := range rels[:len(rels)-keep] {
		if id == cur || slices.Contains(protect, id) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		tmp := path.Join(l.releasesDir(), engine.TempPrefix+id+"-"+engine.RandomSuffix(6))
		if err := fsys.Rename(ctx, l.ReleasePath(id), tmp); err != nil {
			return removed, fmt.Errorf("retire release %s: %w", id, err)
		}
		removed = append(removed, id)
		if err := fsys.RemoveAll(ctx, tmp); err != nil {
			return removed, fmt.Errorf("remove release %s: %w", id, err)
		}
	}
	if len(removed) > 0 {
		if err := fsys.SyncDir(ctx, l.releasesDir()); err != nil {
			return removed, err
		}
	}
	return removed, nil
}
