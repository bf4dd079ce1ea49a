package records_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"gorm.io/gorm"

	"gatewayd/gateway/records"
	"gatewayd/gateway/store"
	"gatewayd/gateway/store/storetest"
)

// secretsOf reads, from the files alone, every family name and identifier value of their Patients, and the
// Patients' resource ids, which must not be found in the database.
func secretsOf(t *testing.T, files ...string) []string {
	t.Helper()
	seen := map[string]bool{}
	add := func(raw []byte) {
		var head struct{ ResourceType string }
		if json.Unmarshal(raw, &head); head.ResourceType != "Patient" {
			return
		}
		var p struct {
			ResourceType string
			ID           string
			Identifier   []struct{ Value string }
			Name         []struct{ Family string }
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Fatal(err)
		}
		if p.ResourceType != "Patient" {
			return
		}
		seen[p.ID] = true
		for _, n := range p.Name {
			seen[n.Family] = true
		}
		for _, id := range p.Identifier {
			seen[id.Value] = true
		}
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, ".ndjson") {
			for _, l := range bytes.Split(raw, []byte("\n")) {
				if len(bytes.TrimSpace(l)) > 0 {
					add(l)
				}
			}
			continue
		}
		var b struct {
			Entry []struct{ Resource json.RawMessage }
		}
		if err := json.Unmarshal(raw, &b); err != nil {
			t.Fatal(err)
		}
		for _, e := range b.Entry {
			add(e.Resource)
		}
	}
	var out []string
	for s := range seen {
		// Shorter needles would match random ciphertext bytes by chance.
		if len(s) >= 4 {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		t.Fatal("no names or identifiers found in the test files")
	}
	return out
}

// assertNotStored searches the whole database for each secret: the SQLite file's bytes (after a checkpoint,
// so the WAL is in it), or every text and bytea column on PostgreSQL.
func assertNotStored(t *testing.T, db *gorm.DB, secrets []string) {
	t.Helper()
	if store.DialectOf(db) == store.SQLite {
		if err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)").Error; err != nil {
			t.Fatal(err)
		}
		var files []struct{ File string }
		if err := db.Raw("PRAGMA database_list").Scan(&files).Error; err != nil || len(files) == 0 || files[0].File == "" {
			t.Fatalf("database file: %v", err)
		}
		var all []byte
		for _, suffix := range []string{"", "-wal"} {
			b, err := os.ReadFile(files[0].File + suffix)
			if err == nil {
				all = append(all, b...)
			}
		}
		if len(all) < 100_000 {
			t.Fatalf("database file %s is only %d bytes: wrong file?", files[0].File, len(all))
		}
		// Control: what is stored in clear (the audit action) is found by this search.
		if !bytes.Contains(all, []byte("import.run")) {
			t.Fatal("control string import.run not found in the SQLite file: the search sees nothing")
		}
		hits := 0
		for _, s := range secrets {
			if bytes.Contains(all, []byte(s)) {
				t.Errorf("found %q in the SQLite file", s)
				hits++
			}
		}
		t.Logf("searched %d bytes of SQLite file for %d names and identifiers: %d hits", len(all), len(secrets), hits)
		return
	}
	var cols []struct{ TableName, ColumnName, DataType string }
	if err := db.Raw(`SELECT table_name, column_name, data_type FROM information_schema.columns
		WHERE table_schema = 'public' AND data_type IN ('text', 'bytea', 'character varying')`).Scan(&cols).Error; err != nil {
		t.Fatal(err)
	}
	if len(cols) < 10 {
		t.Fatalf("only %d text/bytea columns found", len(cols))
	}
	var control int64
	db.Table("audit_events").Where("strpos(action, ?) > 0", "import.run").Count(&control)
	if control < 1 {
		t.Fatalf("control: import.run found %d times in audit_events.action, want at least 1", control)
	}
	hits := 0
	for _, c := range cols {
		cond := "strpos(" + c.ColumnName + ", ?) > 0"
		if c.DataType == "bytea" {
			cond = "position(convert_to(?, 'UTF8') in " + c.ColumnName + ") > 0"
		}
		for _, s := range secrets {
			var n int64
			if err := db.Table(c.TableName).Where(cond, s).Count(&n).Error; err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				t.Errorf("found %q in %s.%s", s, c.TableName, c.ColumnName)
				hits++
			}
		}
	}
	t.Logf("searched %d text/bytea columns for %d names and identifiers: %d hits", len(cols), len(secrets), hits)
}

func TestNoNameOrIdentifierInDatabase(t *testing.T) {
	files := append(globFiles(t, testdata(t, "bundles"), "*.json"), globFiles(t, testdata(t, "ndjson"), "[A-Z]*.ndjson")...)
	secrets := secretsOf(t, files...)
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		s := newService(t, db)
		rep, err := s.Import(context.Background(), []string{testdata(t, "bundles"), testdata(t, "ndjson")}, records.ImportOptions{})
		if err != nil || len(rep.Failed) != 0 {
			t.Fatalf("import: %v %+v", err, rep.Failed)
		}
		assertNotStored(t, db, secrets)
	})
}
