package main

import (
	"errors"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	fdssh "flightdeck/targets/ssh"
)

// keeperCommand starts this binary's SSH connection keeper (ssh: persist),
// or nil when the binary cannot be found.
func keeperCommand() []string {
	exe, err := os.Executable()
	if err != nil {
		return nil
	}
	return []string{exe, "ssh-keeper"}
}

// newSSHKeeperCmd runs the SSH connection keeper that `ssh: {persist: …}`
// starts on its own (targets/ssh/keeper.go); it is not run by hand.
func newSSHKeeperCmd() *cobra.Command {
	var dir string
	var persist time.Duration
	c := &cobra.Command{
		Use:    "ssh-keeper",
		Short:  "Keep SSH connections open between commands (started by ssh: persist)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if dir == "" || persist <= 0 {
				return badInput(errors.New("ssh-keeper needs --dir and a positive --persist"))
			}
			// SIGINT and SIGTERM end it (main's interrupts cancel the
			// context), without a run's messages; it has no terminal.
			quietInterrupts(c.Context())
			signal.Ignore(syscall.SIGHUP)
			err := fdssh.ServeKeeper(c.Context(), fdssh.KeeperOptions{Dir: dir, Persist: persist, Ready: c.OutOrStdout(), Log: c.ErrOrStderr(),
				Held: limitMemory})
			if errors.Is(err, fdssh.ErrKeeperRunning) {
				return nil // another keeper serves the directory: clients use it
			}
			return err
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "the keeper's private control directory")
	c.Flags().DurationVar(&persist, "persist", 0, "exit after this long without a client")
	return c
}
