package records

import (
	"bytes"
	"testing"
)

// TestPooledBatchHoldsNoContent: a batch given back to batchPool has every resource buffer zeroed, its whole
// capacity (what a longer entry before left there too), and keeps no reference to what it opened; taken
// again, it has the rows asked for.
func TestPooledBatchHoldsNoContent(t *testing.T) {
	b := getEntryBatch(entryChunk)
	var bufs [][]byte
	for i := range b.rows {
		b.rows[i].set([]byte("h"), []byte("results"), []byte("Observation"), nil, []byte("sealed id"),
			bytes.Repeat([]byte("long resource "), 20+i), nil)
		b.rows[i].resource = b.rows[i].resource[:10] // a shorter entry after a longer one
		b.opened[i] = loadedEntry{resource: b.rows[i].resource, fhirID: "f"}
		bufs = append(bufs, b.rows[i].resource[:cap(b.rows[i].resource)])
	}
	b.rows, b.opened = b.rows[:3], b.opened[:3] // as a smaller rendering leaves it: the rows beyond are cleared too
	putEntryBatch(b)
	for i, buf := range bufs {
		if len(buf) == 0 || bytes.Count(buf, []byte{0}) != len(buf) {
			t.Fatalf("row %d: %d bytes of content left in a pooled buffer", i, len(buf)-bytes.Count(buf, []byte{0}))
		}
	}
	for i, e := range b.opened { // putEntryBatch left it at its whole capacity
		if e.resource != nil || e.fhirID != "" {
			t.Fatalf("opened entry %d still refers to its content", i)
		}
	}
	if got := getEntryBatch(7); len(got.rows) != 7 || len(got.opened) != 7 || len(got.refs) != 0 {
		t.Fatalf("a batch from the pool has %d rows, %d opened, %d refs; want 7, 7, 0", len(got.rows), len(got.opened), len(got.refs))
	}
}
