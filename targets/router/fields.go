package router

import (
	"bytes"
	"strings"
)

// HTTP field syntax (RFC 9110 §5): names, values, token lists and lengths,
// for the client's header strings and a backend's raw bytes alike.

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
