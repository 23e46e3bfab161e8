package router

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// The request path's HTTP/1.1 client. A request is written to a pooled
// keep-alive connection and the answer read back on the handler's own
// goroutine: no per-request goroutines, channels or header maps, which is
// where http.Transport spends its time and memory. The framing rules are
// RFC 9112's; anything the client cannot frame safely is refused with 502
// and the connection is dropped.

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

// max1xx bounds the informational responses relayed before a final one.
const max1xx = 8

// exchange sends pw.in to backend b and relays the answer to the client.
// It returns an error only while nothing but 1xx responses has been
// written to the client, so that the caller may retry elsewhere or answer
// with an error status; failures after that are recorded in pw.
func (r *Router) exchange(pw *proxyWriter, b *backend) error {
	in := pw.in
	ctx := in.Context()
	// A request that may simply be sent again when a kept-alive connection
	// turns out to be closed skips the liveness check; any other one is
	// only sent on a connection that still looks open.
	resendable := idempotent(in) && !hasBody(in)
	fresh := false
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		c, reused, err := b.conns.get(ctx, fresh, !resendable)
		if err != nil {
			return err
		}
		reusable, err := r.roundTrip(pw, c)
		if c.stop != nil && !c.stop() {
			c.interrupted.Store(true) // the interrupt ran or is running
		}
		c.stop = nil
		if c.interrupted.Load() {
			reusable = false
			if err != nil {
				err = errInterrupted
			}
		}
		if reusable {
			b.conns.put(c, time.Now())
		} else {
			c.nc.Close()
		}
		if errors.Is(err, errStaleConn) {
			if reused && !fresh {
				fresh = true // the backend closed it while idle: once more on a new connection
				b.conns.resends.Add(1)
				continue
			}
			err = io.ErrUnexpectedEOF
		}
		return err
	}
}

