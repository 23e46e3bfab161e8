package ssh

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"testing"
)

// chunkReader returns its data in reads of the sizes given, in turn.
type chunkReader struct {
	data  []byte
	sizes []int
	i     int
	err   error // returned once the data is gone (io.EOF when nil)
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		return 0, io.EOF
	}
	n := min(len(p), len(r.data), r.sizes[r.i%len(r.sizes)])
	r.i++
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// TestRelayCopy: the keeper's relay passes every byte in order whatever
// the reads' sizes (it borrows a large buffer while reads fill its small
// one), ends cleanly at EOF and passes on a read error; every buffer it
// borrowed is given back.
func TestRelayCopy(t *testing.T) {
	data := make([]byte, 1<<20+17)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	broken := errors.New("channel broken")
	for _, tc := range []struct {
		name  string
		sizes []int
		err   error
		small bool // no read fills the small buffer: no large one borrowed
	}{
		{"full reads", []int{1 << 30}, nil, false},
		{"small reads", []int{7, 1, 300}, nil, true},
		{"mixed", []int{smallRelayBuffer, 5, largeRelayBuffer, 3 * largeRelayBuffer, smallRelayBuffer, largeRelayBuffer}, nil, false},
		{"read error", []int{4096}, broken, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			var bufs relayBuffers
			err := relayCopy(&out, &chunkReader{data: data, sizes: tc.sizes, err: tc.err}, &bufs)
			if !errors.Is(err, tc.err) {
				t.Fatalf("relayCopy = %v, want %v", err, tc.err)
			}
			if !bytes.Equal(out.Bytes(), data) {
				t.Fatalf("relayed %d bytes, not the %d given (or not in order)", out.Len(), len(data))
			}
			if n := bufs.out.Load(); n != 0 {
				t.Fatalf("%d large buffers not given back", n)
			}
			if n := bufs.lent.Load(); (n == 0) != tc.small {
				t.Fatalf("borrowed %d large buffers (reads of %v)", n, tc.sizes)
			}
		})
	}
}
