package lab_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"flightdeck/targets/lab"
	"flightdeck/targets/lab/labtest"
)

// binary is the flightdeck binary the test labs' hosts run.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flightdeck-lab-bin-")
	if err != nil {
		panic(err)
	}
	if binary, err = labtest.BuildBinary(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestNoDaemonNamesWhatWasTried(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "docker.sock")
	t.Setenv("DOCKER_HOST", "unix://"+sock)
	_, err := lab.Connect(context.Background())
	var nd *lab.NoDaemonError
	if !errors.As(err, &nd) {
		t.Fatalf("Connect to a missing socket: %v, want *NoDaemonError", err)
	}
	for _, want := range []string{"DOCKER_HOST=unix://" + sock, "systemctl start docker", "podman", "nothing was created"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
}

func inspect(t *testing.T, d *lab.Docker, id string) client.ContainerInspectResult {
	t.Helper()
	res, err := d.Client().ContainerInspect(context.Background(), id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// login logs in over SSH with the lab's key, host key verified.
func login(l *lab.Lab, host string, timeout time.Duration) error {
	h, err := l.Host(host)
	if err != nil {
		return err
	}
	key, err := os.ReadFile(l.KeyFile())
	if err != nil {
		return err
	}
	signer, err := gossh.ParsePrivateKey(key)
	if err != nil {
		return err
	}
	check, err := knownhosts.New(l.KnownHostsFile())
	if err != nil {
		return err
	}
	nc, err := net.DialTimeout("tcp", h.SSHAddr(), timeout)
	if err != nil {
		return err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(timeout))
	c, chans, reqs, err := gossh.NewClientConn(nc, h.SSHAddr(), &gossh.ClientConfig{
		User: "root", Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)}, HostKeyCallback: check})
	if err != nil {
		return err
	}
	cl := gossh.NewClient(c, chans, reqs)
	defer cl.Close()
	s, err := cl.NewSession()
	if err != nil {
		return err
	}
	defer s.Close()
	out, err := s.Output("hostname")
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(out)) != host {
		return fmt.Errorf("%s says its hostname is %q", host, out)
	}
	return nil
}

