package proctest

import (
	"os/exec"
	"syscall"
	"testing"
)

func TestFreezeWaitsForEveryThread(t *testing.T) {
	// A shell busy in a loop: running until it is frozen.
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if stopped, err := allThreadsStopped(cmd.Process.Pid); err != nil || stopped {
		t.Fatalf("a running process read as stopped=%v (err %v)", stopped, err)
	}
	if err := Freeze(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if stopped, err := allThreadsStopped(cmd.Process.Pid); err != nil || !stopped {
		t.Fatalf("after Freeze: stopped=%v (err %v)", stopped, err)
	}
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}
