package lab

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/client"
)

// Image names and labels.
const (
	// ImageRepo is the repository of lab images; the tag is the hash of
	// the image's inputs.
	ImageRepo = "flightdeck-lab"
	// LabelImage marks lab images (its value is the inputs' hash).
	LabelImage = "flightdeck.lab.image"
	// imageFormat changes when the image's layout changes, so that a new
	// flightdeck does not reuse an image made by an older one.
	imageFormat = "flightdeck-lab image 1"
)

// Paths inside a lab host.
const (
	// BinaryPath is where the flightdeck binary is mounted (read-only).
	BinaryPath = "/usr/local/bin/flightdeck"
	// DeployTo is the deploy directory offered to an operator's plan; the
	// host's init serves the release current points to on ServicePort.
	DeployTo = "/srv/app"
	// CtlSock is the socket of the host's service supervisor
	// (`flightdeck demo-ctl --sock CtlSock` restarts a service).
	CtlSock = "/run/flightdeck/ctl.sock"
	// ServicePort is the demo service's port; blue and green slots use
	// the next two.
	ServicePort = 8080
	// KeysMount is where a host's keys and sshd configuration are mounted
	// (read-only) for its init to install: HostKeyFile (and .pub),
	// SSHDConfigFile and AuthorizedKeysFile.
	KeysMount          = "/run/flightdeck-lab"
	HostKeyFile        = "ssh_host_ed25519_key"
	SSHDConfigFile     = "sshd_config"
	AuthorizedKeysFile = "authorized_keys"
	sshdPath           = "/usr/sbin/sshd"
	hostKeyPath        = "/etc/ssh/" + HostKeyFile
)

// Sources are the files of this machine a lab image is made from.
type Sources struct {
	// Busybox is a busybox binary (busybox-static): the shell and core
	// utilities (default: found in /bin, /usr/bin).
	Busybox string
	// SSHD is the OpenSSH server (default /usr/sbin/sshd).
	SSHD string
	// TC is iproute2's tc, for slow-net (default /usr/sbin/tc or /sbin/tc;
	// the image is made without it when it is missing).
	TC string
	// Binary is the flightdeck binary the hosts will run: it is mounted,
	// not copied, but the shared libraries it needs go into the image.
	Binary string
}

// entry is one file of the image's root file system.
type entry struct {
	path string // inside the image, without the leading slash
	mode int64
	kind byte   // tar.TypeDir, TypeReg, TypeSymlink
	src  string // regular file: copied from this host file …
	data []byte // … or these bytes
	link string
}

// missingError is a missing host program, with the package that provides it.
type missingError struct{ what, pkg string }

func (e *missingError) Error() string {
	return fmt.Sprintf("%s is not installed on this machine: apt-get install %s", e.what, e.pkg)
}

func firstExisting(paths ...string) string {
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

func (s *Sources) fill() error {
	if s.Busybox == "" {
		s.Busybox = firstExisting("/bin/busybox", "/usr/bin/busybox", "/usr/sbin/busybox")
		if s.Busybox == "" {
			return &missingError{"busybox", "busybox-static"}
		}
	}
	if s.SSHD == "" {
		s.SSHD = firstExisting(sshdPath, "/usr/bin/sshd")
		if s.SSHD == "" {
			return &missingError{"the OpenSSH server (sshd)", "openssh-server"}
		}
	}
	if s.TC == "" {
		s.TC = firstExisting("/usr/sbin/tc", "/sbin/tc")
	}
	if s.Binary == "" {
		return errors.New("lab image: the flightdeck binary is not set")
	}
	return nil
}

// busyboxApplets lists the applets of a busybox binary (`busybox --list`).
func busyboxApplets(ctx context.Context, bin string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("list the applets of %s: %w", bin, err)
	}
	var apps []string
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" && !strings.ContainsAny(a, "/") {
			apps = append(apps, a)
		}
	}
	return apps, nil
}

