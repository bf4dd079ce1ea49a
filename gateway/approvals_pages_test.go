package gateway

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"gatewayd/gateway/identity"
	"gatewayd/gateway/identity/identitytest"
	"gatewayd/gateway/store/storetest"
)

// TestPolicySettings: each policy flag is checked with one clear line naming it.
func TestPolicySettings(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--two-officer-categories", "documents,horoscope"}, "--two-officer-categories"},
		{[]string{"--max-pending", "0s"}, "--max-pending"},
		{[]string{"--max-extract-ttl", "-1h"}, "--max-extract-ttl"},
		{[]string{"--default-extract-ttl", "96h"}, "--default-extract-ttl: 96h0m0s exceeds --max-extract-ttl"},
		{[]string{"--filing-limit", "0"}, "--filing-limit"},
		{[]string{"--jobs-interval", "0s"}, "--jobs-interval"},
	} {
		cfg := &Config{}
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		cfg.RegisterFlags(fs)
		if err := fs.Parse(append([]string{"--data-dir", t.TempDir()}, tc.args...)); err != nil {
			t.Fatal(err)
		}
		err := cfg.Load(fs)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: %v, want one line starting %q", tc.args, err, tc.want)
		}
	}
	t.Setenv("GATEWAY_TWO_OFFICER_CATEGORIES", "Documents, results")
	cfg := testConfig(t)
	p := cfg.Policy()
	if len(p.TwoOfficerCategories) != 2 || p.TwoOfficerCategories[0] != "documents" || p.FilingLimit != 30 ||
		p.MaxPending.Hours() != 168 || p.MaxExtractTTL.Hours() != 72 || p.DefaultExtractTTL.Hours() != 24 {
		t.Fatalf("policy from defaults and environment: %+v", p)
	}
}

// TestRequesterPagesAndLimits: the requester's pages render in both languages with no missing message;
// cancel works once and only on one's own pending request; the filing limit answers 429 and stores nothing.
func TestRequesterPagesAndLimits(t *testing.T) {
	db := storetest.NewSQLite(t)
	s := testServer(t, db, testConfig(t, "--filing-limit", "2"))
	me, _ := identitytest.Register(t, s.Identity(), identity.RoleRequester)
	other, _ := identitytest.Register(t, s.Identity(), identity.RoleRequester)
	f := flowFixture{s: s, db: db, requester: newClient(s, Intake, me)}
	id := f.file(t, busterID)
	for _, lang := range []string{"fr", "en"} {
		for _, p := range []string{"/home", "/requests", "/requests/new", "/requests/" + id} {
			res := f.requester.do("GET", p+"?lang="+lang, nil)
			if res.Code != 200 {
				t.Fatalf("%s: %d", p, res.Code)
			}
			if m := missingMessage.FindString(res.Body.String()); m != "" {
				t.Errorf("%s (%s): missing message %s", p, lang, m)
			}
		}
	}
	stranger := newClient(s, Intake, other)
	for _, p := range []string{"/requests/" + id, "/api/v1/requests/" + id} {
		if res := stranger.do("GET", p, nil); res.Code != http.StatusNotFound {
			t.Fatalf("someone else's request %s: %d", p, res.Code)
		}
	}
	if res := stranger.do("POST", "/api/v1/requests/"+id+"/cancel", "{}"); res.Code != http.StatusNotFound {
		t.Fatalf("cancel someone else's: %d", res.Code)
	}
	if res := f.requester.do("POST", "/requests/"+id+"/cancel", url.Values{}); res.Code != http.StatusSeeOther {
		t.Fatalf("cancel: %d", res.Code)
	}
	if res := f.requester.do("POST", "/api/v1/requests/"+id+"/cancel", "{}"); res.Code != http.StatusConflict {
		t.Fatalf("cancel twice: %d", res.Code)
	}
	f.file(t, busterID)
	before := countRows(t, db, "approval_requests")
	if res := f.requester.do("POST", "/api/v1/requests", asJSON(validFiling(busterID))); res.Code != http.StatusTooManyRequests {
		t.Fatalf("over the limit (API): %d", res.Code)
	}
	if res := f.requester.do("POST", "/requests", asForm(validFiling(busterID))); res.Code != http.StatusTooManyRequests ||
		!strings.Contains(res.Body.String(), `data-test="limit"`) {
		t.Fatalf("over the limit (form): %d", res.Code)
	}
	if after := countRows(t, db, "approval_requests"); after != before {
		t.Fatal("a refused filing was stored")
	}
	if res := f.requester.do("POST", "/api/v1/requests", `{"patient_system":"x","surprise":1}`); res.Code != http.StatusBadRequest {
		t.Fatalf("unknown JSON field: %d", res.Code)
	}
}

// TestReviewPagesAndRefusals: the queue and review render in both languages; unticking every category,
// widening, an expiry beyond the policy and a denial without a reason are refused on the page with their
// message, and prepare nothing.
func TestReviewPagesAndRefusals(t *testing.T) {
	f := newFlowFixture(t, storetest.NewSQLite(t))
	id := f.file(t, busterID)
	for _, lang := range []string{"fr", "en"} {
		for _, p := range []string{"/officer", "/queue", "/review/" + id} {
			res := f.officer.do("GET", p+"?lang="+lang, nil)
			if res.Code != 200 {
				t.Fatalf("%s: %d", p, res.Code)
			}
			if m := missingMessage.FindString(res.Body.String()); m != "" {
				t.Errorf("%s (%s): missing message %s", p, lang, m)
			}
		}
	}
	before := f.state(t)
	form := url.Values{"csrf": {f.officer.csrf}, "verdict": {"approve"}, "retriever": {"requester"}, "expires_hours": {"24"}}
	res := f.officer.do("POST", "/review/"+id+"/prepare?lang=en", form)
	if res.Code != http.StatusUnprocessableEntity || !strings.Contains(res.Body.String(), `data-test="approve-error"`) ||
		!strings.Contains(res.Body.String(), "never widen") {
		t.Fatalf("no category: %d", res.Code)
	}
	form = url.Values{"csrf": {f.officer.csrf}, "verdict": {"approve"}, "categories": {"conditions", "documents"}}
	if res := f.officer.do("POST", "/review/"+id+"/prepare", form); res.Code != http.StatusUnprocessableEntity {
		t.Fatalf("widened to documents: %d", res.Code)
	}
	form = url.Values{"csrf": {f.officer.csrf}, "verdict": {"approve"}, "categories": {"conditions"}, "expires_hours": {"73"}}
	if res := f.officer.do("POST", "/review/"+id+"/prepare", form); res.Code != http.StatusUnprocessableEntity {
		t.Fatalf("expiry beyond the policy: %d", res.Code)
	}
	form = url.Values{"csrf": {f.officer.csrf}, "verdict": {"deny"}, "reason": {"  "}}
	if res := f.officer.do("POST", "/review/"+id+"/prepare", form); res.Code != http.StatusUnprocessableEntity ||
		!strings.Contains(res.Body.String(), `data-test="deny-error"`) {
		t.Fatalf("deny without reason: %d", res.Code)
	}
	if after := f.state(t); after != before {
		t.Fatalf("refused preparations changed %s -> %s", before, after)
	}
	var prepared int64
	f.db.Raw("SELECT COUNT(*) FROM approval_decisions").Scan(&prepared)
	if prepared != 0 {
		t.Fatalf("%d decisions prepared by refused choices", prepared)
	}
}
