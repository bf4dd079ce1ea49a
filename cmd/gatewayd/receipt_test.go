package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatewayd/approvals"
	"gatewayd/approvals/approvalstest"
	"gatewayd/gateway/keys"
	"gatewayd/gateway/store"
)

// approvedDecision sets up a database and key file in dir, files a request and approves it; it returns the
// decision id.
func approvedDecision(t *testing.T, dir string) (dbPath, keyPath, decisionID string) {
	t.Helper()
	return approvedDecisionWith(t, dir, approvals.Traits{}, "")
}

// approvedDecisionWith is approvedDecision for a request filed with traits and approved with an identity
// override reason (the records hold the patient as DUPONT Marie, born 1980-01-01, female).
func approvedDecisionWith(t *testing.T, dir string, traits approvals.Traits, override string) (dbPath, keyPath, decisionID string) {
	t.Helper()
	ctx := context.Background()
	dbPath, keyPath = filepath.Join(dir, "gateway.db"), filepath.Join(dir, "gateway.key")
	if err := keys.Init(keyPath); err != nil {
		t.Fatal(err)
	}
	master, err := keys.Load(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(db)
	if _, err := store.Up(ctx, db); err != nil {
		t.Fatal(err)
	}
	users, records, signer := approvalstest.NewUsers(), approvalstest.NewRecords(), approvalstest.NewSigner()
	users.Add("req1", approvals.RoleRequester)
	users.Add("off1", approvals.RoleOfficer)
	signer.Enroll("off1", false)
	patient := approvals.Identifier{System: "urn:oid:1.2.3", Value: "P-1"}
	records.Add(patient, approvalstest.Entry("e1", approvals.Allergies, "2024-01-01"))
	records.SetTraits(patient, approvals.Traits{BirthName: "Dupont", GivenName: "Marie", BirthDate: "1980-01-01", Sex: "female"})
	svc, err := approvals.New(approvals.Deps{DB: db, Records: records, Signer: signer, Users: users,
		SealKey: master.Derive(keys.PurposeApprovals)})
	if err != nil {
		t.Fatal(err)
	}
	r, err := svc.FileRequest(ctx, approvals.Filing{RequesterID: "req1", Patient: patient,
		Categories: []approvals.Category{approvals.Allergies}, Purpose: approvals.PurposeSecondOpinion,
		Justification: "Second opinion before surgery.", Urgency: approvals.Urgent, Delivery: approvals.ToStaff, Traits: traits})
	if err != nil {
		t.Fatal(err)
	}
	p, err := svc.PrepareDecision(ctx, "off1", r.ID, approvals.DecisionInput{Verdict: approvals.Approve,
		ExpiresIn: 2 * time.Hour, WordingVersion: "review-v1", IdentityOverride: override})
	if err != nil {
		t.Fatal(err)
	}
	out, err := svc.CompleteDecision(ctx, "off1", p.ID, signer.Sign("off1", p.Options))
	if err != nil {
		t.Fatal(err)
	}
	return dbPath, keyPath, out.DecisionID
}

// A decision approved although an identity trait differed: receipt verify prints the override, its traits
// and the officer's reason, all signed.
func TestReceiptVerifyShowsIdentityOverride(t *testing.T) {
	dir := t.TempDir()
	reason := "Birth date checked on the patient's identity card."
	dbPath, keyPath, id := approvedDecisionWith(t, dir, approvals.Traits{BirthName: "DUPONT", BirthDate: "1980-01-02"}, reason)
	file := filepath.Join(dir, "receipt.json")
	if _, errOut, code := runCLI(t, "receipt", "export", id, "--db", dbPath, "--key-file", keyPath, "--out", file); code != 0 {
		t.Fatalf("export: exit %d: %s", code, errOut)
	}
	out, errOut, code := runCLI(t, "receipt", "verify", file)
	if code != 0 {
		t.Fatalf("verify: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"Receipt OK", "IDENTITY OVERRIDE", "differ from the records: birth_date\n", "Override reason: " + reason} {
		if !strings.Contains(out, want) {
			t.Fatalf("verify output lacks %q:\n%s", want, out)
		}
	}
}

func TestReceiptExportThenVerify(t *testing.T) {
	dir := t.TempDir()
	dbPath, keyPath, id := approvedDecision(t, dir)
	file := filepath.Join(dir, "receipt.json")
	out, errOut, code := runCLI(t, "receipt", "export", id, "--db", dbPath, "--key-file", keyPath, "--out", file)
	if code != 0 {
		t.Fatalf("export: exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, id) || out != "" {
		t.Fatalf("export said %q / %q", out, errOut)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("receipt file: %v %v", st, err)
	}

	// Verify needs nothing but the file: no database, no key file, and a configuration that would not even
	// load is never read.
	t.Setenv("GATEWAY_LOG_FORMAT", "not-a-format")
	os.Remove(dbPath)
	os.Remove(keyPath)
	out, errOut, code = runCLI(t, "receipt", "verify", file)
	if code != 0 {
		t.Fatalf("verify: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"Receipt OK", "APPROVED", "Categories: allergies", "hospital staff"} {
		if !strings.Contains(out, want) {
			t.Fatalf("verify output lacks %q:\n%s", want, out)
		}
	}

	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	tamper := func(name string, change func(string) string) {
		t.Run(name, func(t *testing.T) {
			bad := change(string(good))
			if bad == string(good) {
				t.Fatal("tampering changed nothing")
			}
			path := filepath.Join(t.TempDir(), "bad.json")
			if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
				t.Fatal(err)
			}
			out, errOut, code := runCLI(t, "receipt", "verify", path)
			if code != 1 || !strings.Contains(errOut, "FAILS") || strings.Contains(out, "Receipt OK") {
				t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
			}
		})
	}
	tamper("one byte of the scope", func(s string) string {
		return strings.Replace(s, `\"allergies\"`, `\"allergiez\"`, 1)
	})
	tamper("the verdict", func(s string) string {
		return strings.Replace(s, `\"verdict\":\"approve\"`, `\"verdict\":\"deny\"`, 1)
	})
	tamper("the signature", func(s string) string {
		var rc approvals.Receipt
		if err := json.Unmarshal([]byte(s), &rc); err != nil {
			t.Fatal(err)
		}
		rc.Signature[len(rc.Signature)/2] ^= 0x40
		b, err := json.Marshal(rc)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	})

	// Strict JSON: a second "signature" or a "Signature" would otherwise be read in place of the one signed.
	for name, bad := range map[string]string{
		"duplicate name": strings.Replace(string(good), `"signature":`, `"signature":"AAAA","signature":`, 1),
		"case variant":   strings.Replace(string(good), `"signature":`, `"Signature":`, 1),
	} {
		path := filepath.Join(t.TempDir(), "bad.json")
		if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, errOut, code := runCLI(t, "receipt", "verify", path); code == 0 || !strings.Contains(errOut, "not a receipt file") {
			t.Errorf("%s: exit %d, %s", name, code, errOut)
		}
	}

	_, errOut, code = runCLI(t, "receipt", "verify", filepath.Join(dir, "missing.json"))
	if code != 1 || !strings.Contains(errOut, "read receipt") {
		t.Fatalf("missing file: exit %d, %s", code, errOut)
	}
}
