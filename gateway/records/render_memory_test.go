package records_test

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"

	"gatewayd/gateway/records"
	"gatewayd/gateway/store/storetest"
)

// peakWriter discards what it is given and samples the heap as it goes.
type peakWriter struct {
	sample []metrics.Sample
	peak   uint64
	n      int64
}

func newPeakWriter() *peakWriter {
	return &peakWriter{sample: []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}}
}

func (w *peakWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	metrics.Read(w.sample)
	if v := w.sample[0].Value.Uint64(); v > w.peak {
		w.peak = v
	}
	return len(p), nil
}

func heapNow() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	runtime.GC()
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestRenderMemoryDoesNotGrow renders a small and a ten times larger manifest of large entries and checks
// that the heap peak above the starting heap stays about the same: entries are streamed, not loaded whole.
func TestRenderMemoryDoesNotGrow(t *testing.T) {
	if testing.Short() {
		t.Skip("imports 2,200 entries")
	}
	db := storetest.NewSQLite(t)
	s := newService(t, db)
	const pad = 5000
	dir := t.TempDir()
	small, smallID := syntheticBundle(t, dir, "small", 200, pad)
	large, largeID := syntheticBundle(t, dir, "large-ten-times", 2000, pad)
	importFiles(t, s, small, large)
	ctx := context.Background()
	old := debug.SetGCPercent(1) // keep garbage low (1 % of the live heap, whatever ran before), so that the peak follows what is live
	defer debug.SetGCPercent(old)
	growth := map[string]uint64{}
	for _, c := range []struct {
		name string
		id   records.Identifier
		n    int
	}{{"small", smallID, 200}, {"large", largeID, 2000}} {
		m, err := s.Select(ctx, c.id, records.Scope{Categories: []records.Category{records.Results}})
		if err != nil || len(m.Entries) != c.n {
			t.Fatalf("%s: %d entries, %v", c.name, len(m.Entries), err)
		}
		for _, render := range []struct {
			name string
			fn   func(w *peakWriter) error
		}{
			{"bundle", func(w *peakWriter) error { return s.RenderBundle(ctx, w, m, c.id, records.Watermark{}) }},
			{"html", func(w *peakWriter) error { return s.RenderHTML(ctx, w, m, c.id, records.Watermark{}, "en") }},
		} {
			base := heapNow()
			w := newPeakWriter()
			if err := render.fn(w); err != nil {
				t.Fatal(err)
			}
			g := uint64(0)
			if w.peak > base {
				g = w.peak - base
			}
			growth[c.name+"/"+render.name] = g
			t.Logf("%s %s: %d entries, %d bytes written, heap peak %.1f MB above %.1f MB", c.name, render.name, c.n, w.n,
				float64(g)/1e6, float64(base)/1e6)
		}
	}
	// The large manifest's resources weigh 1800 x 5 KB = 9 MB more than the small one's: loading them whole
	// would show. Streaming keeps the difference to a few chunks.
	for _, r := range []string{"bundle", "html"} {
		if d := int64(growth["large/"+r]) - int64(growth["small/"+r]); d > 4<<20 {
			t.Errorf("%s: rendering 10x more entries took %.1f MB more heap at peak", r, float64(d)/1e6)
		}
	}
}
