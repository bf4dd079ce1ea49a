package gateway

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/audit"
	"gatewayd/gateway/keys"
	"gatewayd/gateway/records"
	"gatewayd/gateway/store/storetest"
)

var errKilled = errors.New("rotation killed half way")

// TestRotateWhileServing: records imported under a key file; the master key rotated while a retrieval and an
// import run; the rotation killed half way and resumed; the old version retired. Every extract still renders
// byte-identical entries, the key file no longer holds the old version, a server started on it alone serves,
// and a copy of the old key file opens nothing.
func TestRotateWhileServing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		keyFile := filepath.Join(t.TempDir(), "gateway.key")
		if err := keys.Init(keyFile); err != nil {
			t.Fatal(err)
		}
		oldCopy := filepath.Join(t.TempDir(), "gateway.key.before-rotation")
		b, _ := os.ReadFile(keyFile)
		os.WriteFile(oldCopy, b, 0o600)
		master, err := keys.Load(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		f := newXFixKeyed(t, db, master)
		reqA, first := f.approve(approvals.ToRequester, time.Hour)
		reqB, during := f.approve(approvals.ToRequester, time.Hour)
		reqC, after := f.approve(approvals.ToStaff, time.Hour)
		render := func(rec *records.Service) []byte {
			t.Helper()
			id := records.Identifier{System: samplePatient.System, Value: samplePatient.Value}
			m, err := rec.Select(ctx, id, records.Scope{Categories: records.Categories})
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := rec.RenderBundle(ctx, &buf, m, id, records.Watermark{RequestID: "r", ManifestDigest: "d"}); err != nil {
				t.Fatal(err)
			}
			return buf.Bytes()
		}
		before := render(f.srv.h.records)
		retrieveChecked := func(user, xid, requestID string) {
			t.Helper()
			w := f.retrieve(user, xid, formatFHIR)
			if w.Code != http.StatusOK {
				t.Fatalf("retrieve %s: %d", xid, w.Code)
			}
			if d, _ := digestOfBundle(t, w.Body.Bytes()); d != f.signedDigest(requestID) {
				t.Fatalf("extract %s: entries differ from the signed manifest", xid)
			}
		}
		retrieveChecked("requester", first, reqA.ID)

		// A retrieval and an import run while the rotation does, one data key a batch; the rotation dies after
		// its second batch, as a crash would.
		var imported *records.Report
		var importErr error
		var wg sync.WaitGroup
		start := make(chan struct{})
		wg.Go(func() {
			<-start
			imported, importErr = f.srv.h.records.Import(ctx, []string{repoFile(t, "testdata/fhir/ndjson")}, records.ImportOptions{})
		})
		var retrieved *httptest.ResponseRecorder
		wg.Go(func() {
			<-start
			retrieved = f.retrieve("requester", during, formatFHIR)
		})
		close(start)
		res, err := master.Rotate(ctx, db, keys.RotateOptions{Batch: 1, AfterBatch: func(n int64) error {
			if n == 2 {
				return errKilled
			}
			return nil
		}})
		wg.Wait()
		if !errors.Is(err, errKilled) || res.From != 1 || res.To != 2 || res.Rewrapped != 2 {
			t.Fatalf("first run %+v %v", res, err)
		}
		if importErr != nil || imported.Totals().Imported == 0 {
			t.Fatalf("the import during the rotation: %v", importErr)
		}
		if retrieved.Code != http.StatusOK {
			t.Fatalf("the retrieval during the rotation: %d", retrieved.Code)
		}
		if d, _ := digestOfBundle(t, retrieved.Body.Bytes()); d != f.signedDigest(reqB.ID) {
			t.Fatal("the extract retrieved during the rotation differs from the signed manifest")
		}
		versions := map[int]int64{}
		var rows []struct {
			MasterVersion int
			N             int64
		}
		db.Raw("SELECT master_version, COUNT(*) AS n FROM data_keys GROUP BY master_version").Scan(&rows)
		for _, r := range rows {
			versions[r.MasterVersion] = r.N
		}
		if versions[1] == 0 || versions[2] < 2 {
			t.Fatalf("after the kill: data keys by version %v, want some still under 1, some under 2", versions)
		}
		if err := master.Retire(ctx, db, 1); !errors.Is(err, keys.ErrInUse) {
			t.Fatalf("retire during the rotation: %v", err)
		}

		res, err = master.Rotate(ctx, db, keys.RotateOptions{Batch: 1})
		if err != nil || !res.Resumed || res.To != 2 || res.Rewrapped != versions[1] {
			t.Fatalf("resumed run %+v %v, want the %d data keys left under version 1", res, err, versions[1])
		}
		if n := f.count("SELECT COUNT(*) FROM data_keys WHERE master_version <> 2"); n != 0 {
			t.Fatalf("%d data keys not under version 2", n)
		}
		if err := master.Retire(ctx, db, 1); err != nil {
			t.Fatal(err)
		}
		if raw, _ := os.ReadFile(keyFile); strings.Contains(string(raw), strings.TrimSpace(string(b))) || !strings.HasPrefix(string(raw), "v2 ") {
			t.Fatalf("the key file still holds version 1, or lacks version 2: %q", raw)
		}
		if err := os.Remove(oldCopy); err != nil {
			t.Fatal(err)
		}
		for _, action := range []string{"keys.version_added", "keys.rewrapped", "keys.rotated", "keys.retired"} {
			if f.count("SELECT COUNT(*) FROM audit_events WHERE action = ?", action) == 0 {
				t.Fatalf("no %s audit row", action)
			}
		}

		// A server on the key file as it is now (version 2 only), as after a restart.
		reloaded, err := keys.Load(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckKey(ctx, db, reloaded, keyFile); err != nil {
			t.Fatalf("start after retire: %v", err)
		}
		f.srv, err = New(Deps{Config: xConfig(t, "--dev-allow-software-keys"), DB: db, Keys: reloaded,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: f.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		if got := render(f.srv.h.records); !bytes.Equal(got, before) {
			t.Fatal("the entries render differently after the rotation")
		}
		retrieveChecked("staff", after, reqC.ID)
		if _, err := audit.Verify(ctx, db); err != nil {
			t.Fatal(err)
		}

		// What the old key file held opens nothing any more.
		raw, _ := hex.DecodeString(strings.TrimSpace(string(b)))
		old, _ := keys.FromBytes(raw)
		if err := old.Bind(ctx, db); !errors.Is(err, keys.ErrWrongKey) {
			t.Fatalf("the old key still binds: %v", err)
		}
	})
}
