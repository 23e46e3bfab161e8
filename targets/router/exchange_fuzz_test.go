package router

import (
	"bufio"
	"bytes"
	"net/http"
	"testing"
)

// FuzzResponseParsing feeds arbitrary bytes to the upstream client's
// response parser, as a backend could send them: it must never panic or
// loop, and what it accepts must be well formed. Run for longer with
//
//	go test -run '^$' -fuzz FuzzResponseParsing -fuzztime 1m ./targets/router/
func FuzzResponseParsing(f *testing.F) {
	for _, seed := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.0 204 No Content\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\n\r\n",
		"HTTP/1.1 200\nContent-Type: text/plain\n\nbare newlines",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\nffffffffffffffff\r\n",
	} {
		f.Add([]byte(seed), false)
		f.Add([]byte(seed), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, head bool) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 64)
		pw := new(proxyWriter)
		method := http.MethodGet
		if head {
			method = http.MethodHead
		}
		for range max1xx + 1 {
			code, minor, _, err := pw.readHead(br)
			if err != nil {
				return
			}
			if code < 100 || code > 999 || minor < 0 || minor > 1 {
				t.Fatalf("accepted status %d HTTP/1.%d", code, minor)
			}
			for _, fl := range pw.fields {
				if !validFieldName(fl.key) || fl.key != http.CanonicalHeaderKey(fl.key) {
					t.Fatalf("accepted field name %q", fl.key)
				}
				if v := pw.hdrBuf[fl.start:fl.end]; !validFieldValue(v) || len(bytes.Trim(v, " \t")) != len(v) {
					t.Fatalf("accepted field value %q", v)
				}
			}
			if code >= 200 {
				f := pw.frame(method, code, minor)
				if f.invalid {
					return
				}
				if f.kind == bodyFixed && f.length < 0 {
					t.Fatalf("negative length %d", f.length)
				}
				var n countingDiscard
				switch f.kind {
				case bodyFixed:
					copyN(&n, br, f.length, false)
					if n.n > f.length {
						t.Fatalf("relayed %d bytes of a %d-byte body", n.n, f.length)
					}
				case bodyChunked:
					pw.copyChunked(br, &n)
				case bodyUntilClose:
					copyN(&n, br, -1, false)
				}
				return
			}
		}
	})
}

// countingDiscard counts what it drops.
type countingDiscard struct{ n int64 }

func (c *countingDiscard) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }
func (c *countingDiscard) Flush()                      {}
