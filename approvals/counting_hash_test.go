package approvals

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
)

// limitWriter accepts up to n bytes in all, then fails, like a client that went away mid-write.
type limitWriter struct {
	buf bytes.Buffer
	n   int
}

func (w *limitWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.buf.Write(p[:k])
		w.n = 0
		return k, errors.New("client went away")
	}
	w.n -= len(p)
	return w.buf.Write(p)
}

// The delivery digest is the SHA-256 of exactly the bytes the writer accepted, in order, across many writes of
// every size, and after the writer fails part-way; nothing is accepted after the failure.
func TestCountingHashHashesWhatWasAccepted(t *testing.T) {
	for _, limit := range []int{1 << 30, 100_000, 5, 0} {
		w := &limitWriter{n: limit}
		cw := &countingHash{w: w, h: sha256.New()}
		for i := range 200 {
			p := bytes.Repeat([]byte{byte(i)}, 1+(i*7919)%70_000)
			if _, err := cw.Write(p); err != nil {
				break
			}
		}
		if _, err := cw.Write([]byte("after")); limit < 1<<30 && err == nil {
			t.Fatalf("limit %d: a write after the failure was accepted", limit)
		}
		want := sha256.Sum256(w.buf.Bytes())
		if got := hex.EncodeToString(cw.h.Sum(nil)); got != hex.EncodeToString(want[:]) || cw.n != int64(w.buf.Len()) {
			t.Fatalf("limit %d: digest %s of %d bytes, want %x of %d", limit, got, cw.n, want, w.buf.Len())
		}
	}
}
