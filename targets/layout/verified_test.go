package layout

import (
	"maps"
	"math"
	"strings"
	"testing"
)

// TestVerifiedRecordRoundTrip: the record of a verification reads back as
// written, extreme stamps included, from a buffer of exactly its size.
func TestVerifiedRecordRoundTrip(t *testing.T) {
	hash := func(c string) string { return strings.Repeat(c, 64) }
	for _, tc := range []struct {
		name string
		rec  map[Stamp]string
	}{
		{"empty", map[Stamp]string{}},
		{"one", map[Stamp]string{{Dev: 2049, Ino: 131, Size: 40960, Perm: 0o444, MTime: 1765000000123456789}: hash("a")}},
		{"extremes", map[Stamp]string{
			{Dev: math.MaxUint64, Ino: math.MaxUint64, Size: math.MaxInt64, Perm: 0o7777, MTime: math.MaxInt64}: hash("f"),
			{Dev: 0, Ino: 0, Size: 0, Perm: 0, MTime: math.MinInt64}:                                              hash("0"),
			{Dev: 1, Ino: 2, Size: 3, Perm: 0o4755, MTime: -1}:                                                    hash("9"),
		}},
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
			if !maps.Equal(got, tc.rec) {
				t.Fatalf("read back %v, wrote %v", got, tc.rec)
			}
		})
	}
}
