package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"flightdeck/engine"
)

// execWaitDelay bounds how long Exec waits for output after the shell has
// exited or was killed (a background child may still hold the pipe).
const execWaitDelay = 2 * time.Second

// Exec runs req.Command with /bin/sh -c on this machine, in its own process
// group, with req.Env added to the environment. The working directory is
// req.Dir, else the path of release RELEASE_VERSION when req.Env sets it,
// else deploy_to. Combined output streams to req.Output. When req.Timeout
// passes or ctx is done, the whole process group is killed. A non-zero exit
// is an error carrying the exit status.
func (h *Host) Exec(ctx context.Context, req engine.ExecRequest) error {
	if req.Command == "" {
		return fmt.Errorf("exec on %s: empty command", h.Name())
	}
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, req.Timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", req.Command)
	cmd.Dir = req.Dir
	if cmd.Dir == "" {
		cmd.Dir = h.DeployTo()
		if v := req.Env["RELEASE_VERSION"]; v != "" {
			cmd.Dir = h.ReleasePath(v)
		}
	}
	cmd.Env = os.Environ()
	for k, v := range req.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out := req.Output
	if out == nil {
		out = io.Discard
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The shell leads its own group (pgid = pid): kill all of it.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = execWaitDelay
	err := cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) {
		// The command exited successfully; only a background child kept
		// the output open.
		err = nil
	}
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		if errors.Is(cerr, context.DeadlineExceeded) && req.Timeout > 0 {
			return fmt.Errorf("exec on %s: timed out after %v: %w", h.Name(), req.Timeout, err)
		}
		return fmt.Errorf("exec on %s: %w (%w)", h.Name(), err, cerr)
	}
	return fmt.Errorf("exec on %s: %w", h.Name(), err)
}
