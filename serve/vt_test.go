package serve

import (
	"strings"
	"unicode/utf8"

	"github.com/charmbracelet/x/ansi"
)

// screen is a small terminal emulator for the tests: it applies the
// cursor movements, erasures and scrolls the cockpit's renderer sends,
// so that a test reads the screen a person would see (the renderer only
// redraws the cells that changed, so the raw stream is not the screen).
type screen struct {
	w, h     int
	cells    [][]string
	x, y     int
	top, bot int // scroll region, inclusive
	sx, sy   int
	last     string
	pending  []byte
	p        *ansi.Parser
	state    byte
}

func newScreen(w, h int) *screen {
	s := &screen{w: w, h: h, p: ansi.NewParser()}
	s.resize(w, h)
	return s
}

func (s *screen) resize(w, h int) {
	cells := make([][]string, h)
	for y := range cells {
		cells[y] = make([]string, w)
		for x := range cells[y] {
			cells[y][x] = " "
			if y < len(s.cells) && x < len(s.cells[y]) {
				cells[y][x] = s.cells[y][x]
			}
		}
	}
	s.w, s.h, s.cells = w, h, cells
	s.top, s.bot = 0, h-1
	s.x, s.y = min(s.x, w-1), min(s.y, h-1)
}

// String is the screen's text, one line per row, trailing blanks trimmed.
func (s *screen) String() string {
	var b strings.Builder
	for _, row := range s.cells {
		b.WriteString(strings.TrimRight(strings.Join(row, ""), " "))
		b.WriteByte('\n')
	}
	return b.String()
}

func (s *screen) write(data []byte) {
	buf := append(s.pending, data...)
	s.pending = nil
	for len(buf) > 0 {
		if buf[0] >= 0x80 && !utf8.FullRune(buf) {
			break
		}
		seq, width, n, st := ansi.DecodeSequence(buf, s.state, s.p)
		if n >= len(buf) && len(seq) > 0 && seq[0] == 0x1b && incomplete(seq) {
			break
		}
		s.state = st
		buf = buf[n:]
		s.apply(seq, width)
	}
	s.pending = append([]byte(nil), buf...)
}

// incomplete reports whether an escape sequence at the end of the input
// may continue in the next read.
func incomplete(seq []byte) bool {
	if len(seq) < 2 {
		return true
	}
	switch seq[1] {
	case '[':
		f := seq[len(seq)-1]
		return len(seq) == 2 || f < 0x40 || f > 0x7e
	case ']', 'P', '_', '^':
		return !strings.HasSuffix(string(seq), "\x1b\\") && seq[len(seq)-1] != 0x07
	}
	return false
}

func (s *screen) scrollUp(n int) {
	for range n {
		copy(s.cells[s.top:s.bot], s.cells[s.top+1:s.bot+1])
		s.cells[s.bot] = blankRow(s.w)
	}
}

func (s *screen) scrollDown(n int) {
	for range n {
		copy(s.cells[s.top+1:s.bot+1], s.cells[s.top:s.bot])
		s.cells[s.top] = blankRow(s.w)
	}
}

func blankRow(w int) []string {
	r := make([]string, w)
	for i := range r {
		r[i] = " "
	}
	return r
}

func (s *screen) lineFeed() {
	if s.y == s.bot {
		s.scrollUp(1)
	} else if s.y < s.h-1 {
		s.y++
	}
}

func (s *screen) put(g string, width int) {
	if s.x >= s.w {
		s.x = 0
		s.lineFeed()
	}
	s.cells[s.y][s.x] = g
	for i := 1; i < width && s.x+i < s.w; i++ {
		s.cells[s.y][s.x+i] = ""
	}
	s.last = g
	s.x += max(width, 1)
}

func (s *screen) erase(y, from, to int) {
	for x := max(from, 0); x < min(to, s.w); x++ {
		s.cells[y][x] = " "
	}
}

