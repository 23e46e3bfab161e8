package themes

import (
	"flightdeck/internal/fsutil"
	"fmt"
	"image/color"
	"regexp"
	"strconv"
	"strings"

	"charm.land/lipgloss/v2"
	"gopkg.in/yaml.v3"
)

// Load reads a theme file. A theme file starts from a built-in palette
// (base, default "default") and overrides any semantic colour:
//
//	name: night-shift
//	base: dark
//	colors:
//	  ok: "#00d787"      # hex
//	  breach: "9"        # ANSI 0-255
//	  header_bg: none    # terminal default
//
// Errors name the file, line and column.
func Load(path string) (Theme, error) {
	b, err := fsutil.ReadFileLimit(path, 1<<20)
	if err != nil {
		return Theme{}, fmt.Errorf("read theme: %w", err)
	}
	return Parse(path, b)
}

// Parse reads a theme file's content; name is used in error messages.
func Parse(name string, data []byte) (Theme, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return Theme{}, fmt.Errorf("%s: %w", name, yamlErr(err))
	}
	t := Default()
	if len(doc.Content) == 0 {
		return t, nil
	}
	root := doc.Content[0]
	at := func(n *yaml.Node, format string, args ...any) error {
		return fmt.Errorf("%s:%d:%d: %s", name, n.Line, n.Column, fmt.Sprintf(format, args...))
	}
	if root.Kind != yaml.MappingNode {
		return Theme{}, at(root, "a theme file is a mapping with name, base and colors")
	}
	var colors *yaml.Node
	themeName := ""
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "name":
			themeName = v.Value
		case "base":
			base, err := ByName(v.Value)
			if err != nil {
				return Theme{}, at(v, "%v", err)
			}
			t = base
		case "colors":
			if v.Kind != yaml.MappingNode {
				return Theme{}, at(v, "colors must be a mapping of colour name to value")
			}
			colors = v
		default:
			return Theme{}, at(k, "unknown key %q (want name, base, colors)", k.Value)
		}
	}
	if colors != nil {
		byName := map[string]*color.Color{}
		for _, c := range t.colors() {
			byName[c.name] = c.ptr
		}
		for i := 0; i+1 < len(colors.Content); i += 2 {
			k, v := colors.Content[i], colors.Content[i+1]
			ptr, ok := byName[k.Value]
			if !ok {
				return Theme{}, at(k, "unknown colour %q (want one of %s)", k.Value, strings.Join(ColorNames(), ", "))
			}
			c, err := ParseColor(v.Value)
			if err != nil {
				return Theme{}, at(v, "%s: %v", k.Value, err)
			}
			*ptr = c
		}
	}
	if themeName != "" {
		t.Name = themeName
	} else {
		t.Name = name
	}
	return t, nil
}

var hexColor = regexp.MustCompile(`^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$`)

// ParseColor reads "#rgb", "#rrggbb", an ANSI number 0-255, or "none" /
// "default" (the terminal's default colour, returned as nil).
func ParseColor(s string) (color.Color, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "none" || s == "default" || s == "":
		return nil, nil
	case hexColor.MatchString(s):
		return lipgloss.Color(s), nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 255 {
		return nil, fmt.Errorf("bad colour %q (want #rrggbb, #rgb, 0-255 or none)", s)
	}
	return lipgloss.Color(s), nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlErr turns "yaml: line N: msg" into "N: msg" so that callers print file:N.
func yamlErr(err error) error {
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		return fmt.Errorf("%s: %s", m[1], m[2])
	}
	return err
}
