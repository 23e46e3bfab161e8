package ssh

import (
	"os/exec"
	"testing"
)

func TestQuoteRoundTripsThroughShell(t *testing.T) {
	cases := []struct {
		name, in string
		literal  bool // expected to be left unquoted
	}{
		{"empty", "", false},
		{"plain", "release-20260101", true},
		{"path", "/srv/app/releases/r1", true},
		{"space", "two words", false},
		{"single quote", "it's", false},
		{"only quotes", "''", false},
		{"double quotes", `say "hi"`, false},
		{"command substitution", "$(touch /tmp/pwned)", false},
		{"backticks", "`id`", false},
		{"variable", "$HOME", false},
		{"semicolon", "; rm -rf /", false},
		{"newline", "a\nb", false},
		{"backslash", `a\b\`, false},
		{"glob", "*", false},
		{"tilde", "~", false},
		{"bang", "!x", false},
		{"env assignment", "K=V", true},
		{"unicode", "héllo wörld", false},
		{"dash", "-rf", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := Quote(tc.in)
			if tc.literal && q != tc.in {
				t.Errorf("Quote(%q) = %q, want it unchanged", tc.in, q)
			}
			out, err := exec.Command("sh", "-c", "printf %s "+q).Output()
			if err != nil {
				t.Fatalf("sh -c printf %%s %s: %v", q, err)
			}
			if string(out) != tc.in {
				t.Errorf("shell read %q back as %q (quoted %q)", tc.in, out, q)
			}
		})
	}
}

func TestQuoteArgsKeepsWordsApart(t *testing.T) {
	args := []string{"a b", "", "c'd", "$(x)"}
	out, err := exec.Command("sh", "-c", `for a in `+QuoteArgs(args...)+`; do printf '<%s>' "$a"; done`).Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "<a b><><c'd><$(x)>"; string(out) != want {
		t.Errorf("got %q, want %q", out, want)
	}
}

func TestEnvPrefixRejectsBadNames(t *testing.T) {
	for _, name := range []string{"", "1A", "A-B", "A B", "A=B", "$(x)"} {
		if _, err := envPrefix([]string{name}, map[string]string{name: "v"}); err == nil {
			t.Errorf("envPrefix accepted name %q", name)
		}
	}
	got, err := envPrefix([]string{"A", "B_2"}, map[string]string{"A": "x y", "B_2": "z"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `env 'A=x y' B_2=z`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
