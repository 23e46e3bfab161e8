package ssh

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	gossh "golang.org/x/crypto/ssh"
)

// A session per command costs the host's sshd a fork and a session set-up,
// and then the user's login shell starts to run the command line: ~14 ms
// of the host's CPU here for `true` (bash as the login shell), more than
// find, cp -l or rm -rf themselves spend on a 500-file release. So the
// commands flightdeck runs for itself (find, cp -l, rm -rf, sync, openssl,
// sha256sum; never the plan's hooks, which keep a session each with their
// environment, directory and timeout) go to a shell kept per connection:
// the first command is the session's command line, followed by `exec sh`,
// which then reads one command at a time on its stdin. Each command runs
// in a subshell (a fork, ~1 ms) with stdin from /dev/null, then a marker
// with a random nonce and the exit status is printed on stdout and
// stderr. Output the command prints cannot end the
// exchange early: it would have to guess the connection's nonce.

// maxShells bounds the shells kept per connection (sshd's MaxSessions is
// 10 by default, and SFTP and the plan's hooks need sessions too); a
// command that finds every shell busy gets a session of its own.
const maxShells = 2

// shells are the command shells of one connection.
type shells struct {
	mu     sync.Mutex
	idle   []*shell
	n      int // shells started and not broken
	closed bool
	runs   atomic.Uint64 // commands run in a shell
}

// shell is one `exec sh` session waiting for commands. Its first command
// is the session's own command line, followed by `exec sh`: a connection
// that runs one command pays for one session, as without a shell.
type shell struct {
	started bool
	// parkable: started through the keeper, which keeps it for the next
	// process when this one parks it (see parkRequest).
	parkable bool
	sess     *gossh.Session
	stdin    io.WriteCloser
	stdout   *bufio.Reader
	stderr   *bufio.Reader
	nonce    string
}

// errNoShell means that no shell could be had: the caller runs the
// command in a session of its own.
var errNoShell = errors.New("no command shell")

// get returns an idle shell, or starts one, or errNoShell when maxShells
// are busy or a shell cannot be started.
func (s *shells) get(client *gossh.Client, bootstrap bool) (*shell, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errNoShell
	}
	if n := len(s.idle); n > 0 {
		sh := s.idle[n-1]
		s.idle = s.idle[:n-1]
		s.mu.Unlock()
		return sh, nil
	}
	if s.n >= maxShells {
		s.mu.Unlock()
		return nil, errNoShell
	}
	s.n++
	s.mu.Unlock()
	sh, err := startShell(client, bootstrap)
	if err != nil {
		s.mu.Lock()
		s.n--
		s.mu.Unlock()
		return nil, errNoShell
	}
	return sh, nil
}

// put returns a shell after a command; a broken one is closed.
func (s *shells) put(sh *shell, broken bool) {
	s.mu.Lock()
	if broken || s.closed {
		s.n--
		s.mu.Unlock()
		sh.sess.Close()
		return
	}
	s.idle = append(s.idle, sh)
	s.mu.Unlock()
}

// warm reports whether a started shell is idle: a command now costs the
// host a fork, not a session.
func (s *shells) warm() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sh := range s.idle {
		if sh.started {
			return true
		}
	}
	return false
}

// close closes the idle shells; busy ones are closed when put back.
func (s *shells) close() { s.closeIdle(false) }

// park hands the idle shells started through the keeper back to it, with
// a parkRequest each and their sessions' close, for the next process; the
// others are closed. Nothing is waited for: the requests go before the
// connection to the keeper closes, and it reads them in order.
func (s *shells) park() { s.closeIdle(true) }

// closeIdle closes the idle shells, those the keeper started parked first
// when park is set; no shell is started or kept after.
func (s *shells) closeIdle(park bool) {
	s.mu.Lock()
	idle := s.idle
	s.idle, s.closed = nil, true
	s.mu.Unlock()
	for _, sh := range idle {
		if park && sh.parkable {
			_, _ = sh.sess.SendRequest(parkRequest, false, nil)
		}
		sh.sess.Close()
	}
}

// shellBootstrap is the command line of a shell started on its own, before
// its first command (see startShell).
const shellBootstrap = "exec sh"

