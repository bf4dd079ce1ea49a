package gateway

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
	"gatewayd/gateway/store/storetest"
)

// TestRestoreKeepsOneTime: two extracts approved, a backup, one retrieved, the backup restored, the gateway
// started on it: the one retrieved after the backup is refused (the restore invalidated it), the other is
// invalidated too, both audited; the audit chain verifies across the restore, and an officer can re-issue.
func TestRestoreKeepsOneTime(t *testing.T) {
	for _, dialect := range []store.Dialect{store.SQLite, store.Postgres} {
		t.Run(string(dialect), func(t *testing.T) {
			ctx := context.Background()
			dsn := filepath.Join(t.TempDir(), "live.db")
			if dialect == store.Postgres {
				dsn = storetest.PostgresDSN(t)
			}
			live := openMigrated(t, dsn)
			f := newXFix(t, live)
			_, retrievedLater := f.approve(approvals.ToRequester, time.Hour)
			_, neverRetrieved := f.approve(approvals.ToStaff, time.Hour)

			backup := filepath.Join(t.TempDir(), "gateway.backup")
			m, err := Backup(ctx, live, dsn, backup, f.clock.Now())
			if err != nil {
				t.Fatalf("backup: %v", err)
			}
			if st, err := os.Stat(backup); err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("backup file: %v %v", st, err)
			}
			if w := f.retrieve("requester", retrievedLater, formatFHIR); w.Code != http.StatusOK {
				t.Fatalf("retrieval after the backup: %d", w.Code)
			}
			// The live database never carries the marker: starting on it changes nothing.
			if res, err := ApplyRestore(ctx, live, f.clock.Now(), false); err != nil || res.Applied {
				t.Fatalf("start on the live database: %+v %v", res, err)
			}

			var restored *gorm.DB
			var res RestoreResult
			if dialect == store.SQLite {
				target := filepath.Join(t.TempDir(), "gateway.db")
				if res, err = RestoreSQLite(ctx, backup, target, f.clock.Now()); err != nil {
					t.Fatalf("restore: %v", err)
				}
				restored = openMigrated(t, target)
			} else {
				target := storetest.PostgresDSN(t)
				if out, err := exec.Command("psql", "-v", "ON_ERROR_STOP=1", "-q", "-d", target, "-f", backup).CombinedOutput(); err != nil {
					t.Fatalf("psql -f backup: %v\n%s", err, out)
				}
				restored = openMigrated(t, target)
				// What serve's Start does: the dump's marker is found, the rule applied once.
				if res, err = ApplyRestore(ctx, restored, f.clock.Now(), false); err != nil {
					t.Fatal(err)
				}
				if again, err := ApplyRestore(ctx, restored, f.clock.Now(), false); err != nil || again.Applied {
					t.Fatalf("the restore was applied twice: %+v %v", again, err)
				}
			}
			if !res.Applied || res.Backup != m.ID || res.Epoch != 1 || len(res.Invalidated) != 2 {
				t.Fatalf("restore result %+v, want backup %s, epoch 1, two invalidated", res, m.ID)
			}

			// The gateway on the restored database, with the same key and the sessions the backup holds.
			f.db = restored
			f.srv, err = New(Deps{Config: xConfig(t, "--dev-allow-software-keys"), DB: restored, Keys: f.srv.h.keys,
				Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: f.clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			if w := f.retrieve("requester", retrievedLater, formatFHIR); w.Code != http.StatusGone {
				t.Fatalf("the extract retrieved after the backup was served again: %d", w.Code)
			}
			if w := f.retrieve("staff", neverRetrieved, formatFHIR); w.Code != http.StatusGone {
				t.Fatalf("the other ready extract was served: %d", w.Code)
			}
			for _, id := range []string{retrievedLater, neverRetrieved} {
				if got := f.audits(id, "extract.invalidated"); len(got) != 1 || got[0].Details != `{"restore_epoch":1}` {
					t.Fatalf("extract.invalidated rows of %s: %+v", id, got)
				}
			}
			if n := f.count("SELECT COUNT(*) FROM audit_events WHERE action = 'restore.applied'"); n != 1 {
				t.Fatalf("%d restore.applied rows", n)
			}
			if _, err := audit.Verify(ctx, restored); err != nil {
				t.Fatalf("audit chain across the restore: %v", err)
			}

			// The officer's page of the invalidated extract says why, and offers the re-issue.
			page := f.get("officer", "/extracts/"+retrievedLater).Body.String()
			if !strings.Contains(page, `data-test="reissue"`) || !(strings.Contains(page, "backup") || strings.Contains(page, "sauvegarde")) {
				t.Fatalf("the officer's page of an invalidated extract: %s", page)
			}
			// An officer re-issues the invalidated extract with a new signed decision; the requester gets it once.
			f.domain, err = WireApprovals(restored, f.srv.h.keys, f.srv.h.records, f.srv.Identity(), f.signer, f.clock.Now)
			if err != nil {
				t.Fatal(err)
			}
			officer := f.users["officer"].id
			p, err := f.domain.PrepareReissue(ctx, officer, retrievedLater, approvals.ReissueInput{WordingVersion: "extract-reissue-v1"})
			if err != nil {
				t.Fatalf("re-issue: %v", err)
			}
			out, err := f.domain.CompleteDecision(ctx, officer, p.ID, f.signer.Sign(officer, p.Options))
			if err != nil {
				t.Fatal(err)
			}
			if w := f.retrieve("requester", out.ExtractID, formatFHIR); w.Code != http.StatusOK {
				t.Fatalf("re-issued extract: %d", w.Code)
			}
			if _, err := f.domain.PrepareReissue(ctx, officer, retrievedLater, approvals.ReissueInput{WordingVersion: "extract-reissue-v1"}); err == nil {
				t.Fatal("re-issued twice")
			}
		})
	}
}

// openMigrated opens and migrates a database for the test, closed at cleanup.
func openMigrated(t *testing.T, dsn string) *gorm.DB {
	t.Helper()
	db, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(db) })
	if _, err := store.Up(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	return db
}