// roundTrip does one request/response exchange on c. See exchange for
// the error contract; errStaleConn means the connection died before any
// answer and the request can be sent again.
func (r *Router) roundTrip(pw *proxyWriter, c *upConn) (reusable bool, err error) {
	in := pw.in
	hasBody := hasBody(in)
	r.writeHead(c.bw, pw, c.pool.addr, hasBody)
	// A backend may answer before it read the whole body (413 for an
	// upload that is too large) and stop reading: writing then fails, and
	// its answer, if it sent one, is what the client gets.
	var sendErr error
	if hasBody {
		if err := r.writeBody(c.bw, in); err != nil {
			var bodyErr *clientBodyError
			if errors.As(err, &bodyErr) {
				return false, err
			}
			sendErr = err
		}
	}
	if sendErr == nil {
		if err := c.bw.Flush(); err != nil {
			if !hasBody {
				// Nothing of a bodyless request can have been processed
				// when the connection was already gone.
				return false, errStaleConn
			}
			sendErr = err
		}
	}
	if sendErr != nil {
		defer func() {
			reusable = false
			if err != nil {
				err = sendErr // no answer either: the write failure is the news
			}
		}()
	}

	// Most backends answer within cfg.quickAnswer, with the whole response
	// head in one read: for those, nothing else is set up. A slower answer
	// gets the full header timeout, and the client's context is watched
	// meanwhile so that the backend sees the request end with the client.
	start := time.Now()
	full := start.Add(r.cfg.ResponseHeaderTimeout)
	extended := r.cfg.ResponseHeaderTimeout <= r.cfg.quickAnswer
	if extended {
		c.nc.SetReadDeadline(full)
	} else {
		c.nc.SetReadDeadline(start.Add(r.cfg.quickAnswer))
	}
	var code, minor int
	n1xx := 0
	for {
		if !extended && !headBuffered(c.br) {
			if c.br.Buffered() == 0 {
				if _, err := c.br.Peek(1); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
					if !hasBody && idempotent(in) {
						err = errStaleConn // no answer byte: send it again
					}
					return false, err
				}
			}
			if !headBuffered(c.br) {
				// The deadline first: watch runs the interrupt at once
				// (on another goroutine) when the client is already
				// gone, and the interrupt's deadline must be the last.
				c.nc.SetReadDeadline(full)
				c.watch(in.Context())
				extended = true
			}
		}
		var gotBytes bool
		code, minor, gotBytes, err = pw.readHead(c.br)
		if err != nil {
			switch {
			case c.interrupted.Load():
				err = errInterrupted
			case errors.Is(err, os.ErrDeadlineExceeded):
				err = errResponseTimedOut
			case !gotBytes && !hasBody && idempotent(in):
				err = errStaleConn
			}
			return false, err
		}
		if code >= 200 {
			break
		}
		switch {
		case code == http.StatusSwitchingProtocols:
			return false, errUnexpectedSwitch
		case n1xx >= max1xx:
			return false, errTooMany1xx
		case code != http.StatusContinue: // 100 answers an Expect the router does not send
			n1xx++
			dst := pw.ResponseWriter.Header()
			pw.emitHeader(dst, nil)
			pw.ResponseWriter.WriteHeader(code)
			clear(dst) // WriteHeader does not reset the map for 1xx
		}
	}
	f := pw.frame(in.Method, code, minor)
	if f.invalid {
		return false, errMalformedReply
	}
	if f.kind != bodyNone && (f.kind != bodyFixed || int64(c.br.Buffered()) < f.length) {
		// The body needs more reads: they are not bounded by the header
		// timeout, and the client is watched while they last. (A body
		// already in the buffer leaves the deadline set; the next exchange
		// sets its own before it reads.)
		c.nc.SetReadDeadline(time.Time{})
		c.watch(in.Context()) // after the deadline: see above
		if c.interrupted.Load() {
			return false, errInterrupted
		}
	}
	dst := pw.ResponseWriter.Header()
	pw.emitHeader(dst, &f)
	pw.WriteHeader(code)
	stream := f.kind == bodyChunked || f.kind == bodyUntilClose || f.eventStream
	if stream {
		pw.Flush() // the first body bytes may take a while
	}

	var readErr, writeErr error
	switch f.kind {
	case bodyFixed:
		readErr, writeErr = copyN(pw, c.br, f.length, stream)
	case bodyUntilClose:
		readErr, writeErr = copyN(pw, c.br, -1, stream)
	case bodyChunked:
		readErr, writeErr = pw.copyChunked(c.br, pw)
	}
	switch {
	case writeErr != nil || (readErr != nil && in.Context().Err() != nil):
		pw.canceled = true // the client went away
		pw.abort = true
		return false, nil
	case readErr != nil:
		// The backend failed mid-body: the client must not take what it
		// got for a whole response.
		pw.backend.connErrors.Inc()
		pw.outcome = outcomeConnErr
		pw.abort = true
		return false, nil
	}
	if f.kind == bodyChunked && len(pw.fields) > 0 {
		pw.Flush() // chunked to the client, so that the trailers follow
		pw.emitTrailers(dst)
	}
	return f.reusable, nil
}

// defaultQuickAnswer is how long a backend's answer is awaited before the
// client's context is watched (see roundTrip).
const defaultQuickAnswer = 100 * time.Millisecond

// headBuffered reports whether a whole response head (up to its empty
// line) is in br's buffer, so that parsing it needs no read.
func headBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.Contains(b, crlfcrlf[1:]) || bytes.Contains(b, lflf)
}

var (
	crlfcrlf = []byte("\r\n\r\n")
	lflf     = []byte("\n\n")
)

