package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"gatewayd/approvals"
	"gatewayd/gateway/store/storetest"
	"gatewayd/templates"
)

// A claimed extract whose rendering fails before the first byte is used up: the answer says so, and that an
// officer can re-issue it, never "nothing was changed"; the officer's page then offers the re-issue.
func TestRenderingFailureAfterClaimSaysSo(t *testing.T) {
	f := newXFix(t, storetest.NewSQLite(t))
	_, xid := f.approve(approvals.ToRequester, time.Hour)
	// Stored entries that no longer match the signed manifest: rendering refuses before any byte.
	if err := f.db.Exec("UPDATE record_entries SET content_hash = 'tampered'").Error; err != nil {
		t.Fatal(err)
	}
	w := f.retrieve("requester", xid, formatFHIR)
	page := w.Body.String()
	if w.Code != http.StatusInternalServerError || !strings.Contains(page, htmlText(templates.T("fr", "extracts.delivery.failed"))) ||
		strings.Contains(page, htmlText(templates.T("fr", "error.500"))) {
		t.Fatalf("rendering failed after the claim: %d\n%s", w.Code, page)
	}
	if f.extractState(xid) == "" || f.count("SELECT COUNT(*) FROM extracts WHERE id = ? AND delivery_complete = ?", xid, false) != 1 {
		t.Fatal("the failed delivery is not recorded incomplete")
	}
	if w := f.get("officer", "/extracts/"+xid); !strings.Contains(w.Body.String(), `data-test="reissue"`) {
		t.Fatal("the officer's page does not offer the re-issue")
	}
}

// htmlText escapes s as html/template writes it in a page.
func htmlText(s string) string {
	return strings.NewReplacer("'", "&#39;", `"`, "&#34;", "&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// With the database gone: pages and API answer 503 with Retry-After and a "try again later" message, nothing
// internal; /healthz answers for the process whatever cookie the probe carries, /readyz says not ready.
func TestDatabaseUnreachableAnswers503(t *testing.T) {
	f := newXFix(t, storetest.NewSQLite(t))
	sqlDB, err := f.db.DB()
	if err != nil {
		t.Fatal(err)
	}
	sqlDB.Close()
	u := f.users["requester"]
	for _, path := range []string{"/requests", "/api/v1/requests", "/healthz"} {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.Header.Set("Cookie", u.cookie)
		w := f.srv.call(Intake, r)
		body := w.Body.String()
		if path == "/healthz" {
			if w.Code != http.StatusOK {
				t.Errorf("/healthz with a session cookie and the database down: %d", w.Code)
			}
			continue
		}
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" ||
			strings.Contains(body, "sql") || strings.Contains(body, "closed") {
			t.Errorf("%s: %d (Retry-After %q)\n%s", path, w.Code, w.Header().Get("Retry-After"), body)
		}
		if strings.HasPrefix(path, "/api/") {
			var e errorJSON
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error != "unavailable" || e.RequestID == "" {
				t.Errorf("%s: JSON %s", path, body)
			}
		} else if !strings.Contains(body, htmlText(templates.T("fr", "error.503"))) {
			t.Errorf("%s: the page does not say to try again later", path)
		}
	}
	r := httptest.NewRequest(http.MethodGet, "/readyz", nil)
	r.Header.Set("Cookie", f.users["officer"].cookie)
	if w := f.srv.call(Console, r); w.Code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with the database down: %d", w.Code)
	}
}

// Lists carry their total and the cursor of the next page, on the page and in JSON; a forged cursor is refused.
func TestListsShowTotalAndPages(t *testing.T) {
	f := newXFix(t, storetest.NewSQLite(t))
	for range 3 {
		f.approve(approvals.ToRequester, time.Hour)
	}
	u := f.users["requester"]
	get := func(path string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.Header.Set("Cookie", u.cookie)
		return f.srv.call(Intake, r)
	}
	var list struct {
		Requests []json.RawMessage
		Total    int64
		Next     string
	}
	w := get("/api/v1/requests")
	if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil || len(list.Requests) != 3 || list.Total != 3 || list.Next != "" {
		t.Fatalf("JSON list: %d %s", w.Code, w.Body)
	}
	for _, path := range []string{"/requests", "/extracts"} {
		if w := get(path); !strings.Contains(w.Body.String(), `data-test="total">`+templates.T("fr", "list.total", 3)) {
			t.Errorf("%s does not show the total", path)
		}
	}
	if w := get("/api/v1/requests?after=forged"); w.Code != http.StatusUnprocessableEntity {
		t.Errorf("a forged cursor: %d", w.Code)
	}
}