// rootfs lists the image's files: busybox and its applets, sshd, tc, the
// shared libraries they and the flightdeck binary need, and the few
// configuration files a host needs (users, name service, sshd's
// privilege separation directory).
func rootfs(ctx context.Context, src Sources) ([]entry, error) {
	if err := src.fill(); err != nil {
		return nil, err
	}
	dirs := map[string]int64{
		"bin": 0o755, "sbin": 0o755, "etc": 0o755, "etc/ssh": 0o755, "dev": 0o755, "proc": 0o755, "sys": 0o755,
		"root": 0o700, "root/.ssh": 0o700, "run": 0o755, "run/sshd": 0o755, "run/flightdeck": 0o755,
		"srv": 0o755, "tmp": 0o1777, "usr": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755, "usr/local": 0o755,
		"usr/local/bin": 0o755, "var": 0o755, "var/empty": 0o755, "var/log": 0o755, "var/lib": 0o755,
		"var/lib/flightdeck": 0o755,
	}
	files := map[string]entry{}
	// add puts a host file into the image at imagePath (its parent
	// directories too).
	add := func(imagePath, hostPath string, mode int64) {
		p := strings.TrimPrefix(path.Clean(imagePath), "/")
		files[p] = entry{path: p, mode: mode, kind: tar.TypeReg, src: hostPath}
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if _, ok := dirs[d]; !ok {
				dirs[d] = 0o755
			}
		}
	}
	add("/bin/busybox", src.Busybox, 0o755)
	apps, err := busyboxApplets(ctx, src.Busybox)
	if err != nil {
		return nil, err
	}
	for _, a := range apps {
		if a == "tc" && src.TC != "" {
			continue // iproute2's tc has netem and tbf
		}
		p := "bin/" + a
		files[p] = entry{path: p, mode: 0o777, kind: tar.TypeSymlink, link: "busybox"}
	}
	add(sshdPath, src.SSHD, 0o755)
	exes := []string{src.Busybox, src.SSHD, src.Binary}
	if src.TC != "" {
		add("/usr/sbin/tc", src.TC, 0o755)
		exes = append(exes, src.TC)
	}
	for _, exe := range exes {
		deps, err := ELFDeps(exe)
		if err != nil {
			return nil, fmt.Errorf("lab image: %w", err)
		}
		for _, d := range deps {
			mode := int64(0o644)
			if strings.HasPrefix(path.Base(d), "ld-linux") {
				mode = 0o755 // the dynamic loader
			}
			add(d, d, mode)
		}
	}
	// The mount point of the flightdeck binary.
	files[strings.TrimPrefix(BinaryPath, "/")] = entry{path: strings.TrimPrefix(BinaryPath, "/"), mode: 0o755, kind: tar.TypeReg, data: []byte{}}
	text := func(p, s string, mode int64) {
		files[p] = entry{path: p, mode: mode, kind: tar.TypeReg, data: []byte(s)}
	}
	text("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534:sshd privilege separation:/run/sshd:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", 0o644)
	text("etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644)
	text("etc/nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n", 0o644)
	text("etc/shells", "/bin/sh\n/bin/ash\n", 0o644)
	text("etc/os-release", "NAME=\"flightdeck lab host\"\nID=flightdeck-lab\nPRETTY_NAME=\"flightdeck lab host (busybox, OpenSSH)\"\n", 0o644)
	text("etc/profile", "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n", 0o644)

	var out []entry
	for d, m := range dirs {
		out = append(out, entry{path: d, mode: m, kind: tar.TypeDir})
	}
	for _, f := range files {
		out = append(out, f)
	}
	// Parents sort before their children ("a" < "a/b").
	slices.SortFunc(out, func(a, b entry) int { return strings.Compare(a.path, b.path) })
	return out, nil
}