// TestLab starts one lab and checks, on it: finding it again from a new
// connection, refusing its name, the cached image, host key checking,
// every fault and heal as the engine reports them, and that Down removes
// the lab's objects and nothing else.
func TestLab(t *testing.T) {
	d := labtest.Require(t)
	l := labtest.Up(t, d, 2, binary)
	ctx := context.Background()

	t.Run("found again after a restart", func(t *testing.T) {
		d2, err := lab.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer d2.Close()
		got, err := lab.Open(ctx, d2, l.Name, "")
		if err != nil {
			t.Fatal(err)
		}
		if got.Dir != l.Dir || got.Subnet != l.Subnet || got.Image != l.Image || len(got.Hosts) != 2 {
			t.Fatalf("Open: dir %s subnet %s image %s, %d hosts; want %s %s %s 2", got.Dir, got.Subnet, got.Image, len(got.Hosts), l.Dir, l.Subnet, l.Image)
		}
		for i, h := range got.Hosts {
			if h.Name != l.Hosts[i].Name || h.Addr != l.Hosts[i].Addr || h.Condition() != "up" {
				t.Errorf("host %d: %s %s %s, want %s %s up", i, h.Name, h.Addr, h.Condition(), l.Hosts[i].Name, l.Hosts[i].Addr)
			}
		}
		st, err := os.Stat(got.KeyFile())
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("lab key %s: %v %v, want mode 0600", got.KeyFile(), st, err)
		}
		_, err = lab.Open(ctx, d2, labtest.Name("none"), "")
		var nf *lab.NotFoundError
		if !errors.As(err, &nf) {
			t.Errorf("Open of a lab that does not exist: %v, want *NotFoundError", err)
		}
	})

	t.Run("name in use", func(t *testing.T) {
		before := labtest.Objects(t, d, l.Name)
		_, _, err := lab.Up(ctx, d, lab.Options{Name: l.Name, Hosts: 1, Root: t.TempDir(), Binary: binary})
		var inUse *lab.InUseError
		if !errors.As(err, &inUse) {
			t.Fatalf("second lab up with the same name: %v, want *InUseError", err)
		}
		if after := labtest.Objects(t, d, l.Name); after != before {
			t.Fatalf("a refused lab up changed the objects: %d, then %d", before, after)
		}
	})

	t.Run("image cached", func(t *testing.T) {
		res, err := d.EnsureImage(ctx, lab.Sources{Binary: binary})
		if err != nil {
			t.Fatal(err)
		}
		if res.Built || res.Ref != l.Image {
			t.Fatalf("EnsureImage again: built=%v ref %s, want the cached %s", res.Built, res.Ref, l.Image)
		}
		if res.Size > 50e6 {
			t.Errorf("image is %d bytes, want at most 50 MB", res.Size)
		}
	})

	t.Run("host keys verified", func(t *testing.T) {
		if err := login(l, "web-1", 10*time.Second); err != nil {
			t.Fatalf("login: %v", err)
		}
		// A known_hosts that names another key for the address is refused.
		bad := l.Clone()
		bad.Dir = t.TempDir()
		key, _ := os.ReadFile(l.KeyFile())
		os.WriteFile(bad.KeyFile(), key, 0o600)
		known, _ := os.ReadFile(l.KnownHostsFile())
		lines := strings.Split(strings.TrimSpace(string(known)), "\n")
		// web-2's key under web-1's address.
		f1, f2 := strings.Fields(lines[0]), strings.Fields(lines[1])
		os.WriteFile(bad.KnownHostsFile(), []byte(f1[0]+" "+f2[1]+" "+f2[2]+"\n"), 0o600)
		err := login(bad, "web-1", 10*time.Second)
		var ke *knownhosts.KeyError
		if !errors.As(err, &ke) || len(ke.Want) == 0 {
			t.Fatalf("login with another host's key recorded: %v, want a knownhosts key mismatch", err)
		}
	})

	t.Run("unknown host", func(t *testing.T) {
		_, err := l.Fault(ctx, "web-9", lab.FaultKill, "test")
		var uh *lab.UnknownHostError
		if !errors.As(err, &uh) || !strings.Contains(err.Error(), "web-1, web-2") {
			t.Fatalf("fault on web-9: %v, want *UnknownHostError listing web-1, web-2", err)
		}
	})

	h := l.Hosts[1]
	t.Run("serves current", func(t *testing.T) {
		// An operator's deploy creates current: the host's init serves it.
		out, code, err := l.Exec(ctx, h.Name, []string{"/bin/sh", "-c",
			"mkdir -p /srv/app/releases/r7 && ln -s releases/r7 /srv/app/current"})
		if err != nil || code != 0 {
			t.Fatalf("make a release: exit %d %v: %s", code, err, out)
		}
		waitRelease(t, h.Backend(lab.ServicePort), "r7")
	})
	started := inspect(t, d, h.ID).Container.State.StartedAt
	for _, tc := range []struct {
		fault lab.Fault
		check func(t *testing.T)
	}{
		{lab.FaultPause, func(t *testing.T) {
			if st := inspect(t, d, h.ID).Container.State; !st.Paused || !st.Running {
				t.Errorf("after pause: running=%v paused=%v, want both", st.Running, st.Paused)
			}
			// TCP is accepted by the kernel, but nothing answers SSH.
			if err := login(l, h.Name, 2*time.Second); err == nil {
				t.Error("a paused host answered SSH")
			}
		}},
		{lab.FaultPartition, func(t *testing.T) {
			if _, on := inspect(t, d, h.ID).Container.NetworkSettings.Networks[l.Network]; on {
				t.Errorf("after partition: still on %s", l.Network)
			}
			if err := login(l, h.Name, 2*time.Second); err == nil {
				t.Error("a partitioned host answered SSH")
			}
		}},
		{lab.FaultSlowNet, func(t *testing.T) {
			out, code, err := l.Exec(ctx, h.Name, []string{"/usr/sbin/tc", "qdisc", "show"})
			if err != nil || code != 0 || !(strings.Contains(out, "tbf") || strings.Contains(out, "netem")) {
				t.Errorf("after slow-net: tc qdisc show: exit %d %v:\n%s", code, err, out)
			}
		}},
		{lab.FaultKill, func(t *testing.T) {
			st := inspect(t, d, h.ID).Container.State
			if st.Running || st.ExitCode != 137 {
				t.Errorf("after kill: running=%v exit %d, want stopped by SIGKILL (137)", st.Running, st.ExitCode)
			}
		}},
		{lab.FaultRestart, func(t *testing.T) {
			st := inspect(t, d, h.ID).Container.State
			if !st.Running || st.StartedAt == started {
				t.Errorf("after restart: running=%v started %s (before %s)", st.Running, st.StartedAt, started)
			}
			if err := l.WaitSSH(ctx, 30*time.Second, h.Name); err != nil {
				t.Error(err)
			}
			// The rebooted host serves its release again.
			waitRelease(t, h.Backend(lab.ServicePort), "r7")
		}},
	} {
		t.Run(string(tc.fault), func(t *testing.T) {
			if _, err := l.Fault(ctx, h.Name, tc.fault, "test"); err != nil {
				t.Fatalf("fault: %v", err)
			}
			tc.check(t)
			want := tc.fault.Condition()
			if got := hostCondition(t, l, h.Name); got != want {
				t.Errorf("condition %q, want %q", got, want)
			}
			if _, err := l.Heal(ctx, h.Name, "test"); err != nil {
				t.Fatalf("heal: %v", err)
			}
			if got := hostCondition(t, l, h.Name); got != "up" {
				t.Errorf("after heal: %q, want up", got)
			}
			if err := login(l, h.Name, 10*time.Second); err != nil {
				t.Errorf("after heal: login: %v", err)
			}
			if out, _, _ := l.Exec(ctx, h.Name, []string{"/usr/sbin/tc", "qdisc", "show"}); strings.Contains(out, "tbf") || strings.Contains(out, "netem") {
				t.Errorf("after heal the slow-net queue is still there:\n%s", out)
			}
			started = inspect(t, d, h.ID).Container.State.StartedAt
		})
	}
	recs, err := l.Faults()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.Action)
	}
	want := []string{"pause", "heal", "partition", "heal", "slow-net", "heal", "kill", "heal", "restart"}
	if !slices.Equal(got, want) {
		t.Errorf("fault log %v, want %v", got, want)
	}

	t.Run("down removes only the lab's objects", func(t *testing.T) {
		// A volume named like the lab's but without its label, and one of
		// another lab: neither may be touched.
		decoy := "fdlab-" + l.Name + "-web-1-decoy"
		other := labtest.Name("other")
		for _, v := range []client.VolumeCreateOptions{
			{Name: decoy},
			{Name: "fdlab-" + other + "-x", Labels: map[string]string{lab.LabelLab: other}},
		} {
			if _, err := d.Client().VolumeCreate(ctx, v); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Client().VolumeRemove(context.Background(), v.Name, client.VolumeRemoveOptions{Force: true}) })
		}
		if err := l.Down(ctx); err != nil {
			t.Fatal(err)
		}
		if n := labtest.Objects(t, d, l.Name); n != 0 {
			t.Errorf("%d objects labelled %s=%s left after down", n, lab.LabelLab, l.Name)
		}
		if _, err := os.Stat(l.Dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("lab directory %s left: %v", l.Dir, err)
		}
		for _, v := range []string{decoy, "fdlab-" + other + "-x"} {
			if _, err := d.Client().VolumeInspect(ctx, v, client.VolumeInspectOptions{}); err != nil {
				t.Errorf("down removed %s, which is not the lab's: %v", v, err)
			}
		}
		if p := labtest.Processes(l.Name); len(p) > 0 {
			t.Errorf("processes of the lab left: %v", p)
		}
	})
}

