package tui

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseConfig feeds arbitrary files to the cockpit's config parser:
// it must not panic or hang, every error names the file, and a config it
// accepts has a key map without conflicts and a theme that loads. Run for
// longer with
//
//	go test -run '^$' -fuzz FuzzParseConfig -fuzztime 1m ./tui/
func FuzzParseConfig(f *testing.F) {
	for _, seed := range []string{
		"theme: dark\nascii: true\nkeys:\n  pause: [\"p\"]\n  rollback: [\"r\", \"R\"]\n  help: []\n",
		"theme: mono\n",
		"keys:\n  pause: x\n  resume: ~\n",
		"keys:\n  pause: [\"r\"]\n",
		"theme: [a]\n",
		"ascii: maybe\n",
		"colour: red\n",
		"- a\n- b\n",
		"theme: own.yaml\n",
		"keys: {pause: [{a: b}]}\n",
		"\t\x00",
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	// A theme file beside the config, so that a path theme can load.
	if err := os.WriteFile(filepath.Join(dir, "own.yaml"), []byte("name: own\n"), 0o600); err != nil {
		f.Fatal(err)
	}
	name := filepath.Join(dir, "config.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if strings.Contains(string(data), "/") || strings.Contains(string(data), `\`) {
			return // a theme path outside the test's directory: not this test's business
		}
		cfg, err := ParseConfig(name, data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), name) && !strings.Contains(err.Error(), "theme") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if err := cfg.Keys.Conflicts(); err != nil {
			t.Fatalf("accepted conflicting keys: %v", err)
		}
		if _, err := cfg.LoadTheme(); err != nil {
			t.Fatalf("accepted a theme that does not load: %v", err)
		}
	})
}

// A theme path that never ends (or a huge file) is refused, not read for
// ever: the cockpit would hang at start and grow without bound.
func TestThemeFileIsBounded(t *testing.T) {
	_, err := ParseConfig(filepath.Join(t.TempDir(), "config.yaml"), []byte("theme: /dev/zero\n"))
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("theme /dev/zero: %v", err)
	}
	if _, err := LoadConfig("/dev/zero"); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("config /dev/zero: %v", err)
	}
}
