package storetest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

// RefuseAudit installs a trigger that makes every insert into audit_events fail (only those whose action
// starts with one of prefixes, when given), as a full disk or a broken audit table would: fault-injection
// tests check that the change the row records is refused with it. It returns a function removing the trigger.
func RefuseAudit(t testing.TB, db *gorm.DB, prefixes ...string) (restore func()) {
	t.Helper()
	var conds []string
	for _, p := range prefixes {
		conds = append(conds, fmt.Sprintf("NEW.action LIKE '%s%%'", strings.ReplaceAll(p, "'", "''")))
	}
	when := ""
	if len(conds) > 0 {
		when = " WHEN (" + strings.Join(conds, " OR ") + ")"
	}
	var create, drop []string
	if store.DialectOf(db) == store.Postgres {
		create = []string{
			`CREATE OR REPLACE FUNCTION refuse_audit() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$ LANGUAGE plpgsql`,
			`CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events FOR EACH ROW` + when + ` EXECUTE FUNCTION refuse_audit()`,
		}
		drop = []string{`DROP TRIGGER IF EXISTS refuse_audit ON audit_events`}
	} else {
		create = []string{`CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events FOR EACH ROW` + when +
			` BEGIN SELECT RAISE(ABORT, 'audit refused'); END`}
		drop = []string{`DROP TRIGGER IF EXISTS refuse_audit`}
	}
	for _, q := range create {
		if err := db.Exec(q).Error; err != nil {
			t.Fatalf("install audit fault: %v", err)
		}
	}
	return func() {
		for _, q := range drop {
			if err := db.Exec(q).Error; err != nil {
				t.Fatalf("remove audit fault: %v", err)
			}
		}
	}
}

// Dump returns every row of every table (schema_migrations aside), each table's rows rendered and sorted, so
// that two dumps compare equal exactly when nothing was stored, changed or removed in between. It first waits
// for the audit rows committed so far to be linked: on PostgreSQL the chainer links them after their commits,
// beside everything else, and its work is not the change a test compares.
func Dump(t testing.TB, db *gorm.DB) map[string][]string {
	t.Helper()
	if _, err := audit.Link(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	var tables []string
	q := `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`
	if store.DialectOf(db) == store.Postgres {
		q = `SELECT tablename FROM pg_tables WHERE schemaname = current_schema()`
	}
	if err := db.Raw(q).Scan(&tables).Error; err != nil {
		t.Fatalf("list tables: %v", err)
	}
	out := map[string][]string{}
	for _, table := range tables {
		if table == "schema_migrations" {
			continue
		}
		var rows []map[string]any
		if err := db.Table(table).Find(&rows).Error; err != nil {
			t.Fatalf("dump %s: %v", table, err)
		}
		lines := make([]string, len(rows))
		for i, r := range rows {
			keys := make([]string, 0, len(r))
			for k := range r {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var b strings.Builder
			for _, k := range keys {
				fmt.Fprintf(&b, "%s=%v;", k, r[k])
			}
			lines[i] = b.String()
		}
		sort.Strings(lines)
		out[table] = lines
	}
	return out
}

// SameDump fails the test naming each table whose rows differ between two dumps; tables in ignore are left
// out (with the reason written at the call).
func SameDump(t testing.TB, before, after map[string][]string, ignore ...string) {
	t.Helper()
	skip := map[string]bool{}
	for _, s := range ignore {
		skip[s] = true
	}
	for table, rows := range after {
		if skip[table] {
			continue
		}
		if strings.Join(rows, "\n") != strings.Join(before[table], "\n") {
			t.Errorf("table %s changed: %d rows before, %d after", table, len(before[table]), len(rows))
		}
	}
}
