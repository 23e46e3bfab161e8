package router

import (
	"bufio"
	"io"
)

// Relaying a backend's response body to the client: fixed length, until
// close, or chunked with its trailers.

// flushWriter is where a body goes: the client's writer, or nowhere for a
// health check.
type flushWriter interface {
	io.Writer
	Flush()
}

// discard is a flushWriter that drops everything.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) Flush()                      {}

// copyN relays n body bytes (n < 0: up to EOF) from br to w straight out
// of br's buffer. With stream set, w is flushed whenever no more bytes are
// at hand.
func copyN(w flushWriter, br *bufio.Reader, n int64, stream bool) (readErr, writeErr error) {
	for n != 0 {
		if br.Buffered() == 0 {
			if _, err := br.Peek(1); err != nil {
				if err == io.EOF {
					if n < 0 {
						return nil, nil
					}
					err = io.ErrUnexpectedEOF
				}
				return err, nil
			}
		}
		k := br.Buffered()
		if n > 0 && int64(k) > n {
			k = int(n)
		}
		p, _ := br.Peek(k)
		if _, err := w.Write(p); err != nil {
			return nil, err
		}
		br.Discard(k)
		if n > 0 {
			n -= int64(k)
		}
		if stream && br.Buffered() == 0 {
			w.Flush()
		}
	}
	return nil, nil
}

// copyChunked relays a chunked body to w, leaving its trailer fields in
// pw.fields.
func (pw *proxyWriter) copyChunked(br *bufio.Reader, w flushWriter) (readErr, writeErr error) {
	pw.fields = pw.fields[:0]
	pw.hdrBuf = pw.hdrBuf[:0]
	for {
		budget := 4 << 10
		line, err := pw.readLine(br, &budget)
		if err != nil {
			return eofUnexpected(err), nil
		}
		size, ok := parseChunkSize(line)
		if !ok {
			return errMalformedReply, nil
		}
		if size == 0 {
			budget = maxResponseHeaderBytes
			return pw.readFields(br, &budget), nil
		}
		if readErr, writeErr = copyN(w, br, size, true); readErr != nil || writeErr != nil {
			return readErr, writeErr
		}
		budget = 2
		if line, err = pw.readLine(br, &budget); err != nil || len(line) != 0 {
			if err == nil {
				err = errMalformedReply
			}
			return eofUnexpected(err), nil
		}
	}
}

func eofUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// parseChunkSize parses a chunk-size line: hex digits, then optional
// whitespace and chunk extensions, which are ignored.
func parseChunkSize(line []byte) (int64, bool) {
	var n int64
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			goto rest
		}
		if i >= 15 {
			return 0, false // would overflow
		}
		n = n<<4 | int64(d)
	}
rest:
	if i == 0 {
		return 0, false
	}
	for ; i < len(line) && (line[i] == ' ' || line[i] == '\t'); i++ {
	}
	if i < len(line) && line[i] != ';' {
		return 0, false
	}
	return n, true
}