func (s *screen) apply(seq []byte, width int) {
	if len(seq) == 0 {
		return
	}
	switch c := seq[0]; {
	case c == '\r':
		s.x = 0
	case c == '\n' || c == 0x0b || c == 0x0c:
		s.lineFeed()
	case c == '\b':
		s.x = max(s.x-1, 0)
	case c == '\t':
		s.x = min((s.x/8+1)*8, s.w-1)
	case c == 0x1b && len(seq) >= 2 && seq[1] == '[':
		s.csi()
	case c == 0x1b && len(seq) == 2:
		switch seq[1] {
		case '7':
			s.sx, s.sy = s.x, s.y
		case '8':
			s.x, s.y = s.sx, s.sy
		case 'M':
			if s.y == s.top {
				s.scrollDown(1)
			} else {
				s.y = max(s.y-1, 0)
			}
		case 'D':
			s.lineFeed()
		case 'E':
			s.x = 0
			s.lineFeed()
		}
	case c < 0x20 || c == 0x1b || c == 0x7f:
		// other controls and strings (OSC, DCS...) draw nothing
	default:
		s.put(string(seq), width)
	}
}

func (s *screen) csi() {
	cmd := ansi.Cmd(s.p.Command())
	ps := s.p.Params()
	arg := func(i, def int) int {
		v, _, ok := ps.Param(i, def)
		if !ok || v == 0 && def > 0 {
			return def
		}
		return v
	}
	if cmd.Prefix() == '?' {
		if mode := arg(0, 0); (mode == 1049 || mode == 47 || mode == 1047) && (cmd.Final() == 'h' || cmd.Final() == 'l') {
			for y := range s.cells {
				s.cells[y] = blankRow(s.w)
			}
		}
		return
	}
	if cmd.Prefix() != 0 || cmd.Intermediate() != 0 {
		return
	}
	n := arg(0, 1)
	switch cmd.Final() {
	case 'A':
		s.y = max(s.y-n, 0)
	case 'B':
		s.y = min(s.y+n, s.h-1)
	case 'C':
		s.x = min(s.x+n, s.w-1)
	case 'D':
		s.x = max(min(s.x, s.w-1)-n, 0)
	case 'E':
		s.x, s.y = 0, min(s.y+n, s.h-1)
	case 'F':
		s.x, s.y = 0, max(s.y-n, 0)
	case 'G', '`':
		s.x = min(n-1, s.w-1)
	case 'd':
		s.y = min(n-1, s.h-1)
	case 'H', 'f':
		s.y, s.x = min(arg(0, 1)-1, s.h-1), min(arg(1, 1)-1, s.w-1)
	case 'J':
		switch arg(0, 0) {
		case 0:
			s.erase(s.y, s.x, s.w)
			for y := s.y + 1; y < s.h; y++ {
				s.erase(y, 0, s.w)
			}
		case 1:
			s.erase(s.y, 0, s.x+1)
			for y := 0; y < s.y; y++ {
				s.erase(y, 0, s.w)
			}
		default:
			for y := range s.h {
				s.erase(y, 0, s.w)
			}
		}
	case 'K':
		switch arg(0, 0) {
		case 0:
			s.erase(s.y, s.x, s.w)
		case 1:
			s.erase(s.y, 0, s.x+1)
		default:
			s.erase(s.y, 0, s.w)
		}
	case 'X':
		s.erase(s.y, s.x, s.x+n)
	case 'b':
		for range n {
			s.put(s.last, 1)
		}
	case '@':
		row := s.cells[s.y]
		for x := s.w - 1; x >= s.x+n; x-- {
			row[x] = row[x-n]
		}
		s.erase(s.y, s.x, s.x+n)
	case 'P':
		row := s.cells[s.y]
		for x := s.x; x < s.w; x++ {
			if x+n < s.w {
				row[x] = row[x+n]
			} else {
				row[x] = " "
			}
		}
	case 'L', 'M':
		if s.y < s.top || s.y > s.bot {
			return
		}
		top := s.top
		s.top = s.y
		if cmd.Final() == 'L' {
			s.scrollDown(n)
		} else {
			s.scrollUp(n)
		}
		s.top = top
	case 'S':
		s.scrollUp(n)
	case 'T':
		s.scrollDown(n)
	case 'r':
		s.top, s.bot = arg(0, 1)-1, min(arg(1, s.h), s.h)-1
		if s.top >= s.bot {
			s.top, s.bot = 0, s.h-1
		}
		s.x, s.y = 0, 0
	}
}
