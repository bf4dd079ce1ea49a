package gateway

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"gorm.io/gorm"

	"gatewayd/gateway/identity"
	"gatewayd/gateway/identity/identitytest"
	"gatewayd/gateway/records"
	"gatewayd/gateway/store/storetest"
)

// TestOnePersonOneVoteOverHTTP: a professional id is one person. A second account with it is refused unless
// an admin links the two; once linked, the officer account cannot approve the requester account's request,
// and two officer accounts of one person cannot make the two-officer rule. Each refusal is audited and
// changes nothing else.
func TestOnePersonOneVoteOverHTTP(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		s := testServer(t, db, testConfig(t, "--dev-allow-software-keys", "--two-officer-categories", "conditions"))
		if _, err := s.Records().Import(context.Background(), []string{repoTestdata(t, bundleBuster)}, records.ImportOptions{}); err != nil {
			t.Fatal(err)
		}
		id := s.Identity()
		register := func(role, proID, samePerson string) (client, *identitytest.Key, string) {
			t.Helper()
			k := identitytest.NewKey(id.Origin(identity.ListenerFor(role)))
			ns := identitytest.RegisterAs(t, id, identity.NewInvitation{Role: role, DisplayName: "Dr Two Hats " + role,
				ProfessionalID: proID, SamePersonAs: samePerson}, k)
			return newClient(s, identity.ListenerFor(role), ns), k, ns.User.ID
		}
		adminNS, _ := identitytest.Register(t, id, identity.RoleAdmin)
		admin := newClient(s, Console, adminNS)
		requester, _, requesterID := register(identity.RoleRequester, "10000000042", "")

		// The admin cannot invite a second, unlinked account with the same professional id.
		invitations := countRows(t, db, "invitations")
		res := admin.do("POST", "/admin/invitations", url.Values{"role": {"officer"}, "name": {"Dr Two Hats"}, "professional_id": {"10000000042"}})
		if res.Code != http.StatusConflict || countRows(t, db, "invitations") != invitations {
			t.Fatalf("second account with the same professional id: %d", res.Code)
		}
		if n := countWhere(t, db, "action = 'invitation.refused'"); n != 1 {
			t.Fatalf("%d invitation refusals audited, want 1", n)
		}
		// Linked by the admin as the same person, the second account exists.
		res = admin.do("POST", "/admin/invitations", url.Values{"role": {"officer"}, "name": {"Dr Two Hats"},
			"professional_id": {"10000000042"}, "same_person_as": {requesterID}})
		if res.Code != http.StatusOK || !strings.Contains(res.Body.String(), "data-invitation-link") {
			t.Fatalf("linked invitation: %d", res.Code)
		}
		officer, _, _ := register(identity.RoleOfficer, "10000000042", requesterID)

		f := flowFixture{s: s, db: db, requester: requester, officer: officer}
		reqID := f.file(t, busterID)
		before := f.state(t)
		approve := url.Values{"verdict": {"approve"}, "categories": {"conditions"}, "retriever": {"requester"}, "expires_hours": {"24"}}
		if res := officer.do("POST", "/review/"+reqID+"/prepare", approve); res.Code != http.StatusUnprocessableEntity {
			t.Fatalf("own request through a second account: %d", res.Code)
		}
		if after := f.state(t); after != before || countRows(t, db, "approval_decisions") != 0 {
			t.Fatalf("the refused self-approval changed %s -> %s", before, after)
		}
		if n := countWhere(t, db, "action = 'decision.refused' AND details LIKE '%own_request%'"); n != 1 {
			t.Fatalf("%d self-approval refusals audited, want 1", n)
		}

		// Two officer accounts of one person: the first signs, the second is refused as the same officer.
		first, firstKey, firstID := register(identity.RoleOfficer, "10000000077", "")
		second, _, _ := register(identity.RoleOfficer, "10000000077", firstID)
		g := f
		g.officer = first
		p := g.prepare(t, reqID, approve)
		assertion, err := firstKey.Assert(p.Options)
		if err != nil {
			t.Fatal(err)
		}
		if res := first.do("POST", p.SignURL, string(assertion)); res.Code != 200 || !strings.Contains(res.Body.String(), "awaiting_second") {
			t.Fatalf("first officer: %d %s", res.Code, res.Body)
		}
		before = f.state(t)
		if res := second.do("POST", "/review/"+reqID+"/prepare", approve); res.Code != http.StatusUnprocessableEntity {
			t.Fatalf("second approval by the same person: %d", res.Code)
		}
		if after := f.state(t); after != before {
			t.Fatalf("the refused second approval changed %s -> %s", before, after)
		}
		if n := countWhere(t, db, "action = 'decision.refused' AND details LIKE '%same_officer%'"); n != 1 {
			t.Fatalf("%d same-person second approvals audited, want 1", n)
		}
		// Another person completes the two-officer rule.
		third, thirdKey, _ := register(identity.RoleOfficer, "10000000099", "")
		g.officer = third
		p = g.prepare(t, reqID, approve)
		if assertion, err = thirdKey.Assert(p.Options); err != nil {
			t.Fatal(err)
		}
		if res := third.do("POST", p.SignURL, string(assertion)); res.Code != 200 || !strings.Contains(res.Body.String(), `"status":"approved"`) {
			t.Fatalf("another person's second approval: %d %s", res.Code, res.Body)
		}
	})
}

func countWhere(t *testing.T, db *gorm.DB, where string) int64 {
	t.Helper()
	var n int64
	if err := db.Raw("SELECT COUNT(*) FROM audit_events WHERE " + where).Scan(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}
