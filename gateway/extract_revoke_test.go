package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/store/storetest"
)

// TestSignedRevocation: an officer revokes a ready extract from its page, signing with the key; the
// revocation verifies offline; the retriever is then refused. A signature over another challenge, or a second
// revocation, changes nothing.
func TestSignedRevocation(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newXFix(t, db)
		_, xid := f.approve(approvals.ToRequester, time.Hour)
		if w := f.get("officer", "/extracts/"+xid); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `data-state="ready"`) {
			t.Fatalf("officer's page: %d", w.Code)
		}
		// The review page of the approved request leads there.
		var req string
		db.Raw("SELECT request_id FROM extracts WHERE id = ?", xid).Scan(&req)
		if w := f.get("officer", "/review/"+req); !strings.Contains(w.Body.String(), `href="/review/`+req+`/extract"`) {
			t.Fatalf("the review page has no link to the extract: %d", w.Code)
		}
		if w := f.get("officer", "/review/"+req+"/extract"); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/extracts/"+xid {
			t.Fatalf("review → extract: %d %q", w.Code, w.Header().Get("Location"))
		}
		begin := func() (json.RawMessage, string) {
			t.Helper()
			w := f.post("officer", "/extracts/"+xid+"/revoke/begin", []byte(`{"reason":"Sent to the wrong service."}`))
			var b struct {
				Options  json.RawMessage `json:"options"`
				Ceremony string          `json:"ceremony"`
			}
			if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &b) != nil || b.Ceremony == "" {
				t.Fatalf("begin revoke: %d %s", w.Code, w.Body.String())
			}
			return b.Options, b.Ceremony
		}
		key := f.users["officer"].key

		// A revocation needs a reason the requester will read: without one, nothing is prepared.
		before := f.extractState(xid)
		if w := f.post("officer", "/extracts/"+xid+"/revoke/begin", []byte("{}")); w.Code != http.StatusUnprocessableEntity ||
			!strings.Contains(w.Body.String(), "reason_required") {
			t.Fatalf("revocation without a reason: %d %s", w.Code, w.Body.String())
		}
		var prepared int64
		db.Raw("SELECT COUNT(*) FROM extract_revocations WHERE extract_id = ?", xid).Scan(&prepared)
		if prepared != 0 || f.extractState(xid) != before {
			t.Fatal("a revocation without a reason prepared or changed something")
		}

		// A signature over another challenge is refused; the extract stays ready.
		_, c1 := begin()
		other, _ := begin()
		forged, err := key.Assert(other)
		if err != nil {
			t.Fatal(err)
		}
		if w := f.post("officer", "/extracts/"+xid+"/revoke/finish?ceremony="+c1, forged); w.Code < 400 {
			t.Fatalf("a signature for another revocation was accepted: %d", w.Code)
		}
		if f.extractState(xid) != before {
			t.Fatal("a refused revocation changed the extract")
		}

		opts, c := begin()
		resp, err := key.Assert(opts)
		if err != nil {
			t.Fatal(err)
		}
		if w := f.post("officer", "/extracts/"+xid+"/revoke/finish?ceremony="+c, resp); w.Code != http.StatusOK {
			t.Fatalf("finish revoke: %d %s", w.Code, w.Body.String())
		}
		var id string
		if err := db.Raw("SELECT id FROM extract_revocations WHERE extract_id = ? AND completed_at IS NOT NULL", xid).Scan(&id).Error; err != nil || id == "" {
			t.Fatalf("no completed revocation: %v", err)
		}
		rv, err := f.srv.h.approvals.VerifyRevocation(context.Background(), id)
		if err != nil || rv.ExtractID != xid || rv.OfficerID != f.users["officer"].id {
			t.Fatalf("verify revocation: %+v %v", rv, err)
		}
		if n := len(f.audits(xid, "extract.revoked")); n != 1 {
			t.Fatalf("%d extract.revoked rows", n)
		}
		if w := f.retrieve("requester", xid, formatFHIR); w.Code != http.StatusGone {
			t.Fatalf("retrieval after revocation: %d", w.Code)
		}
		// One refusal, one status (the refusal table): a revoked extract is gone, whoever asks for it.
		if w := f.post("officer", "/extracts/"+xid+"/revoke/begin", []byte(`{"reason":"Again."}`)); w.Code != http.StatusGone {
			t.Fatalf("revoking again: %d", w.Code)
		}
		if w := f.get("officer", "/extracts/"+xid); !strings.Contains(w.Body.String(), `data-state="revoked"`) {
			t.Fatal("the officer's page does not show the revocation")
		}
		// Nobody but officers reaches the page.
		if w := f.get("staff", "/extracts/"+xid); w.Code != http.StatusForbidden {
			t.Fatalf("staff on the officer's page: %d", w.Code)
		}
	})
}
