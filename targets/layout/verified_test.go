package layout

import (
	"math"
	"slices"
	"strings"
	"testing"
)

// TestVerifiedRecordRoundTrip: the record of a verification reads back as
// written, extreme stamps included, from a buffer of exactly its size.
func TestVerifiedRecordRoundTrip(t *testing.T) {
	hash := func(c string) digest {
		d, ok := digestOf(strings.Repeat(c, 64))
		if !ok {
			t.Fatalf("%q: not a digest", c)
		}
		return d
	}
	for _, tc := range []struct {
		name string
		rec  record
	}{
		{"empty", nil},
		{"one", newRecord([]recorded{{Stamp{Dev: 2049, Ino: 131, Size: 40960, Perm: 0o444, MTime: 1765000000123456789}, hash("a")}})},
		{"extremes", newRecord([]recorded{
			{Stamp{Dev: math.MaxUint64, Ino: math.MaxUint64, Size: math.MaxInt64, Perm: 0o7777, MTime: math.MaxInt64}, hash("f")},
			{Stamp{Dev: 0, Ino: 0, Size: 0, Perm: 0, MTime: math.MinInt64}, hash("0")},
			{Stamp{Dev: 1, Ino: 2, Size: 3, Perm: 0o4755, MTime: -1}, hash("9")},
		})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := formatVerified(tc.rec)
			if len(b) != cap(b) {
				t.Errorf("record of %d bytes in a buffer of %d", len(b), cap(b))
			}
			got, err := parseVerified(b)
			if err != nil {
				t.Fatalf("parse: %v\n%s", err, b)
			}
			if len(got) != len(tc.rec) || (len(got) > 0 && !slices.Equal(got, tc.rec)) {
				t.Fatalf("read back %v, wrote %v", got, tc.rec)
			}
			for _, e := range tc.rec {
				if d, ok := got.lookup(e.st); !ok || d != e.d {
					t.Errorf("lookup(%v) = %x, %v", e.st, d, ok)
				}
			}
		})
	}
}

// TestVerifiedRecordRejectsMalformedLines: a record with any line that is
// not exactly a stamp and a lower-case SHA-256 is not used at all (every
// file is then hashed).
func TestVerifiedRecordRejectsMalformedLines(t *testing.T) {
	good := "1 2 3 444 5 " + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name, body string
	}{
		{"upper-case hash", "1 2 3 444 5 " + strings.Repeat("AB", 32)},
		{"short hash", "1 2 3 444 5 " + strings.Repeat("ab", 31)},
		{"long hash", good + "ab"},
		{"missing field", "1 2 3 444 " + strings.Repeat("ab", 32)},
		{"extra field", "1 " + good},
		{"two spaces", "1  2 3 444 5 " + strings.Repeat("ab", 32)},
		{"octal perm", "1 2 3 999 5 " + strings.Repeat("ab", 32)},
		{"negative inode", "1 -2 3 444 5 " + strings.Repeat("ab", 32)},
		{"empty line", good + "\n\n" + good},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if rec, err := parseVerified([]byte(verifiedHeader + tc.body + "\n")); err == nil {
				t.Fatalf("accepted as %v", rec)
			}
		})
	}
	if _, err := parseVerified([]byte("flightdeck verified v0\n" + good + "\n")); err == nil {
		t.Error("a record of another version was accepted")
	}
	rec, err := parseVerified([]byte(verifiedHeader + good)) // no final newline
	if err != nil || len(rec) != 1 {
		t.Errorf("a last line without a newline: %v, %v", rec, err)
	}
}

// FuzzVerifiedRecord: any bytes either are refused or read as a record
// that writes back to itself.
func FuzzVerifiedRecord(f *testing.F) {
	f.Add([]byte(verifiedHeader + "1 2 3 444 5 " + strings.Repeat("ab", 32) + "\n"))
	f.Add([]byte(verifiedHeader))
	f.Add([]byte(verifiedHeader + "18446744073709551615 0 9223372036854775807 7777 -9223372036854775808 " + strings.Repeat("0f", 32)))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := parseVerified(b)
		if err != nil {
			return
		}
		again, err := parseVerified(formatVerified(rec))
		if err != nil {
			t.Fatalf("a record read from %q does not read back: %v", b, err)
		}
		if !slices.Equal(again, rec) {
			t.Fatalf("read back %v, wrote %v", again, rec)
		}
	})
}

// TestRecordVouchesOnlyForOneDigestPerStamp: a stamp recorded twice with
// the same digest is kept once; with two digests it vouches for neither.
func TestRecordVouchesOnlyForOneDigestPerStamp(t *testing.T) {
	a, _ := digestOf(strings.Repeat("a", 64))
	b, _ := digestOf(strings.Repeat("b", 64))
	same, torn, other := Stamp{Ino: 1}, Stamp{Ino: 2}, Stamp{Ino: 3}
	r := newRecord([]recorded{{torn, a}, {same, a}, {other, b}, {torn, b}, {same, a}})
	if len(r) != 2 {
		t.Fatalf("record %v, want 2 entries", r)
	}
	for _, tc := range []struct {
		st   Stamp
		want digest
		ok   bool
	}{{same, a, true}, {other, b, true}, {torn, digest{}, false}, {Stamp{Ino: 4}, digest{}, false}} {
		if d, ok := r.lookup(tc.st); ok != tc.ok || d != tc.want {
			t.Errorf("lookup(%v) = %x, %v; want %x, %v", tc.st, d, ok, tc.want, tc.ok)
		}
	}
}
