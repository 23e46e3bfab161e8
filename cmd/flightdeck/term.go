package main

import (
	"os"

	"github.com/charmbracelet/x/term"
	"github.com/spf13/cobra"
)

// interactive reports whether the cockpit can open: stdout is a terminal
// that is not dumb.
func interactive(c *cobra.Command) bool {
	if os.Getenv("TERM") == "dumb" {
		return false
	}
	f, ok := c.OutOrStdout().(*os.File)
	return ok && term.IsTerminal(f.Fd())
}
