package router

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The request writer: what the router sends a backend for a client's
// request (request line, header, body and trailers).

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
// known, chunked (with the client's trailers) otherwise. It keeps what it
// reads in pw.kept while that fits Config.RetryBodyLimit, and sends what
// an earlier attempt kept first, so that a request the backend closed the
// connection on unread can be sent whole to another one (see failed).
func (r *Router) writeBody(bw *bufio.Writer, pw *proxyWriter) (err error) {
	in := pw.in
	k := &pw.kept
	chunked := in.ContentLength < 0
	limit := r.cfg.RetryBodyLimit
	if in.ContentLength > int64(limit) {
		limit = 0 // it will not fit: keep nothing
	}
	var sent int64
	if len(k.buf) > 0 {
		if err := writeData(bw, pw.num[:0], k.buf, chunked); err != nil {
			return err
		}
		sent = int64(len(k.buf))
	}
	if !k.eof {
		var scratch []byte // the copy buffer, once nothing more is kept
		defer func() {
			if scratch != nil {
				r.bufs.Put(scratch)
			}
		}()
		// Each read of the client's body gets BodyReadTimeout: a client
		// that trickles its body must not hold this connection (and the
		// backend's) for ever. The deadline is lifted once the body is
		// read, before the server's background read waits for the next
		// request. When a read fails, the deadline is moved into the past
		// instead: net/http would otherwise wait, with no deadline, for
		// the rest of the body to discard it after the answer.
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
			var data []byte
			keep := !k.over && limit > 0
			if keep {
				if k.buf == nil {
					k.buf = r.bufs.Get()[:0]
				}
				if len(k.buf) == cap(k.buf) && cap(k.buf) < limit {
					grown := make([]byte, len(k.buf), min(2*cap(k.buf), limit))
					copy(grown, k.buf)
					r.bufs.Put(k.buf)
					k.buf = grown
				}
				data = k.buf[len(k.buf):min(cap(k.buf), limit)]
				keep = len(data) > 0 // else full at the limit
			}
			if !keep {
				if scratch == nil {
					scratch = r.bufs.Get()
				}
				data = scratch
			}
			n, rerr := in.Body.Read(data)
			if n > 0 {
				switch {
				case keep:
					k.buf = k.buf[:len(k.buf)+n]
				case !k.over:
					// Longer than the limit: this request cannot be sent
					// again once any of it has gone to a backend.
					k.over = true
					if k.buf != nil {
						r.bufs.Put(k.buf)
						k.buf = nil
					}
				}
				if err := writeData(bw, pw.num[:0], data[:n], chunked); err != nil {
					return err
				}
				sent += int64(n)
			}
			if rerr == io.EOF {
				k.eof = true
				break
			}
			if rerr != nil {
				return &clientBodyError{rerr}
			}
		}
	}
	if !chunked {
		if sent != in.ContentLength {
			return &clientBodyError{io.ErrUnexpectedEOF}
		}
		return nil
	}
	bw.WriteString("0\r\n")
	for name, vs := range in.Trailer {
		if !validFieldName(name) || !trailerAllowed(name) {
			continue
		}
		for _, v := range vs {
			if validFieldValue(v) {
				writeField(bw, name, v)
			}
		}
	}
	_, err = bw.WriteString("\r\n")
	return err
}

// writeData writes p, as one chunk when chunked (num is scratch space
// for the size line).
func writeData(bw *bufio.Writer, num, p []byte, chunked bool) error {
	if chunked {
		bw.Write(append(strconv.AppendInt(num, int64(len(p)), 16), '\r', '\n'))
	}
	if _, err := bw.Write(p); err != nil {
		return err
	}
	if chunked {
		bw.WriteString("\r\n")
	}
	return nil
}

// keptBody is what a request's body attempts read from the client: the
// bytes themselves while they fit Config.RetryBodyLimit, so that the
// request can be sent again.
type keptBody struct {
	buf  []byte // the body read so far (a pooled buffer, grown up to the limit)
	over bool   // more than the limit was read: buf was dropped
	eof  bool   // the client's body has been read to its end
}

// replayable reports whether the request, its body included, can still
// be sent again whole: nothing of the body was read, or all that was read
// is kept.
func (pw *proxyWriter) replayable() bool { return !pw.kept.over }

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
