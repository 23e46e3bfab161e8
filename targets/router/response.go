package router

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
)

// The response reader: a backend's status line and header fields, parsed
// into a proxyWriter's scratch space, and what they say about the body's
// framing (RFC 9112 §6.3) and the connection.

// field is one response header (or trailer) field: a canonical key and
// the value's bounds in proxyWriter.hdrBuf.
type field struct {
	key        string
	start, end int
}

// bodyKind is how a response body is delimited.
type bodyKind uint8

const (
	bodyNone bodyKind = iota
	bodyFixed
	bodyChunked
	bodyUntilClose
)

// readHead reads a status line and its header fields into pw.fields and
// pw.hdrBuf. gotBytes reports whether anything at all was read.
func (pw *proxyWriter) readHead(br *bufio.Reader) (code, minor int, gotBytes bool, err error) {
	pw.fields = pw.fields[:0]
	pw.hdrBuf = pw.hdrBuf[:0]
	budget := maxResponseHeaderBytes
	line, err := pw.readLine(br, &budget)
	if len(line) > 0 || (err == nil) {
		gotBytes = true
	}
	if err != nil {
		return 0, 0, gotBytes, err
	}
	code, minor, ok := parseStatusLine(line)
	if !ok {
		return 0, 0, true, errMalformedReply
	}
	if err := pw.readFields(br, &budget); err != nil {
		return 0, 0, true, err
	}
	return code, minor, true, nil
}

// readFields reads header (or trailer) fields up to the empty line.
func (pw *proxyWriter) readFields(br *bufio.Reader, budget *int) error {
	for {
		line, err := pw.readLine(br, budget)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if len(line) == 0 {
			return nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return errMalformedReply // includes obsolete line folding
		}
		name := line[:colon]
		if !canonicalizeName(name) {
			return errMalformedReply
		}
		value := trimOWS(line[colon+1:])
		if !validFieldValue(value) {
			return errMalformedReply
		}
		start := len(pw.hdrBuf)
		pw.hdrBuf = append(pw.hdrBuf, value...)
		pw.fields = append(pw.fields, field{key: internKey(name), start: start, end: len(pw.hdrBuf)})
	}
}

// readLine returns the next line without its line ending, charging its
// length to *budget. The slice is valid until the next read.
func (pw *proxyWriter) readLine(br *bufio.Reader, budget *int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		// A line longer than the read buffer: collect it.
		pw.long = append(pw.long[:0], line...)
		for err == bufio.ErrBufferFull && len(pw.long) <= *budget {
			line, err = br.ReadSlice('\n')
			pw.long = append(pw.long, line...)
		}
		line = pw.long
	}
	*budget -= len(line)
	if *budget < 0 {
		return nil, errHeaderTooLarge
	}
	if err != nil {
		return line, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// parseStatusLine parses "HTTP/1.x NNN[ reason]".
func parseStatusLine(line []byte) (code, minor int, ok bool) {
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' {
		return 0, 0, false
	}
	switch line[7] {
	case '0':
	case '1':
		minor = 1
	default:
		return 0, 0, false
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, 0, false
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 || (len(line) > 12 && line[12] != ' ') {
		return 0, 0, false
	}
	return code, minor, true
}

// framing is what a response head says about its body and connection.
type framing struct {
	kind        bodyKind
	length      int64
	reusable    bool
	invalid     bool
	eventStream bool
	dropLength  bool // do not pass Content-Length on (chunked wins)
}

// frame decides how the response to a method request with this status is
// delimited (RFC 9112 §6.3) and whether the connection can carry another
// request afterwards.
func (pw *proxyWriter) frame(method string, code, minor int) framing {
	f := framing{reusable: minor == 1}
	var te, cl []byte
	clCount := 0
	for _, fl := range pw.fields {
		v := pw.hdrBuf[fl.start:fl.end]
		switch fl.key {
		case "Connection":
			if hasToken(v, "close") {
				f.reusable = false
			}
		case "Transfer-Encoding":
			te = v // the last one's last coding decides
		case "Content-Length":
			if clCount > 0 && !bytes.Equal(v, cl) {
				f.invalid = true
			}
			cl = v
			clCount++
		case "Content-Type":
			f.eventStream = isEventStream(v)
		}
	}
	if method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified || code < 200 {
		f.kind = bodyNone
		return f
	}
	switch {
	case te != nil:
		f.dropLength = true
		if clCount > 0 {
			f.reusable = false // RFC 9112 §6.1: both is a smuggling smell
		}
		if lastTokenIs(te, "chunked") {
			f.kind = bodyChunked
		} else {
			f.kind = bodyUntilClose
			f.reusable = false
		}
		f.invalid = false
	case clCount > 0:
		n, ok := parseLength(cl)
		if !ok {
			f.invalid = true
		}
		f.kind, f.length = bodyFixed, n
	default:
		f.kind = bodyUntilClose
		f.reusable = false
	}
	return f
}

// emitHeader adds the fields read (minus hop-by-hop ones) to dst: all the
// values share one string and one slice. With a final response's framing
// f, its Trailer announcement is kept for a chunked body.
func (pw *proxyWriter) emitHeader(dst http.Header, f *framing) {
	if len(pw.fields) == 0 {
		return
	}
	var conn []byte
	for _, fl := range pw.fields {
		if fl.key == "Connection" {
			conn = pw.hdrBuf[fl.start:fl.end]
		}
	}
	all := string(pw.hdrBuf)
	vals := make([]string, len(pw.fields))
	for i, fl := range pw.fields {
		k := fl.key
		if k == "Trailer" && f != nil && f.kind == bodyChunked {
			// passed on as announced
		} else if isHopHeader(k) || (conn != nil && hasToken(conn, k)) {
			continue
		}
		if k == "Content-Length" && f != nil && f.dropLength {
			continue
		}
		vals[i] = all[fl.start:fl.end]
		if old, ok := dst[k]; ok {
			dst[k] = append(old, vals[i])
		} else {
			dst[k] = vals[i : i+1 : i+1]
		}
	}
}

// emitTrailers adds the trailer fields read after a chunked body, under
// http.TrailerPrefix: the server sends them after the last chunk, whether
// or not the (relayed) Trailer header announced them.
func (pw *proxyWriter) emitTrailers(dst http.Header) {
	all := string(pw.hdrBuf)
	for _, fl := range pw.fields {
		if !trailerAllowed(fl.key) {
			continue
		}
		dst.Add(http.TrailerPrefix+fl.key, all[fl.start:fl.end])
	}
}