// hashEntries hashes the image's inputs: the format, and for every entry
// its path, kind, mode, link and content.
func hashEntries(entries []entry) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", imageFormat)
	for _, e := range entries {
		fmt.Fprintf(h, "%s %c %o %s ", e.path, e.kind, e.mode, e.link)
		if e.kind == tar.TypeReg {
			if e.src != "" {
				f, err := os.Open(e.src)
				if err != nil {
					return "", fmt.Errorf("lab image: %w", err)
				}
				_, err = io.Copy(h, f)
				f.Close()
				if err != nil {
					return "", fmt.Errorf("lab image: read %s: %w", e.src, err)
				}
			} else {
				h.Write(e.data)
			}
		}
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeTar writes the entries as a tar archive (owned by root).
func writeTar(w io.Writer, entries []entry) error {
	tw := tar.NewWriter(w)
	mtime := time.Unix(0, 0)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.path, Mode: e.mode, Typeflag: e.kind, Linkname: e.link, ModTime: mtime, Format: tar.FormatPAX}
		if e.kind == tar.TypeDir {
			hdr.Name += "/"
		}
		var r io.Reader
		switch {
		case e.kind != tar.TypeReg:
		case e.src != "":
			f, err := os.Open(e.src)
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			hdr.Size, r = st.Size(), f
		default:
			hdr.Size, r = int64(len(e.data)), bytes.NewReader(e.data)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if r != nil {
			if _, err := io.Copy(tw, r); err != nil {
				return fmt.Errorf("write %s: %w", e.path, err)
			}
		}
	}
	return tw.Close()
}

// ImageHash is the hash of the inputs of the image made from src (the
// image's tag is its first 16 hex digits).
func ImageHash(ctx context.Context, src Sources) (string, error) {
	entries, err := rootfs(ctx, src)
	if err != nil {
		return "", err
	}
	return hashEntries(entries)
}

// ImageResult says which image a lab uses and whether it was built now.
type ImageResult struct {
	Ref   string // flightdeck-lab:<hash>
	Hash  string
	Built bool
	Size  int64 // bytes, as the engine reports it
	Took  time.Duration
}

// EnsureImage returns the lab image for these sources, importing it when
// the engine has no image with the hash of its inputs. Older lab images
// that no container uses are removed after a new one is made.
func (d *Docker) EnsureImage(ctx context.Context, src Sources) (ImageResult, error) {
	start := time.Now()
	entries, err := rootfs(ctx, src)
	if err != nil {
		return ImageResult{}, err
	}
	hash, err := hashEntries(entries)
	if err != nil {
		return ImageResult{}, err
	}
	res := ImageResult{Hash: hash, Ref: ImageRepo + ":" + hash[:16]}
	if img, err := d.c.ImageInspect(ctx, res.Ref); err == nil {
		res.Size, res.Took = img.Size, time.Since(start)
		return res, nil
	} else if !isNotFound(err) {
		return res, fmt.Errorf("look for the lab image %s: %w", res.Ref, err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeTar(pw, entries)) }()
	// The import is not cancelled half-way (an interrupted import leaves
	// nothing, but waiting for it keeps the engine's state simple).
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	rc, err := d.c.ImageImport(ictx, client.ImageImportSource{Source: pr, SourceName: "-"}, res.Ref, client.ImageImportOptions{
		Message: "flightdeck lab host image",
		Changes: []string{
			"LABEL " + LabelImage + "=" + hash,
			"ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			`CMD ["/bin/sh"]`,
		},
	})
	if err != nil {
		pr.CloseWithError(err)
		return res, fmt.Errorf("import the lab image: %w", err)
	}
	msg, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return res, fmt.Errorf("import the lab image: %w", err)
	}
	if i := bytes.Index(msg, []byte(`"error"`)); i >= 0 {
		return res, fmt.Errorf("import the lab image: %s", bytes.TrimSpace(msg[i:]))
	}
	img, err := d.c.ImageInspect(ictx, res.Ref)
	if err != nil {
		return res, fmt.Errorf("the lab image was imported but cannot be inspected: %w", err)
	}
	res.Built, res.Size, res.Took = true, img.Size, time.Since(start)
	d.removeOldImages(ictx, res.Ref)
	return res, ctx.Err()
}

// removeOldImages removes lab images other than keep that no container
// uses (the engine refuses to remove an image in use; that is fine) and
// that were made more than an hour ago (another lab up may be about to
// create its containers from a newer one).
func (d *Docker) removeOldImages(ctx context.Context, keep string) {
	list, err := d.c.ImageList(ctx, client.ImageListOptions{Filters: make(client.Filters).Add("label", LabelImage)})
	if err != nil {
		return
	}
	for _, img := range list.Items {
		if slices.Contains(img.RepoTags, keep) || time.Since(time.Unix(img.Created, 0)) < time.Hour {
			continue
		}
		_, _ = d.c.ImageRemove(ctx, img.ID, client.ImageRemoveOptions{PruneChildren: true})
	}
}
