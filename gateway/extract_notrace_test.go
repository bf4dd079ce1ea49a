package gateway

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/store"
	"gatewayd/gateway/store/storetest"
)

// TestExtractLeavesNoTrace imports, approves and retrieves (both formats), then searches every column of
// every table and the data directory for a distinctive piece of the rendered bytes and for the patient's
// family name: nothing of an extract's content is written anywhere.
func TestExtractLeavesNoTrace(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newXFix(t, db)
		_, a := f.approve(approvals.ToRequester, time.Hour)
		_, b := f.approve(approvals.ToStaff, time.Hour)
		fhir := f.retrieve("requester", a, formatFHIR)
		page := f.retrieve("staff", b, formatHTML)
		if fhir.Code != http.StatusOK || page.Code != http.StatusOK {
			t.Fatalf("retrievals: %d %d", fhir.Code, page.Code)
		}
		// A piece of a resource inside the Bundle (not the watermark, whose ids are stored by design), and a
		// piece of the printable page's body.
		body := fhir.Body.Bytes()
		at := bytes.Index(body, []byte(`"resource":{"resourceType":"Observation"`))
		if at < 0 {
			t.Fatal("no Observation in the extract")
		}
		needles := map[string][]byte{
			"Bundle bytes":  body[at+12 : at+12+80],
			"family name":   []byte(sampleFamily),
			"family (HTML)": []byte(strings.ToUpper(sampleFamily)),
		}
		hb := page.Body.Bytes()
		if i := bytes.Index(hb, []byte("<table")); i > 0 {
			needles["HTML bytes"] = hb[i : i+min(200, len(hb)-i)]
		} else {
			t.Fatal("the HTML extract has no table")
		}
		if !bytes.Contains(body, []byte(sampleFamily)) {
			t.Fatal("the extract does not hold the family name: the search below would prove nothing")
		}
		// A broken delivery logs its cause: still nothing of the content.
		_, c := f.approve(approvals.ToRequester, time.Hour)
		u := f.users["requester"]
		r := httptest.NewRequest(http.MethodPost, retrievePath(Intake, c, true)+"?format=html", nil)
		r.Header.Set("Origin", f.srv.origin(Intake))
		r.Header.Set("Cookie", u.cookie)
		r.Header.Set(csrfHeader, u.csrf)
		f.srv.intake.ServeHTTP(&failingWriter{ResponseRecorder: httptest.NewRecorder(), limit: 4 << 10}, r)
		if !bytes.Contains(f.logs.Bytes(), []byte("extract delivery incomplete")) || !bytes.Contains(f.logs.Bytes(), []byte("route=/extracts/:id/retrieve")) {
			t.Fatalf("the log holds neither the broken delivery nor the retrievals: checking it proves nothing\n%s", f.logs.Bytes())
		}
		// The search finds what is stored: the extract's id.
		if hits := searchDatabase(t, db, []byte(a)); len(hits) == 0 {
			t.Fatal("the search does not even find the extract's id")
		}
		for name, n := range needles {
			if hits := searchDatabase(t, db, n); len(hits) > 0 {
				t.Errorf("%s found in the database: %v", name, hits)
			}
			if hits := searchDir(t, f.dataDir, n); len(hits) > 0 {
				t.Errorf("%s found in the data directory: %v", name, hits)
			}
			if bytes.Contains(f.logs.Bytes(), n) {
				t.Errorf("%s found in the log", name)
			}
		}
	})
}

// searchDatabase looks for needle in every column of every table: on PostgreSQL through
// information_schema (text columns as text, bytea columns as bytes), on SQLite in the database file's bytes
// (and every file beside it: WAL, shared memory, journals).
func searchDatabase(t *testing.T, db *gorm.DB, needle []byte) []string {
	t.Helper()
	if store.DialectOf(db) != store.Postgres {
		var rows []struct {
			Name string
			File string
		}
		if err := db.Raw("PRAGMA database_list").Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		var hits []string
		for _, r := range rows {
			if r.File == "" {
				continue
			}
			// The database file and everything beside it (WAL, shared memory, journals).
			if st, err := os.Stat(r.File); err != nil || st.Size() == 0 {
				t.Fatalf("database file %s: %v", r.File, err)
			}
			hits = append(hits, searchDir(t, filepath.Dir(r.File), needle)...)
		}
		if len(rows) == 0 {
			t.Fatal("no database file found: the search proves nothing")
		}
		return hits
	}
	var cols []struct {
		TableName  string
		ColumnName string
		DataType   string
	}
	if err := db.Raw(`SELECT table_name, column_name, data_type FROM information_schema.columns
		WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position`).Scan(&cols).Error; err != nil {
		t.Fatal(err)
	}
	if len(cols) < 20 {
		t.Fatalf("only %d columns found: the search proves nothing", len(cols))
	}
	var hits []string
	for _, c := range cols {
		var q string
		arg := any(string(needle))
		if c.DataType == "bytea" {
			q = fmt.Sprintf(`SELECT COUNT(*) FROM %q WHERE position(decode(?, 'hex') in %q) > 0`, c.TableName, c.ColumnName)
			arg = hex.EncodeToString(needle) // gorm would expand a []byte argument into a list
		} else {
			q = fmt.Sprintf(`SELECT COUNT(*) FROM %q WHERE strpos(CAST(%q AS TEXT), ?) > 0`, c.TableName, c.ColumnName)
		}
		var n int64
		if err := db.Raw(q, arg).Scan(&n).Error; err != nil {
			t.Fatalf("%s.%s: %v", c.TableName, c.ColumnName, err)
		}
		if n > 0 {
			hits = append(hits, c.TableName+"."+c.ColumnName)
		}
	}
	return hits
}

// searchDir looks for needle in every file under dir.
func searchDir(t *testing.T, dir string, needle []byte) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, needle) {
			hits = append(hits, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}