// startShell starts a command shell's session. With bootstrap the session
// runs shellBootstrap at once and every command goes to its stdin: the
// connection keeper keeps such a session warm for the next process (see
// keeper.go), so the command line must not vary. Otherwise the first
// command is the session's command line (one round trip fewer).
func startShell(client *gossh.Client, bootstrap bool) (*shell, error) {
	sess, err := client.NewSession()
	if err != nil {
		return nil, err
	}
	stdin, err1 := sess.StdinPipe()
	stdout, err2 := sess.StdoutPipe()
	stderr, err3 := sess.StderrPipe()
	if err := errors.Join(err1, err2, err3); err != nil {
		sess.Close()
		return nil, err
	}
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	sh := &shell{sess: sess, stdin: stdin, stdout: bufio.NewReaderSize(stdout, 4<<10),
		stderr: bufio.NewReader(stderr), nonce: "flightdeck-" + hex.EncodeToString(nonce[:])}
	if bootstrap {
		if err := sess.Start(shellBootstrap); err != nil {
			sess.Close()
			return nil, err
		}
		sh.started, sh.parkable = true, true
	}
	return sh, nil
}

// run runs cmd (already quoted) and returns its stdout; a command that
// exits non-zero gives an error with its status and stderr, as a session
// of its own would. broken says that the shell cannot be used again (its
// session failed, or the exchange could not be read).
func (sh *shell) run(cmd string) (out []byte, err error, broken bool) {
	script := "(\n" + cmd + "\n) </dev/null\nprintf '\\n%s %d\\n' " + sh.nonce + " $?\nprintf '\\n%s\\n' " + sh.nonce + " >&2\n"
	errc := make(chan error, 1)
	var stderr bytes.Buffer
	go func() {
		errc <- readStderr(sh.stderr, sh.nonce, &limitedBuffer{b: &stderr, max: 4096})
	}()
	var werr error
	if sh.started {
		_, werr = io.WriteString(sh.stdin, script)
	} else {
		sh.started = true
		werr = sh.sess.Start(script + "exec sh\n")
	}
	if werr != nil {
		err := werr
		sh.sess.Close() // ends the stderr reader
		<-errc
		return nil, fmt.Errorf("command shell: %w", err), true
	}
	out, status, rerr := readOutput(sh.stdout, sh.nonce)
	if rerr != nil {
		sh.sess.Close()
		<-errc
		return nil, fmt.Errorf("command shell: %w", rerr), true
	}
	if err := <-errc; err != nil {
		sh.sess.Close()
		return nil, fmt.Errorf("command shell: %w", err), true
	}
	if status != 0 {
		return out, fmt.Errorf("exited with status %d: %s", status, strings.TrimSpace(stderr.String())), false
	}
	return out, nil, false
}

// readOutput reads a command's stdout up to its marker: "\n", the nonce,
// a space, the exit status and "\n".
func readOutput(r *bufio.Reader, nonce string) ([]byte, int, error) {
	prefix := nonce + " "
	var buf []byte
	for {
		chunk, err := r.ReadSlice('\n')
		buf = append(buf, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the shell ended before the command's end")
			}
			return nil, 0, err
		}
		// buf ends with a newline; the marker is a whole line after one.
		j := bytes.LastIndexByte(buf[:len(buf)-1], '\n')
		if j < 0 || !bytes.HasPrefix(buf[j+1:], []byte(prefix)) {
			continue
		}
		status, err := strconv.Atoi(string(buf[j+1+len(prefix) : len(buf)-1]))
		if err != nil {
			return nil, 0, fmt.Errorf("unexpected end marker %q", buf[j+1:])
		}
		return buf[:j], status, nil
	}
}

// readStderr copies a command's stderr to w up to the line holding only
// the nonce (printed after a newline, so that it is a line of its own even
// when the command's last line has no newline).
func readStderr(r *bufio.Reader, nonce string, w io.Writer) error {
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			_, _ = w.Write(line)
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the shell ended before the command's end")
			}
			return err
		}
		if string(line) == nonce+"\n" {
			return nil
		}
		_, _ = w.Write(line)
	}
}
