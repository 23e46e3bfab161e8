package themes

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"charm.land/lipgloss/v2"
)

func TestByName(t *testing.T) {
	for _, n := range Names() {
		th, err := ByName(n)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if th.Name != n {
			t.Errorf("ByName(%q).Name = %q", n, th.Name)
		}
		if got, want := th.Mono(), n == "mono"; got != want {
			t.Errorf("%s: Mono() = %v, want %v", n, got, want)
		}
	}
	if _, err := ByName("solarized"); err == nil || !strings.Contains(err.Error(), "high-contrast") {
		t.Errorf("unknown theme error %v should list the known ones", err)
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name, file string
		check      func(t *testing.T, th Theme)
		err        string
	}{
		{name: "overrides on a base", file: "name: night\nbase: dark\ncolors:\n  ok: \"#00ff00\"\n  breach: \"9\"\n  header_bg: none\n",
			check: func(t *testing.T, th Theme) {
				if th.Name != "night" || th.OK != lipgloss.Color("#00ff00") || th.Breach != lipgloss.Color("9") || th.HeaderBG != nil {
					t.Errorf("got %+v", th)
				}
				if th.Warn != Dark().Warn {
					t.Errorf("warn %v should come from the dark base", th.Warn)
				}
			}},
		{name: "empty file is the default", file: "", check: func(t *testing.T, th Theme) {
			if th.OK != Default().OK {
				t.Errorf("ok = %v", th.OK)
			}
		}},
		{name: "unknown colour", file: "colors:\n  okay: \"#fff\"\n", err: "theme.yaml:2:3: unknown colour \"okay\""},
		{name: "bad value", file: "colors:\n  ok: \"#ggg\"\n", err: "theme.yaml:2:7: ok: bad colour"},
		{name: "unknown base", file: "base: neon\n", err: "theme.yaml:1:7: unknown theme \"neon\""},
		{name: "unknown key", file: "colours: {}\n", err: "theme.yaml:1:1: unknown key \"colours\""},
		{name: "syntax error", file: "colors:\n  ok: [\n", err: "theme.yaml:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "theme.yaml")
			if err := os.WriteFile(p, []byte(tc.file), 0o644); err != nil {
				t.Fatal(err)
			}
			th, err := Load(p)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, th)
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("missing file should fail")
	}
}
