package engine

import (
	"strings"
	"testing"
	"time"
)

// TestRevisionLineIsOneLine: whatever a name holds (an SSH operator's,
// a forged FLIGHTDECK_ACTOR), a revisions.log record stays one line of
// single-word fields.
func TestRevisionLineIsOneLine(t *testing.T) {
	for _, actor := range []string{"alice", "two words", "m\nallory", "x\r\n2026 deploy", "\x1b]0;t\x07", "bad\xffutf8", "a\u2028b", "a\u202eb"} {
		line := RevisionLine(time.Unix(0, 0), SwitchInfo{Release: "r2", Previous: "r1", Actor: actor})
		fields := strings.Split(line, " ")
		if len(fields) != 5 || !strings.HasPrefix(fields[4], "actor=") {
			t.Fatalf("actor %q: line %q", actor, line)
		}
		for _, r := range line {
			if r < ' ' || r == 0x7f || r == '\u2028' || r == '\u202e' || r == '\ufffd' {
				t.Fatalf("actor %q: line %q holds %U", actor, line, r)
			}
		}
	}
}

func TestCheckActorName(t *testing.T) {
	for name, ok := range map[string]bool{
		"alice": true, "jean-luc.picard": true, "zoë": true,
		"": false, "a b": false, "a\nb": false, "a\tb": false, "\x1b[2J": false, "bad\xff": false,
		strings.Repeat("x", 65): false, "a\u202eb": false,
	} {
		if err := CheckActorName(name); (err == nil) != ok {
			t.Errorf("CheckActorName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}
