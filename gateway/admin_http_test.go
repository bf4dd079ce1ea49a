package gateway

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"gatewayd/gateway/identity"
	"gatewayd/gateway/identity/identitytest"
	"gatewayd/gateway/store/storetest"
)

var missingMessage = regexp.MustCompile(`\[[a-z0-9]+\.[a-z0-9._]+\]`)

// TestAdminPages: an admin lists users, makes an invitation from the console, suspends a user and revokes a
// key; the victims' sessions end at once. Every page renders in both languages with no missing message.
func TestAdminPages(t *testing.T) {
	db := storetest.NewSQLite(t)
	s := testServer(t, db, testConfig(t, "--dev-allow-software-keys"))
	admin, _ := identitytest.Register(t, s.Identity(), identity.RoleAdmin)
	staff, _ := identitytest.Register(t, s.Identity(), identity.RoleStaff)
	doctor, _ := identitytest.Register(t, s.Identity(), identity.RoleRequester)
	csrf := s.h.csrfFor("session:" + admin.ID)
	as := func(method, path string, form url.Values, lang string) *httptest.ResponseRecorder {
		var req *http.Request
		if form != nil {
			form.Set("csrf", csrf)
			req = httptest.NewRequest(method, path+"?lang="+lang, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", s.cfg.PublicConsoleURL)
		} else {
			req = httptest.NewRequest(method, path+"?lang="+lang, nil)
		}
		req.AddCookie(&http.Cookie{Name: "gw_session_console", Value: admin.Token})
		return s.call(Console, req)
	}
	for _, lang := range []string{"fr", "en"} {
		for _, p := range []string{"/admin", "/admin/users", "/admin/invitations"} {
			res := as("GET", p, nil, lang)
			if res.Code != 200 {
				t.Fatalf("%s: %d", p, res.Code)
			}
			if m := missingMessage.FindString(res.Body.String()); m != "" {
				t.Errorf("%s (%s): missing message %s", p, lang, m)
			}
			if !strings.Contains(res.Body.String(), `class="dev-banner"`) {
				t.Errorf("%s: no dev banner", p)
			}
		}
	}
	res := as("POST", "/admin/invitations", url.Values{"role": {"officer"}, "name": {"Dr Officer"}, "professional_id": {"10001234567"}}, "en")
	link := regexp.MustCompile(`data-invitation-link>([^<]+)<`).FindStringSubmatch(res.Body.String())
	if res.Code != 200 || link == nil || !strings.HasPrefix(link[1], s.cfg.PublicConsoleURL+"/invite/") {
		t.Fatalf("create invitation: %d", res.Code)
	}
	before := snapshot(t, db)
	if res := as("POST", "/admin/invitations", url.Values{"role": {"emperor"}, "name": {"X"}}, "en"); res.Code != http.StatusBadRequest ||
		!strings.Contains(res.Body.String(), "Invalid invitation") {
		t.Fatalf("bad role: %d", res.Code)
	}
	if after := snapshot(t, db); after != before {
		t.Fatal("a refused invitation changed the state")
	}
	if res := as("POST", "/admin/users/"+staff.User.ID+"/suspend", url.Values{}, "en"); res.Code != http.StatusSeeOther {
		t.Fatalf("suspend: %d", res.Code)
	}
	if res := as("POST", "/admin/credentials/"+doctor.CredentialID+"/revoke", url.Values{}, "en"); res.Code != http.StatusSeeOther {
		t.Fatalf("revoke: %d", res.Code)
	}
	for _, v := range []struct {
		listener, cookie, token string
	}{{Console, "gw_session_console", staff.Token}, {Intake, "gw_session_intake", doctor.Token}} {
		req := httptest.NewRequest("GET", "/signin", nil)
		req.AddCookie(&http.Cookie{Name: v.cookie, Value: v.token})
		if res := s.call(v.listener, req); !strings.Contains(res.Body.String(), `data-webauthn="signin"`) {
			t.Errorf("%s: the ended session still counts", v.listener)
		}
	}
	if res := as("POST", "/admin/users/"+staff.User.ID+"/suspend", url.Values{}, "en"); res.Code != http.StatusNotFound {
		t.Fatalf("suspend twice: %d", res.Code)
	}
}
