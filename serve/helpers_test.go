package serve

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"flightdeck/engine"
	"flightdeck/tui"
)

// binary is the flightdeck binary, built once: the demo fleet runs it as
// its service.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flightdeck-serve-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "flightdeck")
	out, err := exec.Command("go", "build", "-o", binary, "flightdeck/cmd/flightdeck").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build flightdeck: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// user is a test operator with a key.
type user struct {
	name   string
	role   engine.Role
	signer gossh.Signer
	dir    string // where the private key file is (for the OpenSSH client)
}

func newUser(t testing.TB, name string, role engine.Role) *user {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	u := &user{name: name, role: role, signer: s, dir: t.TempDir()}
	blk, err := gossh.MarshalPrivateKey(priv, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(u.dir, "id_ed25519"), pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	return u
}

func fingerprint(u *user) string { return gossh.FingerprintSHA256(u.signer.PublicKey()) }

func (u *user) keyFile() string { return filepath.Join(u.dir, "id_ed25519") }

// keysFor writes an authorized-keys file for users, mixing both syntaxes.
func keysFor(t testing.TB, users ...*user) *Keys {
	t.Helper()
	p := filepath.Join(t.TempDir(), "authorized_keys")
	writeKeys(t, p, users...)
	k, err := LoadKeys(p)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// writeKeys (re)writes the authorized-keys file p for users, as an
// administrator's editor does: a new file renamed over the old one.
func writeKeys(t testing.TB, p string, users ...*user) {
	t.Helper()
	var b strings.Builder
	for i, u := range users {
		line := authLine(u.signer.PublicKey())
		if i%2 == 0 {
			fmt.Fprintf(&b, "environment=\"FLIGHTDECK_ROLE=%s\",environment=\"FLIGHTDECK_NAME=%s\" %s %s@test\n", u.role, u.name, line, u.name)
		} else {
			fmt.Fprintf(&b, "%s %s@test role=%s\n", line, u.name, u.role)
		}
	}
	writeFileAtomic(t, p, b.String())
}

func writeFileAtomic(t testing.TB, p, content string) {
	t.Helper()
	tmp := p + ".new"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

// testServer is a running server on 127.0.0.1.
type testServer struct {
	*Server
	addr    string
	hostKey gossh.PublicKey
	keyPath string
}

func startServer(t testing.TB, o Options) *testServer {
	t.Helper()
	keyPath := filepath.Join(t.TempDir(), HostKeyName)
	if o.HostKey == nil {
		s, _, err := LoadOrCreateHostKey(keyPath)
		if err != nil {
			t.Fatal(err)
		}
		o.HostKey = s
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &testServer{Server: srv, addr: ln.Addr().String(), hostKey: o.HostKey.PublicKey(), keyPath: keyPath}
}

// idleBackend is a backend over an engine that has no run yet.
func idleBackend() *tui.EngineBackend {
	return &tui.EngineBackend{Engine: &engine.Engine{Hub: engine.NewHub()}}
}

func (ts *testServer) dial(u *user) (*gossh.Client, error) {
	return gossh.Dial("tcp", ts.addr, &gossh.ClientConfig{
		User:            u.name,
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(u.signer)},
		HostKeyCallback: gossh.FixedHostKey(ts.hostKey),
		Timeout:         10 * time.Second,
	})
}

// run runs a command in a session without a PTY and returns stdout, stderr.
func (ts *testServer) run(t *testing.T, u *user, env map[string]string, cmd string) (string, string, error) {
	t.Helper()
	c, err := ts.dial(u)
	if err != nil {
		t.Fatalf("dial as %s: %v", u.name, err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for k, v := range env {
		if err := s.Setenv(k, v); err != nil {
			t.Fatal(err)
		}
	}
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr = &out, &errb
	err = s.Run(cmd)
	return out.String(), errb.String(), err
}

// term is a cockpit session with a PTY; it accumulates the screen output.
type term struct {
	t      testing.TB
	client *gossh.Client
	sess   *gossh.Session
	in     io.WriteCloser
	mu     sync.Mutex
	scr    *screen
	marks  []mark // texts waited for with expect, stamped by the reader
	done   chan struct{}
}

// mark is a text a reader stamps the first time the screen shows it.
type mark struct {
	want string
	at   chan time.Time // buffered 1
}

func (ts *testServer) open(t testing.TB, u *user, w, h int) *term {
	t.Helper()
	c, err := ts.dial(u)
	if err != nil {
		t.Fatalf("dial as %s: %v", u.name, err)
	}
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RequestPty("xterm-256color", h, w, gossh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	tm := &term{t: t, client: c, sess: s, scr: newScreen(w, h), done: make(chan struct{})}
	if tm.in, err = s.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	r, err := s.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(tm.done)
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			tm.mu.Lock()
			tm.scr.write(buf[:n])
			if len(tm.marks) > 0 {
				tm.check(time.Now())
			}
			tm.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tm.close)
	return tm
}

// check delivers the marks the screen now shows; tm.mu is held.
func (tm *term) check(now time.Time) {
	text := tm.scr.String()
	tm.marks = slices.DeleteFunc(tm.marks, func(m mark) bool {
		if strings.Contains(text, m.want) {
			m.at <- now
			return true
		}
		return false
	})
}

// expect returns a channel that receives the time the screen first shows
// want (at once if it already does), stamped by the reader goroutine.
func (tm *term) expect(want string) <-chan time.Time {
	m := mark{want: want, at: make(chan time.Time, 1)}
	tm.mu.Lock()
	defer tm.mu.Unlock()
	tm.marks = append(tm.marks, m)
	tm.check(time.Now())
	return m.at
}

func (tm *term) close() {
	tm.sess.Close()
	tm.client.Close()
	<-tm.done
}

// text is the session's screen as a person sees it.
func (tm *term) text() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.scr.String()
}

// waitFor polls the screen until it shows all of want at once.
func (tm *term) waitFor(timeout time.Duration, want ...string) {
	tm.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := tm.text()
		missing := ""
		for _, w := range want {
			if !strings.Contains(s, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("screen never showed %q within %s; screen:\n%s", missing, timeout, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (tm *term) keys(s string) {
	tm.t.Helper()
	if _, err := io.WriteString(tm.in, s); err != nil {
		tm.t.Fatalf("send keys: %v", err)
	}
}

// waitState polls the hub until cond holds.
func waitState(t testing.TB, hub *engine.Hub, timeout time.Duration, what string, cond func(*engine.State) bool) *engine.State {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := hub.Snapshot()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: status %s step %d", what, st.Status, st.Step)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
