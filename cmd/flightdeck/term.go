package main

import (
	"os"

	"github.com/spf13/cobra"
	"github.com/charmbracelet/x/term"

	"flightdeck/targets/demo"
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

// runDemoCockpit opens the cockpit on the demo fleet.
func runDemoCockpit(c *cobra.Command, g *globals, opts demo.Options) error {
	return runDemoHeadless(c.Context(), c.OutOrStdout(), g, opts)
}
