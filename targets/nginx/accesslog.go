package nginx

import (
	"bufio"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"flightdeck/targets/reqlog"
)

// LogFormat is the access log format flightdeck reads: the status sent
// to the client, then, for each upstream tried, its address, status and
// response time (nginx separates several tries with ", " or " : ").
const LogFormat = `$status|$upstream_addr|$upstream_status|$upstream_response_time`

// logFormatLine is the log_format directive the README and Setup use.
const logFormatLine = `log_format flightdeck '` + LogFormat + `';`

// tail reads an access log from where it stopped, following a rotation
// (the file replaced or truncated). It is not safe for concurrent use.
type tail struct {
	path   string
	f      *os.File
	ino    uint64
	off    int64
	rest   string // a line not yet complete
	primed bool
}

// read adds every complete line written since the last read to t; the
// first read only finds the end (what came before is history).
func (t *tail) read(tally *reqlog.Tally) error {
	fi, err := os.Stat(t.path)
	if errors.Is(err, os.ErrNotExist) {
		t.primed = true // the first request creates it: read it from the start
		return nil
	}
	if err != nil {
		return err
	}
	ino := fi.Sys().(*syscall.Stat_t).Ino
	if t.f == nil || ino != t.ino || fi.Size() < t.off {
		if t.f != nil {
			// Rotated: finish the old file first.
			t.consume(t.f, tally)
			t.f.Close()
		}
		f, err := os.Open(t.path)
		if err != nil {
			return err
		}
		t.f, t.ino, t.off, t.rest = f, ino, 0, ""
		if !t.primed {
			t.primed = true
			t.off, _ = f.Seek(0, io.SeekEnd)
			return nil
		}
	}
	t.consume(t.f, tally)
	return nil
}

func (t *tail) consume(f *os.File, tally *reqlog.Tally) {
	if _, err := f.Seek(t.off, io.SeekStart); err != nil {
		return
	}
	r := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := r.ReadString('\n')
		t.off += int64(len(line))
		if err != nil {
			t.rest += line
			return
		}
		recordLine(t.rest+strings.TrimSuffix(line, "\n"), tally)
		t.rest = ""
	}
}

func (t *tail) close() {
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
}

// recordLine counts one request: each upstream it tried, with the
// status and time that upstream gave.
func recordLine(line string, tally *reqlog.Tally) {
	f := strings.Split(line, "|")
	if len(f) != 4 || f[1] == "-" || f[1] == "" {
		return
	}
	addrs, codes, times := tries(f[1]), tries(f[2]), tries(f[3])
	for i, a := range addrs {
		if !strings.Contains(a, ":") || strings.HasPrefix(a, "unix:") {
			continue
		}
		status := 0
		if i < len(codes) {
			status, _ = strconv.Atoi(codes[i])
		}
		lat := time.Duration(-1)
		if i < len(times) {
			if s, err := strconv.ParseFloat(times[i], 64); err == nil {
				lat = time.Duration(s * float64(time.Second))
			}
		}
		tally.Record(a, status, lat)
	}
}

// tries splits nginx's list of upstream tries.
func tries(s string) []string {
	s = strings.ReplaceAll(s, " : ", ", ")
	parts := strings.Split(s, ", ")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}
