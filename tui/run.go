package tui

import (
	"context"
	"errors"
	"io"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/colorprofile"

	"flightdeck/themes"
)

// ProgramOptions describe the terminal a cockpit program runs on, for
// sessions that are not this process's terminal (SSH).
type ProgramOptions struct {
	// Width and Height are the terminal size (0: ask the terminal).
	Width, Height int
	// Profile is the terminal's colour profile; zero (colorprofile.Unknown)
	// lets bubbletea detect it from Env.
	Profile colorprofile.Profile
	// Env is the session's environment (TERM, NO_COLOR, COLORTERM...),
	// used by bubbletea to detect the colour profile when Profile is zero.
	Env []string
	// Context ends the program when cancelled.
	Context context.Context
}

// FrameRate is the most frames per second a cockpit draws. bubbletea's
// renderer wakes up this often even when nothing changed; 30 keeps a key
// press on screen within 33 ms and halves the idle wakeups of its default
// 60.
const FrameRate = 30

// NewProgram builds a tea.Program for m (a cockpit, or a model wrapping
// one) on arbitrary input and output, e.g. an SSH session's channel (serve
// runs every session's cockpit so). Nothing is probed on this process's
// own terminal: size, colour profile and environment come from po. Window
// changes are delivered by sending tea.WindowSizeMsg to the program. extra
// options (e.g. a message filter) are applied last.
func NewProgram(m tea.Model, in io.Reader, out io.Writer, po ProgramOptions, extra ...tea.ProgramOption) *tea.Program {
	opts := []tea.ProgramOption{tea.WithInput(in), tea.WithOutput(out), tea.WithoutSignalHandler(), tea.WithFPS(FrameRate)}
	if po.Env != nil {
		opts = append(opts, tea.WithEnvironment(po.Env))
	}
	if po.Profile != 0 {
		opts = append(opts, tea.WithColorProfile(po.Profile))
	}
	if po.Width > 0 && po.Height > 0 {
		opts = append(opts, tea.WithWindowSize(po.Width, po.Height))
	}
	if po.Context != nil {
		opts = append(opts, tea.WithContext(po.Context))
	}
	return tea.NewProgram(m, append(opts, extra...)...)
}

// Run runs a cockpit on this process's terminal (alternate screen) until
// the operator quits or ctx ends. It returns the program's error, if any.
func Run(ctx context.Context, backend Backend, opts Options) error {
	if opts.Context == nil {
		opts.Context = ctx
	}
	m := New(backend, opts)
	defer m.Close()
	p := tea.NewProgram(m, tea.WithContext(ctx), tea.WithFPS(FrameRate))
	_, err := p.Run()
	if errors.Is(err, tea.ErrProgramKilled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// PickTheme chooses the theme of a session: mono when colour is off
// (noColor from --no-color, NO_COLOR set, or TERM=dumb in getenv — the
// local os.Getenv or an SSH session's environment), else the config's.
func PickTheme(cfg Config, noColor bool, getenv func(string) string) (themes.Theme, error) {
	if noColor || getenv("NO_COLOR") != "" || getenv("TERM") == "dumb" {
		return themes.NoColor(), nil
	}
	return cfg.LoadTheme()
}