// waitRelease waits (at most 30 s) until the service at addr answers
// with release.
func waitRelease(t *testing.T, addr, release string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	c := http.Client{Timeout: 2 * time.Second}
	last := ""
	for time.Now().Before(deadline) {
		resp, err := c.Get("http://" + addr + "/")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), `"release":"`+release+`"`) {
				return
			}
			last = string(b)
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond) // polling for readiness, bounded by the deadline
	}
	t.Fatalf("%s does not serve release %s within 30s (last: %s)", addr, release, last)
}

func hostCondition(t *testing.T, l *lab.Lab, name string) string {
	t.Helper()
	if err := l.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	h, err := l.Host(name)
	if err != nil {
		t.Fatal(err)
	}
	return h.Condition()
}

// cancelOn cancels when a line containing marker is written.
type cancelOn struct {
	marker string
	cancel context.CancelFunc
	mu     sync.Mutex
	buf    bytes.Buffer
}

func (c *cancelOn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	if strings.Contains(c.buf.String(), c.marker) {
		c.cancel()
	}
	return len(p), nil
}

// TestUpInterruptedLeavesNothing: Ctrl-C while the hosts are being
// created removes everything the lab had created.
func TestUpInterruptedLeavesNothing(t *testing.T) {
	d := labtest.Require(t)
	name, root := labtest.Name("int"), t.TempDir()
	labtest.Down(t, d, name, root)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Cancelled once the first host has started: the others are being
	// created or started at that moment.
	log := &cancelOn{marker: " started (", cancel: cancel}
	_, _, err := lab.Up(ctx, d, lab.Options{Name: name, Hosts: 3, Root: root, Binary: binary, Log: log})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted lab up: %v, want context.Canceled\n%s", err, log.buf.String())
	}
	if n := labtest.Objects(t, d, name); n != 0 {
		t.Errorf("%d objects of the interrupted lab left", n)
	}
	if _, err := os.Stat(filepath.Join(root, name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the interrupted lab's directory is left: %v", err)
	}
}

