package nginx

import (
	"os"
	"path/filepath"
	"testing"

	"flightdeck/targets/reqlog"
)

func TestRecordLine(t *testing.T) {
	tests := []struct {
		line string
		want map[string][2]uint64 // addr → requests, 5xx+conn errors
	}{
		{"200|10.0.0.1:80|200|0.012", map[string][2]uint64{"10.0.0.1:80": {1, 0}}},
		{"200|10.0.0.1:80, 10.0.0.2:80|502, 200|0.000, 0.004", map[string][2]uint64{"10.0.0.1:80": {1, 1}, "10.0.0.2:80": {1, 0}}},
		{"200|10.0.0.1:80 : 10.0.0.2:80|503 : 200|0.001 : 0.002", map[string][2]uint64{"10.0.0.1:80": {1, 1}, "10.0.0.2:80": {1, 0}}},
		{"504|10.0.0.1:80|-|-", map[string][2]uint64{"10.0.0.1:80": {1, 1}}},
		{"404|-|-|-", map[string][2]uint64{}},
		{"garbage", map[string][2]uint64{}},
	}
	for _, tt := range tests {
		tl := reqlog.New()
		recordLine(tt.line, tl)
		for addr, w := range tt.want {
			s := tl.Sum([]string{addr})
			if s.Requests != w[0] || s.Status5xx+s.ConnErrors != w[1] {
				t.Errorf("%q: %s counted %+v, want %d requests, %d errors", tt.line, addr, s, w[0], w[1])
			}
		}
		if s := tl.Sum([]string{"10.0.0.1:80", "10.0.0.2:80"}); len(tt.want) == 0 && s.Requests != 0 {
			t.Errorf("%q counted %+v, want nothing", tt.line, s)
		}
	}
}

// The tail skips what the log held before its first read, reads lines as
// they complete, and follows a rotation (the file renamed and recreated).
func TestTailFollowsRotation(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "access.log")
	write := func(s string) {
		f, err := os.OpenFile(log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(s)
		f.Close()
	}
	tl := reqlog.New()
	tr := &tail{path: log}
	defer tr.close()
	count := func() uint64 {
		if err := tr.read(tl); err != nil {
			t.Fatal(err)
		}
		return tl.Sum([]string{"a:1"}).Requests
	}
	write("200|a:1|200|0.001\n")
	if n := count(); n != 0 {
		t.Errorf("history counted: %d", n)
	}
	write("200|a:1|200|0.001\n200|a:1|2")
	if n := count(); n != 1 {
		t.Errorf("after one complete line and a partial one: %d, want 1", n)
	}
	write("00|0.001\n")
	if n := count(); n != 2 {
		t.Errorf("after the partial line completed: %d, want 2", n)
	}
	write("200|a:1|200|0.001\n")
	if err := os.Rename(log, log+".1"); err != nil {
		t.Fatal(err)
	}
	write("200|a:1|500|0.250\n")
	if n := count(); n != 4 {
		t.Errorf("across the rotation: %d, want 4 (the old file's last line, then the new one)", n)
	}
	if s := tl.Sum([]string{"a:1"}); s.Status5xx != 1 {
		t.Errorf("%+v, want the 500 from the new file", s)
	}
}
