package tui

import (
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/colorprofile"
	"github.com/charmbracelet/x/ansi"

	"flightdeck/internal/syncbuf"
	"flightdeck/themes"
)

// TestNewProgramOnStreams runs the cockpit on plain streams, the way an
// SSH session does: size and colour profile come from the options, keys
// from the input stream.
func TestNewProgramOnStreams(t *testing.T) {
	for _, tc := range []struct {
		profile  colorprofile.Profile
		truecol  bool
		anyColor bool
	}{
		{colorprofile.TrueColor, true, true},
		{colorprofile.ANSI, false, true},
		{colorprofile.Ascii, false, false},
	} {
		t.Run(tc.profile.String(), func(t *testing.T) {
			m, _ := loaded(finishedRun(), 100, 30, func(o *Options) { o.Theme = themes.Dark() })
			in, inW := io.Pipe()
			out := &syncbuf.Buffer{}
			p := NewProgram(m, in, out, ProgramOptions{Width: 100, Height: 30, Profile: tc.profile, Env: []string{"TERM=xterm-256color"}})
			done := make(chan error, 1)
			go func() {
				_, err := p.Run()
				done <- err
			}()
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(ansi.Strip(out.String()), "SUCCEEDED") {
				if time.Now().After(deadline) {
					t.Fatalf("no frame after 10s: %q", out.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
			if _, err := inW.Write([]byte("q")); err != nil { // no run in progress: q quits
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("q did not quit the program")
			}
			inW.Close()
			s := out.String()
			if got := strings.Contains(s, "38;2;"); got != tc.truecol {
				t.Errorf("24-bit colour in output = %v, want %v for %s", got, tc.truecol, tc.profile)
			}
			if got := hasColor(s); got != tc.anyColor {
				t.Errorf("colour in output = %v, want %v for %s", got, tc.anyColor, tc.profile)
			}
		})
	}
}

var sgr = regexp.MustCompile(`\x1b\[([0-9;:]*)m`)

// hasColor reports whether any SGR sequence in s sets a colour.
func hasColor(s string) bool {
	for _, m := range sgr.FindAllStringSubmatch(s, -1) {
		for _, p := range strings.FieldsFunc(m[1], func(r rune) bool { return r == ';' || r == ':' }) {
			n, err := strconv.Atoi(p)
			if err != nil {
				continue
			}
			if (n >= 30 && n <= 38) || (n >= 40 && n <= 48) || (n >= 90 && n <= 97) || (n >= 100 && n <= 107) {
				return true
			}
		}
	}
	return false
}