func TestELFDeps(t *testing.T) {
	for _, p := range []string{"/usr/sbin/sshd", binary} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s missing: apt-get install openssh-server", p)
		}
	}
	deps, err := lab.ELFDeps("/usr/sbin/sshd")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range deps {
		names = append(names, filepath.Base(d))
	}
	for _, want := range []string{"libc.so.6", "libcrypto.so.3", "ld-linux-x86-64.so.2"} {
		if !slices.Contains(names, want) {
			t.Errorf("sshd's dependencies %v lack %s", names, want)
		}
	}
	if bb := "/bin/busybox"; fileExists(bb) {
		if deps, err := lab.ELFDeps(bb); err != nil || len(deps) != 0 {
			t.Errorf("static busybox: deps %v, %v; want none", deps, err)
		}
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestImageHashFollowsInputs: the image's tag is the hash of its inputs:
// the same files give the same hash, one changed byte another.
func TestImageHashFollowsInputs(t *testing.T) {
	if !fileExists("/usr/sbin/tc") || !fileExists("/usr/sbin/sshd") {
		t.Skip("needs /usr/sbin/tc (iproute2) and /usr/sbin/sshd (openssh-server)")
	}
	ctx := context.Background()
	h1, err := lab.ImageHash(ctx, lab.Sources{Binary: binary})
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := lab.ImageHash(ctx, lab.Sources{Binary: binary})
	if h1 != h2 {
		t.Fatalf("same inputs, two hashes: %s %s", h1, h2)
	}
	tc := filepath.Join(t.TempDir(), "tc")
	in, _ := os.Open("/usr/sbin/tc")
	out, _ := os.OpenFile(tc, os.O_CREATE|os.O_WRONLY, 0o755)
	io.Copy(out, in)
	out.Write([]byte{0})
	in.Close()
	out.Close()
	h3, err := lab.ImageHash(ctx, lab.Sources{Binary: binary, TC: tc})
	if err != nil {
		t.Fatal(err)
	}
	if h3 == h1 {
		t.Fatal("a changed tc gave the same image hash")
	}
}
