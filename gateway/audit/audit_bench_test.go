package audit_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
	"gatewayd/gateway/store/storetest"
)

func benchDBs(b *testing.B, fn func(b *testing.B, open func(b *testing.B) *gorm.DB)) {
	b.Run("sqlite", func(b *testing.B) { fn(b, func(b *testing.B) *gorm.DB { return storetest.NewSQLite(b) }) })
	b.Run("postgres", func(b *testing.B) { fn(b, func(b *testing.B) *gorm.DB { return storetest.NewPostgres(b) }) })
}

// plainRow is the same row as an audit row, in a table without the chain: the baseline of an append.
type plainRow struct {
	Seq      int64 `gorm:"primaryKey;autoIncrement"`
	At       time.Time
	Actor    string
	Action   string
	Subject  string
	Details  string
	PrevHash string
	Hash     string
}

func (plainRow) TableName() string { return "bench_plain_events" }

// runWriters splits b.N operations across w goroutines and reports rows per second.
func runWriters(b *testing.B, w int, op func(i int) error) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, w)
	b.ResetTimer()
	start := time.Now()
	for g := range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < b.N; i += w {
				if err := op(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rows/s")
}

// BenchmarkAppend: audit appends (chain head lock, hash, insert, head update, each in its transaction) beside
// plain inserts of the same rows, each in its own transaction too.
func BenchmarkAppend(b *testing.B) {
	ctx := context.Background()
	benchDBs(b, func(b *testing.B, open func(b *testing.B) *gorm.DB) {
		for _, writers := range []int{1, 16} {
			b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
				b.Run("baseline", func(b *testing.B) {
					db := open(b)
					if err := db.Exec(createPlain(db)).Error; err != nil {
						b.Fatal(err)
					}
					runWriters(b, writers, func(i int) error {
						return store.Tx(ctx, db, func(tx *gorm.DB) error {
							return tx.Create(&plainRow{At: time.Now().UTC(), Actor: "system", Action: "bench.event",
								Subject: "thing:1", Details: fmt.Sprintf(`{"i":%d}`, i), PrevHash: audit.GenesisHash, Hash: audit.GenesisHash}).Error
						})
					})
				})
				b.Run("chain", func(b *testing.B) {
					db := open(b)
					runWriters(b, writers, func(i int) error {
						return audit.Record(ctx, db, audit.Event{Actor: "system", Action: "bench.event", Subject: "thing:1",
							Details: map[string]any{"i": i}})
					})
				})
			})
		}
	})
}

func createPlain(db *gorm.DB) string {
	id := "INTEGER PRIMARY KEY AUTOINCREMENT"
	if store.DialectOf(db) == store.Postgres {
		id = "BIGSERIAL PRIMARY KEY"
	}
	return `CREATE TABLE bench_plain_events (seq ` + id + `, at TIMESTAMP NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
		subject TEXT NOT NULL, details TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)`
}

// BenchmarkVerify: walking the chain (read, recompute, compare) beside SHA-256 over the same canonical bytes
// already in memory. One op is the whole chain of 5,000 rows.
func BenchmarkVerify(b *testing.B) {
	const rows = 5000
	ctx := context.Background()
	benchDBs(b, func(b *testing.B, open func(b *testing.B) *gorm.DB) {
		db := open(b)
		err := store.Tx(ctx, db, func(tx *gorm.DB) error {
			for i := range rows {
				if err := audit.Append(tx, audit.Event{Actor: "user:42", Action: "bench.event", Subject: "request:7",
					Details: map[string]any{"i": i, "entries": 12}}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		var stored []audit.Row
		if err := db.Order("seq").Find(&stored).Error; err != nil {
			b.Fatal(err)
		}
		canon := make([][]byte, len(stored))
		for i, r := range stored {
			if canon[i], err = audit.Canonical(r); err != nil {
				b.Fatal(err)
			}
		}
		b.Run("baseline", func(b *testing.B) {
			for b.Loop() {
				for _, c := range canon {
					h := sha256.New()
					h.Write(make([]byte, 32))
					h.Write(c)
					h.Sum(nil)
				}
			}
			b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
		b.Run("verify", func(b *testing.B) {
			for b.Loop() {
				if _, err := audit.Verify(ctx, db); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	})
}