// writeHead writes the request line and header sent to a backend: the
// client's request without hop-by-hop headers, with X-Forwarded-For,
// -Host and -Proto set as httputil.ProxyRequest.SetXForwarded does, and
// the body framing the router itself sends.
func (r *Router) writeHead(bw *bufio.Writer, pw *proxyWriter, addr string, hasBody bool) {
	in := pw.in
	bw.WriteString(in.Method)
	bw.WriteByte(' ')
	path := in.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	bw.WriteString(path)
	if in.URL.ForceQuery || in.URL.RawQuery != "" {
		bw.WriteByte('?')
		bw.WriteString(in.URL.RawQuery)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	if in.Host != "" {
		bw.WriteString(in.Host)
	} else {
		bw.WriteString(addr)
	}
	bw.WriteString("\r\n")

	conn := in.Header["Connection"]
	for k, vs := range in.Header {
		if isHopHeader(k) || isForwardedHeader(k) || isFramingHeader(k) || (len(conn) > 0 && containsToken(conn, k)) {
			continue
		}
		for _, v := range vs {
			writeField(bw, k, v)
		}
	}
	if containsToken(in.Header["Te"], "trailers") {
		bw.WriteString("Te: trailers\r\n")
	}
	if clientIP, _, err := net.SplitHostPort(in.RemoteAddr); err == nil {
		bw.WriteString("X-Forwarded-For: ")
		if prior := in.Header["X-Forwarded-For"]; r.cfg.TrustForwardedHeaders && len(prior) > 0 {
			for _, p := range prior {
				bw.WriteString(p)
				bw.WriteString(", ")
			}
		}
		bw.WriteString(clientIP)
		bw.WriteString("\r\n")
	}
	writeField(bw, "X-Forwarded-Host", in.Host)
	if in.TLS == nil {
		bw.WriteString("X-Forwarded-Proto: http\r\n")
	} else {
		bw.WriteString("X-Forwarded-Proto: https\r\n")
	}
	switch {
	case hasBody && in.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(pw.num[:0], in.ContentLength, 10))
		bw.WriteString("\r\n")
	case hasBody:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	case in.Method == http.MethodPost || in.Method == http.MethodPut || in.Method == http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n")
	}
	bw.WriteString("\r\n")
}

func writeField(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// isFramingHeader reports whether k is a header the router sends itself
// (or not at all) rather than passing on the client's.
func isFramingHeader(k string) bool {
	switch k {
	case "Content-Length", "Expect", "Host":
		return true
	}
	return false
}

// writeBody sends the client's request body: as is when its length is
// known, chunked (with the client's trailers) otherwise.
func (r *Router) writeBody(bw *bufio.Writer, in *http.Request) (err error) {
	buf := r.bufs.Get()
	defer r.bufs.Put(buf)
	chunked := in.ContentLength < 0
	// The buffer's tail holds a chunk's size line.
	data, num := buf[:len(buf)-32], buf[len(buf)-32:len(buf)-32]
	var sent int64
	// Each read of the client's body gets BodyReadTimeout: a client that
	// trickles its body must not hold this connection (and the backend's)
	// for ever. The deadline is lifted once the body is read, before the
	// server's background read waits for the next request. When a read
	// fails, the deadline is moved into the past instead: net/http would
	// otherwise wait, with no deadline, for the rest of the body to
	// discard it after the answer.
	cc := connOf(in.Context())
	if cc != nil {
		defer func() {
			if _, ok := err.(*clientBodyError); ok {
				cc.SetReadDeadline(aLongTimeAgo)
			} else {
				cc.SetReadDeadline(time.Time{})
			}
		}()
	}
	for {
		if cc != nil {
			cc.SetReadDeadline(time.Now().Add(r.cfg.BodyReadTimeout))
		}
		n, rerr := in.Body.Read(data)
		if n > 0 {
			if chunked {
				bw.Write(append(strconv.AppendInt(num, int64(n), 16), '\r', '\n'))
			}
			if _, err := bw.Write(data[:n]); err != nil {
				return err
			}
			if chunked {
				bw.WriteString("\r\n")
			}
			sent += int64(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return &clientBodyError{rerr}
		}
	}
	if !chunked {
		if sent != in.ContentLength {
			return &clientBodyError{io.ErrUnexpectedEOF}
		}
		return nil
	}
	bw.WriteString("0\r\n")
	for k, vs := range in.Trailer {
		if !validFieldName(k) || !trailerAllowed(k) {
			continue
		}
		for _, v := range vs {
			if validFieldValue(v) {
				writeField(bw, k, v)
			}
		}
	}
	_, err = bw.WriteString("\r\n")
	return err
}

// trailerAllowed reports whether the canonical field name k may be passed
// on as a trailer field (after a chunked body), in either direction. A
// recipient that merges trailers into the header section (RFC 9110 §6.5.1
// warns that some do) must not get through a trailer what the router's
// header rules keep out or set themselves: framing, routing, forwarding,
// authentication, cookies, and the fields that say how to read the
// content or the response. Everything else (checksums, signatures,
// timings, gRPC-style status) goes through.
func trailerAllowed(k string) bool {
	if isHopHeader(k) || isForwardedHeader(k) || isFramingHeader(k) {
		return false
	}
	switch k {
	case "Transfer-Encoding", "Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie",
		"Content-Type", "Content-Encoding", "Content-Range", "Content-Location", "Range",
		"Max-Forwards", "Cache-Control", "Pragma", "Age", "Expires", "Date", "Vary",
		"Location", "Retry-After", "Www-Authenticate", "Authentication-Info",
		"Proxy-Authentication-Info", "X-Real-Ip", "Via":
		return false
	}
	return !strings.HasPrefix(k, "If-") && !strings.HasPrefix(k, "X-Forwarded-")
}

// hasBody reports whether req has a body to send on.
func hasBody(req *http.Request) bool {
	return req.Body != nil && req.Body != http.NoBody && req.ContentLength != 0
}

// idempotent reports whether req may be sent again after a connection
// died without answering (RFC 9110 §9.2.2), as http.Transport decides.
func idempotent(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, a := req.Header["Idempotency-Key"]
	_, b := req.Header["X-Idempotency-Key"]
	return a || b
}

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

// parseLength parses a Content-Length value: decimal digits only.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// canonicalizeName checks that name is an RFC 9110 token and rewrites it
// in place to its canonical MIME form (as textproto does).
func canonicalizeName(name []byte) bool {
	upper := true
	for i, c := range name {
		if !isTokenChar(c) {
			return false
		}
		switch {
		case upper && 'a' <= c && c <= 'z':
			name[i] = c - 'a' + 'A'
		case !upper && 'A' <= c && c <= 'Z':
			name[i] = c - 'A' + 'a'
		}
		upper = c == '-'
	}
	return true
}

func isTokenChar(c byte) bool {
	if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func validFieldName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !isTokenChar(k[i]) {
			return false
		}
	}
	return true
}

// validFieldValue reports whether v holds no control character but
// horizontal tab.
func validFieldValue[S ~string | ~[]byte](v S) bool {
	for i := range len(v) {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// headerText is a header value as the client's request holds it (string)
// or as the backend's answer is parsed (bytes).
type headerText interface{ ~string | ~[]byte }

// trimOWS trims optional whitespace (spaces and tabs) at both ends.
func trimOWS[S headerText](v S) S {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// hasToken reports whether the comma-separated list v holds token,
// case-insensitively.
func hasToken[S headerText](v S, token string) bool {
	for start := 0; start <= len(v); {
		end := start
		for end < len(v) && v[end] != ',' {
			end++
		}
		if equalFold(trimOWS(v[start:end]), token) {
			return true
		}
		start = end + 1
	}
	return false
}

// containsToken reports whether any of the header's lines lists token.
func containsToken(lines []string, token string) bool {
	for _, line := range lines {
		if hasToken(line, token) {
			return true
		}
	}
	return false
}

// lastTokenIs reports whether the last element of the list v is token.
func lastTokenIs(v []byte, token string) bool {
	if i := bytes.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return equalFold(trimOWS(v), token)
}

// equalFold compares v with s, ASCII case-insensitively.
func equalFold[S headerText](v S, s string) bool {
	if len(v) != len(s) {
		return false
	}
	for i := range len(v) {
		x, y := v[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// isEventStream reports whether a Content-Type value is text/event-stream
// (server-sent events), which is flushed as it comes.
func isEventStream(v []byte) bool {
	if i := bytes.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	return equalFold(trimOWS(v), "text/event-stream")
}

// internKey returns name as a string, without allocating for the header
// names backends commonly send.
func internKey(name []byte) string {
	if s, ok := commonKeys[string(name)]; ok {
		return s
	}
	return string(name)
}

// commonKeys interns frequent canonical header names. Read only.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept-Ranges", "Access-Control-Allow-Origin", "Age", "Cache-Control",
		"Connection", "Content-Disposition", "Content-Encoding", "Content-Language",
		"Content-Length", "Content-Security-Policy", "Content-Type", "Date", "Etag",
		"Expires", "Keep-Alive", "Last-Modified", "Link", "Location", "Pragma",
		"Referrer-Policy", "Retry-After", "Server", "Set-Cookie",
		"Strict-Transport-Security", "Trailer", "Transfer-Encoding", "Vary", "Via",
		"Www-Authenticate", "X-Content-Type-Options", "X-Frame-Options",
		"X-Request-Id", "X-Xss-Protection",
	} {
		m[k] = k
	}
	return m
}()
