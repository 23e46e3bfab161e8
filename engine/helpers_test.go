package engine

import (
	"errors"
	"os/exec"
	"testing"
)

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// deadPID returns the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}
