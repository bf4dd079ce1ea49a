package records_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/records"
	"gatewayd/gateway/store/storetest"
)

// benchEntryRow is a record_entries row as a plain gorm model: what the baseline inserts.
type benchEntryRow struct {
	ID           string
	Version      int
	PatientID    string
	Category     string
	ResourceType string
	EffectiveAt  *string
	ContentHash  string
	FHIRID       []byte `gorm:"column:fhir_id"`
	Code         []byte
	Display      []byte
	Resource     []byte
	SourceFile   []byte
	ImportedAt   time.Time
}

func (benchEntryRow) TableName() string { return "record_entries" }

// BenchmarkImport compares importing the test bundles (parse, canonical form, hash, seal, blind index,
// versions) with inserting the same number of rows of the same size with gorm, in clear, without hashing.
// Both start each iteration from empty record tables.
func BenchmarkImport(b *testing.B) {
	files := globFiles(b, testdata(b, "bundles"), "*.json")
	counts := expectedCounts(b, files...)
	entries := 0
	for _, n := range counts {
		entries += n
	}
	// The baseline's rows: the same resources, as read from the files.
	var resources [][]byte
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		var bundle struct {
			Entry []struct{ Resource json.RawMessage }
		}
		json.Unmarshal(raw, &bundle)
		for _, e := range bundle.Entry {
			var h struct{ ResourceType string }
			json.Unmarshal(e.Resource, &h)
			if _, ok := records.CategoryOf(h.ResourceType); ok {
				resources = append(resources, e.Resource)
			}
		}
	}
	// PostgreSQL runs when GATEWAY_TEST_POSTGRES is set. Each sub-benchmark has its own database, emptied
	// before each iteration, outside the timer.
	empty := func(b *testing.B, db *gorm.DB) {
		b.StopTimer()
		for _, table := range []string{"record_entries", "record_patient_keys", "record_patients"} {
			if err := db.Exec("DELETE FROM " + table).Error; err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
	}
	for _, dbName := range []string{"sqlite", "postgres"} {
		newDB := storetest.NewSQLite
		if dbName == "postgres" {
			newDB = storetest.NewPostgres
		}
		b.Run(dbName+"/baseline", func(b *testing.B) {
			db := newDB(b)
			var elapsed time.Duration
			for b.Loop() {
				empty(b, db)
				start := time.Now()
				err := db.Transaction(func(tx *gorm.DB) error {
					if err := tx.Exec("INSERT INTO record_patients (id, demographics, created_at, updated_at) VALUES (?, ?, ?, ?)",
						"p", []byte("{}"), time.Now(), time.Now()).Error; err != nil {
						return err
					}
					rows := make([]benchEntryRow, len(resources))
					for i, r := range resources {
						rows[i] = benchEntryRow{ID: randomID(), Version: 1, PatientID: "p", Category: "results", ResourceType: "Observation",
							ContentHash: "-", FHIRID: []byte("id"), Code: []byte("code"), Display: []byte("display"), Resource: r,
							SourceFile: []byte("file"), ImportedAt: time.Now()}
					}
					return tx.CreateInBatches(rows, 200).Error
				})
				elapsed += time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(resources)*b.N)/elapsed.Seconds(), "entries/s")
		})
		b.Run(dbName+"/gateway", func(b *testing.B) {
			db := newDB(b)
			s := newService(b, db)
			var elapsed time.Duration
			for b.Loop() {
				empty(b, db)
				start := time.Now()
				rep, err := s.Import(context.Background(), files, records.ImportOptions{})
				elapsed += time.Since(start)
				if err != nil || len(rep.Failed) > 0 || rep.Totals().Imported != entries {
					b.Fatalf("import: %v %+v", err, rep.Failed)
				}
			}
			b.ReportMetric(float64(entries*b.N)/elapsed.Seconds(), "entries/s")
		})
	}
}

func randomID() string {
	x := make([]byte, 16)
	rand.Read(x)
	return hex.EncodeToString(x)
}

// BenchmarkRender compares rendering a 10,000-entry manifest (load by id and version, open, check the hash,
// write) with marshalling the same resources, held decoded in memory, as a Bundle with encoding/json.
func BenchmarkRender(b *testing.B) {
	const n = 10000
	db := storetest.NewSQLite(b)
	s := newService(b, db)
	path, id := syntheticBundle(b, b.TempDir(), "bench", n, 200)
	rep, err := s.Import(context.Background(), []string{path}, records.ImportOptions{})
	if err != nil || len(rep.Failed) > 0 {
		b.Fatalf("import: %v %+v", err, rep.Failed)
	}
	ctx := context.Background()
	m, err := s.Select(ctx, id, records.Scope{Categories: []records.Category{records.Results}})
	if err != nil || len(m.Entries) != n {
		b.Fatalf("select: %v, %d entries", err, len(m.Entries))
	}
	raw, _ := os.ReadFile(path)
	var bundle struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			FullURL  string `json:"fullUrl"`
			Resource any    `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(raw, &bundle); err != nil {
		b.Fatal(err)
	}
	bundle.Type = "collection"

	measure := func(b *testing.B, render func(w io.Writer) error) {
		var cw countWriter
		if err := render(&cw); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(cw.n)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		cpu0 := processCPU()
		for b.Loop() {
			if err := render(io.Discard); err != nil {
				b.Fatal(err)
			}
		}
		cpu := processCPU() - cpu0
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N*n), "allocs/entry")
		// CPU time, all goroutines (the fetcher's reads, the rendering, the collector): on a busy machine it
		// compares two versions where ns/op, the wall time, does not.
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*n), "cpu-ns/entry")
	}
	b.Run("10000/baseline", func(b *testing.B) {
		measure(b, func(w io.Writer) error { return json.NewEncoder(w).Encode(&bundle) })
	})
	b.Run("10000/bundle", func(b *testing.B) {
		measure(b, func(w io.Writer) error { return s.RenderBundle(ctx, w, m, id, records.Watermark{RequestID: "r"}) })
	})
	b.Run("10000/html", func(b *testing.B) {
		measure(b, func(w io.Writer) error { return s.RenderHTML(ctx, w, m, id, records.Watermark{RequestID: "r"}, "fr") })
	})
}

// processCPU is the CPU time (user and system) this process has used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }
