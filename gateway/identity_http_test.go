package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"gorm.io/gorm"

	"gatewayd/gateway/identity"
	"gatewayd/gateway/identity/identitytest"
	"gatewayd/gateway/store/storetest"
)

func testConfig(t *testing.T, args ...string) *Config {
	t.Helper()
	cfg := &Config{}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse(append([]string{"--data-dir", t.TempDir(), "--intake-listen", "127.0.0.1:8080",
		"--console-listen", "127.0.0.1:8081"}, args...)); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Load(fs); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func testServer(t *testing.T, db *gorm.DB, cfg *Config) *Server {
	t.Helper()
	s, err := New(Deps{Config: cfg, DB: db, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// call sends one request to a listener from a loopback client.
func (s *Server) call(listener string, r *http.Request) *httptest.ResponseRecorder {
	r.RemoteAddr = "127.0.0.1:40000"
	w := httptest.NewRecorder()
	if listener == Intake {
		s.intake.ServeHTTP(w, r)
	} else {
		s.console.ServeHTTP(w, r)
	}
	return w
}

func (s *Server) origin(listener string) string {
	if listener == Intake {
		return s.cfg.PublicIntakeURL
	}
	return s.cfg.PublicConsoleURL
}

// snapshot is the identity state a refused request must leave alone.
func snapshot(t *testing.T, db *gorm.DB) string {
	t.Helper()
	var out []string
	for _, q := range []string{"SELECT COUNT(*) FROM users WHERE status = 'active'", "SELECT COUNT(*) FROM invitations",
		"SELECT COUNT(*) FROM credentials WHERE revoked_at IS NULL", "SELECT COUNT(*) FROM sessions WHERE ended_at IS NULL",
		"SELECT COUNT(*) FROM ceremonies", "SELECT COUNT(*) FROM audit_events"} {
		var n int64
		if err := db.Raw(q).Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprint(n))
	}
	return strings.Join(out, ",")
}

// concrete fills a route's parameters with values of the right shape (an id of 32 hex digits, a token of 43
// base64url characters; see paramPattern), so that the check under test is reached, not the 404 of a bad id.
func concrete(path string) string {
	path = strings.ReplaceAll(path, ":token", strings.Repeat("t", 43))
	path = regexp.MustCompile(`:[a-z]+`).ReplaceAllString(path, "0123456789abcdef0123456789abcdef")
	return strings.ReplaceAll(path, "*", "x")
}

// roleOf is a role a session needs for a route (the first of the roles an access like OfficerOrDPO names): a
// metrics scraper outside --metrics-allow is an admin.
func roleOf(a Access) string {
	if a == MetricsScraper {
		return identity.RoleAdmin
	}
	first, _, _ := strings.Cut(string(a), "|")
	return first
}

type who struct {
	name   string
	cookie *http.Cookie // nil: anonymous
	csrf   string
}

// TestRoutesRefuseForeignAndAnonymous walks every route of both listeners: state-changing ones answer 403
// without a CSRF token, with a foreign Origin, or with no origin information, and change nothing; routes that
// need a role refuse the other roles and anonymous visitors.
func TestRoutesRefuseForeignAndAnonymous(t *testing.T) {
	db := storetest.NewSQLite(t)
	s := testServer(t, db, testConfig(t, "--dev-allow-software-keys"))
	h := s.h
	sessions := map[string]who{}
	for _, role := range identity.Roles {
		ns, _ := identitytest.Register(t, s.Identity(), role)
		l := identity.ListenerFor(role)
		sessions[role] = who{name: role, cookie: &http.Cookie{Name: "gw_session_" + l, Value: ns.Token}, csrf: h.csrfFor("session:" + ns.ID)}
	}
	anon := func(l string) who {
		return who{name: "anonymous", cookie: &http.Cookie{Name: "gw_pre_" + l, Value: "pre"}, csrf: h.csrfFor("pre:" + l + ":pre")}
	}
	tables := map[string][]Route{Intake: s.IntakeRoutes(), Console: s.ConsoleRoutes()}
	unsafe := 0
	for listener, routes := range tables {
		for _, r := range routes {
			path := concrete(r.Path)
			// The caller allowed by Who, so that only the check under test can refuse.
			allowed := anon(listener)
			if r.Who == AnySignedIn {
				allowed = sessions[map[string]string{Intake: identity.RoleRequester, Console: identity.RoleAdmin}[listener]]
			} else if r.Who != Anyone {
				allowed = sessions[roleOf(r.Who)]
			}
			send := func(w who, origin, token string) *httptest.ResponseRecorder {
				req := httptest.NewRequest(r.Method, path, strings.NewReader(`{}`))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json")
				if origin != "" {
					req.Header.Set("Origin", origin)
				}
				if token != "" {
					req.Header.Set(csrfHeader, token)
				}
				if w.cookie != nil {
					c := *w.cookie
					if strings.HasPrefix(c.Name, "gw_session_") {
						c.Name = "gw_session_" + listener // a token from the other listener must mean nothing
					}
					req.AddCookie(&c)
				}
				return s.call(listener, req)
			}
			if r.Method != http.MethodGet {
				unsafe++
				for _, tc := range []struct{ name, origin, token string }{
					{"no token", s.origin(listener), ""},
					{"wrong token", s.origin(listener), "forged"},
					{"foreign origin", "http://evil.example", allowed.csrf},
					{"other listener's origin", s.origin(map[string]string{Intake: Console, Console: Intake}[listener]), allowed.csrf},
					{"no origin at all", "", allowed.csrf},
					{"null origin without Sec-Fetch-Site", "null", allowed.csrf},
				} {
					before := snapshot(t, db)
					res := send(allowed, tc.origin, tc.token)
					if res.Code != http.StatusForbidden {
						t.Errorf("%s %s %s (%s): status %d, want 403", listener, r.Method, r.Path, tc.name, res.Code)
					}
					if after := snapshot(t, db); after != before {
						t.Errorf("%s %s %s (%s): state changed %s -> %s", listener, r.Method, r.Path, tc.name, before, after)
					}
				}
				// Control: the right caller with token and origin passes the CSRF check.
				if res := send(allowed, s.origin(listener), allowed.csrf); res.Code == http.StatusForbidden {
					t.Errorf("%s %s %s: the allowed caller was refused", listener, r.Method, r.Path)
				}
			}
			if r.Who == Anyone {
				continue
			}
			callers := []who{anon(listener)}
			for _, role := range identity.Roles {
				if !r.Who.allows(role) && roleOf(r.Who) != role && !(r.Who == AnySignedIn && identity.ListenerFor(role) == listener) {
					callers = append(callers, sessions[role])
				}
			}
			for _, c := range callers {
				before := snapshot(t, db)
				res := send(c, s.origin(listener), c.csrf)
				ok := res.Code == http.StatusForbidden || res.Code == http.StatusUnauthorized ||
					(res.Code == http.StatusSeeOther && res.Header().Get("Location") == "/signin")
				if !ok {
					t.Errorf("%s %s %s as %s: status %d, want refusal", listener, r.Method, r.Path, c.name, res.Code)
				}
				// A refused GET may touch the caller's session (last seen) but changes no row count.
				if after := snapshot(t, db); after != before {
					t.Errorf("%s %s %s as %s: state changed", listener, r.Method, r.Path, c.name)
				}
			}
		}
	}
	if unsafe < 8 {
		t.Fatalf("only %d state-changing routes walked", unsafe)
	}
}

// TestSignInOverHTTP registers through the invitation page and the ceremony endpoints, checks the cookie,
// signs out and shows the old cookie is worthless.
func TestSignInOverHTTP(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", tlsOn), func(t *testing.T) {
			db := storetest.NewSQLite(t)
			cfg := testConfig(t)
			if tlsOn { // New does not read the files; the cookie rules follow the https:// origin.
				cfg.TLSCert, cfg.TLSKey = "cert.pem", "key.pem"
				cfg.PublicIntakeURL, cfg.PublicConsoleURL = "https://localhost:8080", "https://localhost:8081"
			}
			s := testServer(t, db, cfg)
			inv, err := s.Identity().Invite(t.Context(), "cli", identity.NewInvitation{Role: identity.RoleRequester, DisplayName: "Dr Test"})
			if err != nil {
				t.Fatal(err)
			}
			jar := map[string]*http.Cookie{}
			do := func(method, path, body string) *httptest.ResponseRecorder {
				req := httptest.NewRequest(method, path, strings.NewReader(body))
				req.Header.Set("Origin", cfg.PublicIntakeURL)
				req.Header.Set("Accept", "application/json")
				for _, c := range jar {
					req.AddCookie(c)
				}
				res := s.call(Intake, req)
				for _, c := range res.Result().Cookies() {
					jar[c.Name] = c
					if c.MaxAge < 0 {
						delete(jar, c.Name)
					}
				}
				return res
			}
			page := do("GET", "/invite/"+inv.Token, "")
			if page.Code != 200 {
				t.Fatalf("invitation page: %d", page.Code)
			}
			csrf := regexp.MustCompile(`name="csrf-token" content="([^"]+)"`).FindStringSubmatch(page.Body.String())
			if csrf == nil {
				t.Fatal("no CSRF token on the invitation page")
			}
			post := func(path, body string) *httptest.ResponseRecorder {
				req := httptest.NewRequest("POST", path, strings.NewReader(body))
				req.Header.Set("Origin", cfg.PublicIntakeURL)
				req.Header.Set(csrfHeader, csrf[1])
				req.Header.Set("Accept", "application/json") // as the page's script does
				for _, c := range jar {
					req.AddCookie(c)
				}
				res := s.call(Intake, req)
				for _, c := range res.Result().Cookies() {
					jar[c.Name] = c
				}
				return res
			}
			begin := post("/auth/register/begin", `{"token":"`+inv.Token+`"}`)
			var b struct {
				Ceremony string
				Options  json.RawMessage
			}
			if err := json.Unmarshal(begin.Body.Bytes(), &b); err != nil || begin.Code != 200 {
				t.Fatalf("register begin: %d %s", begin.Code, begin.Body)
			}
			k := identitytest.NewKey(cfg.PublicIntakeURL)
			resp, err := k.Attest(b.Options)
			if err != nil {
				t.Fatal(err)
			}
			fin := post("/auth/register/finish?ceremony="+b.Ceremony, string(resp))
			if fin.Code != 200 || !strings.Contains(fin.Body.String(), `"/home"`) {
				t.Fatalf("register finish: %d %s", fin.Code, fin.Body)
			}
			var sc *http.Cookie
			for _, c := range fin.Result().Cookies() {
				if strings.Contains(c.Name, "gw_session_intake") {
					sc = c
				}
			}
			wantName := "gw_session_intake"
			if tlsOn {
				wantName = "__Host-" + wantName
			}
			if sc == nil || sc.Name != wantName || !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/" || sc.Secure != tlsOn || sc.Domain != "" {
				t.Fatalf("session cookie %+v", sc)
			}
			oldCookie := *sc
			home := do("GET", "/home", "")
			if home.Code != 200 || !strings.Contains(home.Body.String(), `data-home="requester"`) {
				t.Fatalf("home: %d", home.Code)
			}
			// The page's token is now bound to the session.
			csrf = regexp.MustCompile(`name="csrf-token" content="([^"]+)"`).FindStringSubmatch(home.Body.String())
			out := post("/auth/signout", "")
			if out.Code != http.StatusOK && out.Code != http.StatusSeeOther {
				t.Fatalf("sign out: %d", out.Code)
			}
			req := httptest.NewRequest("GET", "/home", nil)
			req.AddCookie(&oldCookie)
			if res := s.call(Intake, req); res.Code != http.StatusSeeOther || res.Header().Get("Location") != "/signin" {
				t.Fatalf("old cookie after sign-out: %d", res.Code)
			}
			// Signing in while the audit log cannot be written: "try again later" (503), never "refused" (the
			// user would think the key was refused), and no session.
			page = do("GET", "/signin", "")
			csrf = regexp.MustCompile(`name="csrf-token" content="([^"]+)"`).FindStringSubmatch(page.Body.String())
			begin = post("/auth/signin/begin", `{}`)
			if err := json.Unmarshal(begin.Body.Bytes(), &b); err != nil || begin.Code != 200 {
				t.Fatalf("sign-in begin: %d %s", begin.Code, begin.Body)
			}
			if resp, err = k.Assert(b.Options); err != nil {
				t.Fatal(err)
			}
			sessions := countRows(t, db, "sessions")
			restore := storetest.RefuseAudit(t, db)
			fin = post("/auth/signin/finish?ceremony="+b.Ceremony, string(resp))
			restore()
			var e errorJSON
			if json.Unmarshal(fin.Body.Bytes(), &e); fin.Code != http.StatusServiceUnavailable || e.Error != "unavailable" ||
				e.RequestID == "" || e.Message == "" || fin.Header().Get("Retry-After") == "" {
				t.Fatalf("sign-in with the audit down: %d %s (Retry-After %q)", fin.Code, fin.Body, fin.Header().Get("Retry-After"))
			}
			if countRows(t, db, "sessions") != sessions {
				t.Fatal("a session was opened without its audit row")
			}
		})
	}
}

func TestSignInRateLimited(t *testing.T) {
	db := storetest.NewSQLite(t)
	s := testServer(t, db, testConfig(t))
	csrf := s.h.csrfFor("pre:intake:p")
	codes := map[int]int{}
	for i := 0; i < signinAttemptsPerMinute+5; i++ {
		req := httptest.NewRequest("POST", "/auth/signin/begin", strings.NewReader(`{}`))
		req.Header.Set("Origin", s.cfg.PublicIntakeURL)
		req.Header.Set(csrfHeader, csrf)
		req.AddCookie(&http.Cookie{Name: "gw_pre_intake", Value: "p"})
		codes[s.call(Intake, req).Code]++
	}
	if codes[200] != signinAttemptsPerMinute || codes[429] != 5 {
		t.Fatalf("statuses %v", codes)
	}
}

func TestDevFlagRefusedWithTLSAndBannerShown(t *testing.T) {
	cfg := &Config{}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	cfg.RegisterFlags(fs)
	dir := t.TempDir()
	fs.Parse([]string{"--data-dir", dir, "--dev-allow-software-keys", "--tls-cert", "/etc/hostname", "--tls-key", "/etc/hostname"})
	err := cfg.Load(fs)
	if err == nil || !strings.Contains(err.Error(), "--dev-allow-software-keys") {
		t.Fatalf("dev flag with TLS: %v", err)
	}
	s := testServer(t, storetest.NewSQLite(t), testConfig(t, "--dev-allow-software-keys"))
	for _, l := range []string{Console, Intake} {
		res := s.call(l, httptest.NewRequest("GET", "/signin", nil))
		has := strings.Contains(res.Body.String(), `class="dev-banner"`)
		if has != (l == Console) {
			t.Errorf("%s: banner shown=%v", l, has)
		}
	}
}
