package browsertest_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"

	"gatewayd/approvals"
	"gatewayd/gateway/browsertest"
	"gatewayd/gateway/identity"
	"gatewayd/gateway/records"
	"gatewayd/gateway/store/storetest"
)

// TestRestrictionsInBrowser: an officer finds a patient on the console, records the patient's block of a
// professional and masks a category with the key (user verification), sees them in force, and lifts the
// block the same way; each signed document re-verifies from what is stored.
func TestRestrictionsInBrowser(t *testing.T) {
	b := browsertest.Browser(t)
	db := storetest.NewSQLite(t)
	srv := browsertest.Start(t, db, "--dev-allow-software-keys")
	ctx := context.Background()
	if _, err := srv.Records().Import(ctx, []string{filepath.Join(repoRoot(), "testdata", "fhir", "bundles")}, records.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	patient := approvals.Identifier{System: "https://github.com/synthetichealth/synthea", Value: "fc712d1f-5a2e-4407-9c55-a2a2bad623c2"}
	tab := browsertest.Tab(t, b)
	browsertest.SignUp(t, srv, tab, identity.RoleOfficer, "Officer Restrictions")
	inForce := `[data-test="restrictions-in-force"] li[data-kind="`
	browsertest.Run(t, tab, "record a block and a mask", chromedp.EmulateViewport(1000, 800),
		chromedp.Click(`[data-test="home-restrictions"]`, chromedp.NodeVisible),
		chromedp.WaitVisible(`[data-test="restrictions-find"]`),
		chromedp.SetValue(`#system`, patient.System),
		chromedp.SetValue(`#value`, patient.Value),
		chromedp.Click(`[data-test="restrictions-find-button"]`),
		chromedp.WaitVisible(`[data-test="restrictions-none"]`),
		chromedp.SendKeys(`[data-test="block-target"]`, "10000000042"),
		chromedp.SendKeys(`[data-test="reference-block"]`, "Letter 2026-117"),
		chromedp.Click(`[data-test="block"]`),
		chromedp.WaitVisible(inForce+`block_professional"]`),
		chromedp.SetValue(`[data-test="category-target"]`, "immunizations"),
		chromedp.SendKeys(`[data-test="reference-category"]`, "Letter 2026-118"),
		chromedp.Click(`[data-test="mask-category"]`),
		chromedp.WaitVisible(inForce+`mask_category"]`),
		chromedp.WaitVisible(`[data-test="restriction-entries"] tr[data-masked="true"]`),
	)
	checkPage(t, tab, "restrictions in force")
	browsertest.Screenshot(t, tab, "restrictions")
	browsertest.Run(t, tab, "lift the block",
		chromedp.SendKeys(inForce+`block_professional"] [data-test="lift-reference"]`, "Letter 2026-204"),
		chromedp.Evaluate[chromedp.Void](`window.confirm = function () { return true; }`),
		chromedp.Click(inForce+`block_professional"] [data-test="lift"]`),
		chromedp.WaitNotPresent(inForce+`block_professional"]`),
		chromedp.WaitVisible(inForce+`mask_category"]`),
	)
	var ids []string
	if err := db.Raw("SELECT id FROM patient_restrictions WHERE completed_at IS NOT NULL ORDER BY completed_at").Scan(&ids).Error; err != nil || len(ids) != 3 {
		t.Fatalf("signed restriction documents: %v %v", ids, err)
	}
	for i, want := range []approvals.RestrictionKind{approvals.BlockProfessional, approvals.MaskCategory, approvals.BlockProfessional} {
		r, err := srv.Approvals().VerifyRestriction(ctx, ids[i])
		if err != nil || r.Restriction != want || r.Patient != patient {
			t.Fatalf("restriction %d does not verify: %+v %v", i, r, err)
		}
	}
	if opposed, err := srv.Approvals().Restrictions(ctx, "nobody", patient); err == nil {
		t.Fatalf("an unknown user read the restrictions: %+v", opposed)
	}
}
