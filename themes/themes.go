// Package themes holds the cockpit's colour palettes. A Theme names colours
// by meaning (ok, warn, breach, accent...), never by hue, so that a palette
// can be swapped without touching the interface. The default palette uses
// the terminal's own 16 ANSI colours, so it follows the user's terminal
// scheme; dark, light and high-contrast use fixed colours; mono has none
// (NO_COLOR, --no-color, dumb terminals).
//
// Colours are plain color.Color values: the program that renders them
// (bubbletea) downsamples them to the colour profile of the terminal it
// writes to, so nothing here probes a terminal.
package themes

import (
	"fmt"
	"image/color"
	"sort"

	"charm.land/lipgloss/v2"
)

// Theme is a palette of semantic colours. A nil colour means "the
// terminal's default" (no colour escape is written).
type Theme struct {
	// Name is the palette's name (default, dark, light, high-contrast, mono
	// or the name of a theme file).
	Name string

	// Text is ordinary text; Muted is secondary text (timestamps, hints).
	Text  color.Color
	Muted color.Color
	// Accent marks titles, the focused pane and key names.
	Accent color.Color
	// Border draws pane rules; FocusBorder the focused pane's rule.
	Border      color.Color
	FocusBorder color.Color
	// Selected is the background of the selected row, SelectedText its text.
	Selected     color.Color
	SelectedText color.Color
	// OK, Warn and Breach colour SLO values and host health.
	OK     color.Color
	Warn   color.Color
	Breach color.Color
	// Danger marks destructive actions and rollbacks.
	Danger color.Color
	// Info marks in-progress work (preparing, switching).
	Info color.Color
	// HeaderBG is the background of the header bar (nil: none).
	HeaderBG color.Color
}

// Mono reports whether the theme has no colour at all. The interface then
// marks the selection with reverse video instead of a background.
func (t Theme) Mono() bool {
	for _, c := range t.colors() {
		if *c.ptr != nil {
			return false
		}
	}
	return true
}

type namedColor struct {
	name string
	ptr  *color.Color
}

// colors lists the theme's colours by the names theme files use.
func (t *Theme) colors() []namedColor {
	return []namedColor{
		{"text", &t.Text}, {"muted", &t.Muted}, {"accent", &t.Accent},
		{"border", &t.Border}, {"focus_border", &t.FocusBorder},
		{"selected", &t.Selected}, {"selected_text", &t.SelectedText},
		{"ok", &t.OK}, {"warn", &t.Warn}, {"breach", &t.Breach},
		{"danger", &t.Danger}, {"info", &t.Info}, {"header_bg", &t.HeaderBG},
	}
}

// ColorNames returns the names a theme file may set, sorted.
func ColorNames() []string {
	var t Theme
	var out []string
	for _, c := range t.colors() {
		out = append(out, c.name)
	}
	sort.Strings(out)
	return out
}

// Default uses the terminal's 16 ANSI colours.
func Default() Theme {
	return Theme{
		Name:         "default",
		Muted:        lipgloss.BrightBlack,
		Accent:       lipgloss.Cyan,
		Border:       lipgloss.BrightBlack,
		FocusBorder:  lipgloss.Cyan,
		Selected:     lipgloss.Blue,
		SelectedText: lipgloss.BrightWhite,
		OK:           lipgloss.Green,
		Warn:         lipgloss.Yellow,
		Breach:       lipgloss.Red,
		Danger:       lipgloss.BrightRed,
		Info:         lipgloss.Blue,
	}
}

// Dark is a palette for dark backgrounds.
func Dark() Theme {
	return Theme{
		Name:         "dark",
		Text:         lipgloss.Color("#d0d0d0"),
		Muted:        lipgloss.Color("#7a7a7a"),
		Accent:       lipgloss.Color("#5fd7ff"),
		Border:       lipgloss.Color("#4e4e4e"),
		FocusBorder:  lipgloss.Color("#5fd7ff"),
		Selected:     lipgloss.Color("#303a4a"),
		SelectedText: lipgloss.Color("#ffffff"),
		OK:           lipgloss.Color("#5fd75f"),
		Warn:         lipgloss.Color("#ffd75f"),
		Breach:       lipgloss.Color("#ff5f5f"),
		Danger:       lipgloss.Color("#ff5f87"),
		Info:         lipgloss.Color("#87afff"),
		HeaderBG:     lipgloss.Color("#262626"),
	}
}

// Light is a palette for light backgrounds.
func Light() Theme {
	return Theme{
		Name:         "light",
		Text:         lipgloss.Color("#1c1c1c"),
		Muted:        lipgloss.Color("#6c6c6c"),
		Accent:       lipgloss.Color("#005f87"),
		Border:       lipgloss.Color("#a8a8a8"),
		FocusBorder:  lipgloss.Color("#005f87"),
		Selected:     lipgloss.Color("#d7e4f5"),
		SelectedText: lipgloss.Color("#000000"),
		OK:           lipgloss.Color("#008700"),
		Warn:         lipgloss.Color("#af5f00"),
		Breach:       lipgloss.Color("#d70000"),
		Danger:       lipgloss.Color("#af0000"),
		Info:         lipgloss.Color("#005fd7"),
		HeaderBG:     lipgloss.Color("#e4e4e4"),
	}
}

// HighContrast uses saturated colours on black and a bright selection.
func HighContrast() Theme {
	return Theme{
		Name:         "high-contrast",
		Text:         lipgloss.Color("#ffffff"),
		Muted:        lipgloss.Color("#c0c0c0"),
		Accent:       lipgloss.Color("#00ffff"),
		Border:       lipgloss.Color("#ffffff"),
		FocusBorder:  lipgloss.Color("#ffff00"),
		Selected:     lipgloss.Color("#ffff00"),
		SelectedText: lipgloss.Color("#000000"),
		OK:           lipgloss.Color("#00ff00"),
		Warn:         lipgloss.Color("#ffff00"),
		Breach:       lipgloss.Color("#ff0000"),
		Danger:       lipgloss.Color("#ff00ff"),
		Info:         lipgloss.Color("#00afff"),
		HeaderBG:     lipgloss.Color("#000000"),
	}
}

// NoColor has no colours: for NO_COLOR, --no-color and dumb terminals.
func NoColor() Theme { return Theme{Name: "mono"} }

// Names lists the built-in palettes.
func Names() []string { return []string{"default", "dark", "light", "high-contrast", "mono"} }

// ByName returns a built-in palette.
func ByName(name string) (Theme, error) {
	switch name {
	case "", "default", "ansi":
		return Default(), nil
	case "dark":
		return Dark(), nil
	case "light":
		return Light(), nil
	case "high-contrast", "highcontrast", "hc":
		return HighContrast(), nil
	case "mono", "none", "no-color":
		return NoColor(), nil
	}
	return Theme{}, fmt.Errorf("unknown theme %q (want one of %v, or a theme file)", name, Names())
}
