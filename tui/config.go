package tui

import (
	"flightdeck/internal/fsutil"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"flightdeck/themes"
)

// Config is the user's cockpit configuration, read from
// $XDG_CONFIG_HOME/flightdeck/config.yaml (DefaultConfigPath):
//
//	theme: dark              # default | dark | light | high-contrast | mono | path/to/theme.yaml
//	ascii: false             # no Unicode glyphs
//	keys:                    # action: [keys...]; an empty list unbinds
//	  pause: ["p"]
//	  rollback: ["r", "R"]
//	  help: []
type Config struct {
	// Path is the file the config was read from.
	Path string
	// Theme is a built-in palette name or a theme file path ("" = default).
	Theme string
	// ASCII, when set, overrides the glyph choice.
	ASCII *bool
	// Keys is the key map with the file's bindings applied.
	Keys KeyMap
}

// DefaultConfigPath is $XDG_CONFIG_HOME/flightdeck/config.yaml, or
// ~/.config/flightdeck/config.yaml. getenv is os.Getenv, or an SSH
// session's environment.
func DefaultConfigPath(getenv func(string) string) string {
	if d := getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "flightdeck", "config.yaml")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "flightdeck", "config.yaml")
	}
	return ""
}

// LoadConfig reads a config file. A missing file is an error wrapping
// fs.ErrNotExist (callers reading the default path ignore it with
// errors.Is). Other errors name file:line:column.
func LoadConfig(path string) (Config, error) {
	b, err := fsutil.ReadFileLimit(path, 1<<20)
	if err != nil {
		return Config{Keys: DefaultKeyMap()}, fmt.Errorf("read cockpit config: %w", err)
	}
	return ParseConfig(path, b)
}

// ParseConfig reads a config file's content; name is used in errors.
func ParseConfig(name string, data []byte) (Config, error) {
	cfg := Config{Path: name, Keys: DefaultKeyMap()}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		msg := err.Error()
		if m := regexp.MustCompile(`^yaml: line (\d+): (.*)$`).FindStringSubmatch(msg); m != nil {
			return cfg, fmt.Errorf("%s:%s: %s", name, m[1], m[2])
		}
		return cfg, fmt.Errorf("%s: %s", name, msg)
	}
	if len(doc.Content) == 0 {
		return cfg, nil
	}
	at := func(n *yaml.Node, format string, args ...any) error {
		return fmt.Errorf("%s:%d:%d: %s", name, n.Line, n.Column, fmt.Sprintf(format, args...))
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return cfg, at(root, "the config is a mapping (theme, ascii, keys)")
	}
	var keysNode *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "theme":
			if v.Kind != yaml.ScalarNode {
				return cfg, at(v, "theme must be a name or a file path")
			}
			cfg.Theme = v.Value
		case "ascii":
			var b bool
			if err := v.Decode(&b); err != nil {
				return cfg, at(v, "ascii must be true or false")
			}
			cfg.ASCII = &b
		case "keys":
			if v.Kind != yaml.MappingNode {
				return cfg, at(v, "keys must map an action to a list of keys, e.g. pause: [\"p\"]")
			}
			keysNode = v
		default:
			return cfg, at(k, "unknown setting %q (want theme, ascii, keys)", k.Value)
		}
	}
	if keysNode != nil {
		for i := 0; i+1 < len(keysNode.Content); i += 2 {
			k, v := keysNode.Content[i], keysNode.Content[i+1]
			var keys []string
			switch v.Kind {
			case yaml.SequenceNode:
				if err := v.Decode(&keys); err != nil {
					return cfg, at(v, "%s: keys must be strings", k.Value)
				}
			case yaml.ScalarNode:
				if v.Tag == "!!null" {
					keys = nil
				} else {
					keys = []string{v.Value}
				}
			default:
				return cfg, at(v, "%s: want a list of keys", k.Value)
			}
			if err := cfg.Keys.Rebind(Action(k.Value), keys...); err != nil {
				return cfg, at(k, "%v", err)
			}
		}
		if err := cfg.Keys.Conflicts(); err != nil {
			return cfg, at(keysNode, "%v", err)
		}
	}
	if cfg.Theme != "" {
		if _, err := cfg.LoadTheme(); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// LoadTheme returns the configured theme: a built-in palette by name, or
// a theme file (a path relative to the config file's directory).
func (c Config) LoadTheme() (themes.Theme, error) {
	if c.Theme == "" {
		return themes.Default(), nil
	}
	if !strings.ContainsAny(c.Theme, `/\`) && !strings.HasSuffix(c.Theme, ".yaml") && !strings.HasSuffix(c.Theme, ".yml") {
		t, err := themes.ByName(c.Theme)
		if err != nil {
			if c.Path == "" {
				return t, err
			}
			return t, fmt.Errorf("%s: theme: %w", c.Path, err)
		}
		return t, nil
	}
	p := c.Theme
	if !filepath.IsAbs(p) && c.Path != "" {
		p = filepath.Join(filepath.Dir(c.Path), p)
	}
	return themes.Load(p)
}
