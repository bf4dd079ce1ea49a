package gateway

import (
	"context"
	"path/filepath"
	"testing"

	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/approvals/approvalstest"
	"gatewayd/gateway/keys"
	"gatewayd/gateway/store/storetest"
)

// TestLegacyDataMigratesToEnvelope: a database sealed before envelope encryption (values derived from the
// key file's only key) keeps opening after the first start binds it (the data step wraps that key as the root),
// after a rotation, and after version 1 is retired and gone from the key file.
func TestLegacyDataMigratesToEnvelope(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		keyFile := filepath.Join(t.TempDir(), "gateway.key")
		if err := keys.Init(keyFile); err != nil {
			t.Fatal(err)
		}
		service := func(m *keys.Master) *approvals.Service {
			t.Helper()
			users := approvalstest.NewUsers()
			users.Add("req1", approvals.RoleRequester)
			svc, err := approvals.New(approvals.Deps{DB: db, Records: approvalstest.NewRecords(), Signer: approvalstest.NewSigner(),
				Users: users, SealKey: m.Derive(keys.PurposeApprovals)})
			if err != nil {
				t.Fatal(err)
			}
			return svc
		}
		legacy, err := keys.Load(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		// Before envelope encryption: nothing bound, the sealed columns under version 1's derived key.
		req, err := service(legacy).FileRequest(ctx, approvals.Filing{RequesterID: "req1", Patient: samplePatient,
			Categories: []approvals.Category{approvals.Allergies}, Purpose: approvals.PurposeCareContinuity,
			Justification: "Legacy justification.", Urgency: approvals.Routine, Delivery: approvals.ToRequester})
		if err != nil {
			t.Fatal(err)
		}
		readBack := func(m *keys.Master) {
			t.Helper()
			got, err := service(m).MyRequest(ctx, "req1", req.ID)
			if err != nil || got.Justification != "Legacy justification." || got.Scope.Patient != samplePatient {
				t.Fatalf("the legacy request no longer opens: %+v %v", got, err)
			}
		}
		if err := CheckKey(ctx, db, legacy, keyFile); err != nil {
			t.Fatal(err)
		}
		var details string
		db.Raw("SELECT details FROM audit_events WHERE action = 'keys.enveloped'").Scan(&details)
		if details != `{"master_version":1,"root_from_version_1":true}` {
			t.Fatalf("keys.enveloped %q", details)
		}
		readBack(legacy)
		if _, err := legacy.Rotate(ctx, db, keys.RotateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := legacy.Retire(ctx, db, 1); err != nil {
			t.Fatal(err)
		}
		restarted, err := keys.Load(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckKey(ctx, db, restarted, keyFile); err != nil {
			t.Fatalf("start with version 2 only: %v", err)
		}
		readBack(restarted)
	})
}
