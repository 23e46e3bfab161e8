package ssh

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/sync/errgroup"

	"flightdeck/engine"
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
func (r *remote) output(cmd string) ([]byte, error) {
	sess, err := r.client.NewSession()
	if err != nil {
		return nil, fmt.Errorf("open session: %w", err)
	}
	defer sess.Close()
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

// Verify checks that releases/<id> matches its manifest: every entry
// exists with the right kind, files with the right size and read-only
// mode, symlinks with the right target, and (unless VerifySizesOnly)
// every file's content hashes to the manifest's sha256, computed on the
// host by `sha256sum` in batches.
func (h *Host) Verify(ctx context.Context, id string) error {
	if err := engine.ValidateReleaseID(id); err != nil {
		return h.errorf("verify", err)
	}
	return h.run(ctx, "verify "+id, func(ctx context.Context, r *remote) error {
		m, err := r.readManifest(id)
		if err != nil {
			return fmt.Errorf("read manifest: %w", err)
		}
		if m.Release != "" && m.Release != id {
			return fmt.Errorf("manifest names release %s", m.Release)
		}
		if err := checkManifestPaths(m); err != nil {
			return err
		}
		if err := r.statEntries(ctx, id, m); err != nil {
			return err
		}
		if h.t.VerifySizesOnly {
			return nil
		}
		return r.hashFiles(ctx, id, m)
	})
}

func (r *remote) statEntries(ctx context.Context, id string, m *engine.Manifest) error {
	root := r.h.ReleasePath(id)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.h.pool.opts.Workers)
	for _, e := range m.Entries {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			p := path.Join(root, e.Path)
			st, err := r.sftp.Lstat(p)
			if err != nil {
				return fmt.Errorf("%s: %w", e.Path, err)
			}
			r.kick()
			switch e.Kind {
			case engine.KindDir:
				if !st.IsDir() {
					return fmt.Errorf("%s: not a directory", e.Path)
				}
			case engine.KindSymlink:
				if st.Mode()&os.ModeSymlink == 0 {
					return fmt.Errorf("%s: not a symlink", e.Path)
				}
				target, err := r.sftp.ReadLink(p)
				if err != nil {
					return fmt.Errorf("%s: %w", e.Path, err)
				}
				if target != e.Link {
					return fmt.Errorf("%s: links to %s, manifest says %s", e.Path, target, e.Link)
				}
			case engine.KindFile:
				if !st.Mode().IsRegular() {
					return fmt.Errorf("%s: not a regular file", e.Path)
				}
				if st.Size() != e.Size {
					return fmt.Errorf("%s: size %d, manifest says %d", e.Path, st.Size(), e.Size)
				}
				if st.Mode().Perm()&0o222 != 0 {
					return fmt.Errorf("%s: is writable (mode %s), release files must be read-only", e.Path, st.Mode().Perm())
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// maxCommand bounds the length of one sha256sum command line.
const maxCommand = 64 << 10

// hashFiles hashes the release's files on the host in batches.
func (r *remote) hashFiles(ctx context.Context, id string, m *engine.Manifest) error {
	root := r.h.ReleasePath(id)
	want := map[string]string{}
	var batches [][]string
	var cur []string
	size := 0
	for _, e := range m.Entries {
		if e.Kind != engine.KindFile {
			continue
		}
		want[e.Path] = e.Hash
		q := len(Quote(e.Path)) + 1
		if len(cur) > 0 && size+q > maxCommand {
			batches = append(batches, cur)
			cur, size = nil, 0
		}
		cur = append(cur, e.Path)
		size += q
	}
	if len(cur) > 0 {
		batches = append(batches, cur)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4) // sshd's MaxSessions is 10 by default
	for _, b := range batches {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			out, err := r.output("cd " + Quote(root) + " && sha256sum -- " + QuoteArgs(b...))
			if err != nil {
				return fmt.Errorf("sha256sum: %w", err)
			}
			got, err := parseSHA256Sum(out)
			if err != nil {
				return err
			}
			for _, p := range b {
				h, ok := got[p]
				if !ok {
					return fmt.Errorf("%s: sha256sum printed no hash", p)
				}
				if h != want[p] {
					return fmt.Errorf("%s: content changed: sha256 %s, manifest says %s", p, h, want[p])
				}
			}
			return nil
		})
	}
	return g.Wait()
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
		if !ok || len(hash) != 64 {
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
