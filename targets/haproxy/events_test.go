package haproxy

import (
	"testing"
	"time"
)

func TestParseLogLine(t *testing.T) {
	tests := []struct {
		line   string
		b, s   string
		status int
		tr     time.Duration
		ok     bool
	}{
		{"app/web1 200 12", "app", "web1", 200, 12 * time.Millisecond, true},
		{"<134>Dec  6 12:00:00 haproxy[1]: app_cohort/green 503 -1", "app_cohort", "green", 503, -1, true},
		{"web/<NOSRV> 503 -1", "web", "<NOSRV>", 503, -1, true},
		{"app/web1 200", "", "", 0, 0, false},
		{"app-web1 200 3", "", "", 0, 0, false},
		{"app/web1 OK 3", "", "", 0, 0, false},
	}
	for _, tt := range tests {
		b, s, status, tr, ok := parseLogLine(tt.line)
		if ok != tt.ok || b != tt.b || s != tt.s || status != tt.status || tr != tt.tr {
			t.Errorf("parseLogLine(%q) = %q %q %d %s %v, want %q %q %d %s %v", tt.line, b, s, status, tr, ok, tt.b, tt.s, tt.status, tt.tr, tt.ok)
		}
	}
}

func TestSplitAnswers(t *testing.T) {
	got := splitAnswers("\nNo such server.\n\n\n")
	if len(got) != 3 || got[0] != "" || got[1] != "No such server." || got[2] != "" {
		t.Errorf("splitAnswers = %q", got)
	}
	if q := Quote(`a b;c\d`); q != `a\ b\;c\\d` {
		t.Errorf("Quote = %q", q)
	}
}
