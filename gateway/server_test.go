package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"gorm.io/gorm"

	"gatewayd/gateway"
	"gatewayd/gateway/keys"
	"gatewayd/gateway/store/storetest"
)

// testConfig builds a Config exactly as the CLI does, from flags.
func testConfig(t *testing.T, args ...string) *gateway.Config {
	t.Helper()
	cfg := &gateway.Config{}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse(append([]string{"--data-dir", t.TempDir()}, args...)); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Load(fs); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func testServer(t *testing.T, cfg *gateway.Config) (*gateway.Server, *gorm.DB) {
	t.Helper()
	db := storetest.New(t)
	master, _ := keys.FromBytes(make([]byte, keys.Size))
	srv, err := gateway.New(gateway.Deps{Config: cfg, DB: db, Keys: master, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return srv, db
}

// serveConsole serves the console on a real loopback socket, so the peer address is the TCP one.
func serveConsole(t *testing.T, srv *gateway.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Console()}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

// getFrom makes a request whose TCP source address is from (any 127.x address works on Linux loopback).
func getFrom(t *testing.T, from, addr, path string, header map[string]string) *http.Response {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	client := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}, Timeout: 10 * time.Second}
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestConsoleAllowUsesTCPPeer(t *testing.T) {
	srv, db := testServer(t, testConfig(t, "--console-allow", "127.0.0.1/32"))
	addr := serveConsole(t, srv)
	cases := []struct {
		name   string
		from   string
		header map[string]string
		want   int
	}{
		{"outside address", "127.0.0.2", nil, http.StatusForbidden},
		{"outside address claiming an allowed one", "127.0.0.2", map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Real-Ip": "127.0.0.1"}, http.StatusForbidden},
		{"outside address, unknown path", "127.0.0.2", nil, http.StatusForbidden},
		{"allowed address", "127.0.0.1", nil, http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := "/"
			if strings.Contains(tc.name, "unknown") {
				path = "/no/such/page"
			}
			resp := getFrom(t, tc.from, addr, path, tc.header)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	// The refusals are audited, but rate-limited: three refusals of one address in a minute make one row.
	var n int64
	db.Raw(`SELECT COUNT(*) FROM audit_events WHERE action = 'console.refused' AND actor = 'ip:127.0.0.2'`).Scan(&n)
	if n != 1 {
		t.Fatalf("%d console.refused rows, want 1", n)
	}
}

func TestTrustedProxyForwardsClientAddress(t *testing.T) {
	srv, _ := testServer(t, testConfig(t, "--console-allow", "10.1.0.0/16", "--trusted-proxies", "127.0.0.1/32"))
	addr := serveConsole(t, srv)
	if resp := getFrom(t, "127.0.0.1", addr, "/", map[string]string{"X-Forwarded-For": "10.1.2.3"}); resp.StatusCode != http.StatusOK {
		t.Fatalf("client 10.1.2.3 through the trusted proxy: status %d, want 200", resp.StatusCode)
	}
	// The left-most address is the client's own claim; only the hop the proxy appended counts.
	if resp := getFrom(t, "127.0.0.1", addr, "/", map[string]string{"X-Forwarded-For": "10.1.2.3, 192.0.2.9"}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("client 192.0.2.9 spoofing 10.1.2.3: status %d, want 403", resp.StatusCode)
	}
	if resp := getFrom(t, "127.0.0.2", addr, "/", map[string]string{"X-Forwarded-For": "10.1.2.3"}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("untrusted peer with a forwarded header: status %d, want 403", resp.StatusCode)
	}
}

// The two listeners share no path but the health check, static files, each listener's own home page, and the
// sign-in pages and passkey ceremonies that DESIGN.md puts on both (each listener with its own relying party,
// cookies and sessions). Nothing that needs a role is on both, and a new shared path fails this test.
func TestRouteTablesAreDisjoint(t *testing.T) {
	srv, _ := testServer(t, testConfig(t))
	allowed := map[string]bool{"/": true, "/healthz": true, "/static/*": true, "/signin": true, "/invite/:token": true,
		"/auth/register/begin": true, "/auth/register/finish": true, "/auth/signin/begin": true,
		"/auth/signin/finish": true, "/auth/signout": true}
	console := map[string]gateway.Route{}
	for _, r := range srv.ConsoleRoutes() {
		console[r.Method+" "+r.Path] = r
	}
	if len(srv.IntakeRoutes()) == 0 || len(console) == 0 {
		t.Fatal("empty route table")
	}
	for _, r := range srv.IntakeRoutes() {
		c, shared := console[r.Method+" "+r.Path]
		if !shared {
			continue
		}
		if !allowed[r.Path] {
			t.Errorf("%s %s is on both listeners", r.Method, r.Path)
		}
		for _, who := range []gateway.Access{r.Who, c.Who} {
			if who != gateway.Anyone && who != gateway.AnySignedIn {
				t.Errorf("%s %s is on both listeners and needs role %s", r.Method, r.Path, who)
			}
		}
	}
}

func TestSecurityHeadersAndErrorPages(t *testing.T) {
	srv, _ := testServer(t, testConfig(t))
	for _, tc := range []struct {
		name    string
		handler http.Handler
		path    string
		accept  string
		status  int
	}{
		{"intake home", srv.Intake(), "/", "", http.StatusOK},
		{"console home", srv.Console(), "/", "", http.StatusOK},
		{"intake 404 page", srv.Intake(), "/nowhere", "text/html", http.StatusNotFound},
		{"intake 404 json", srv.Intake(), "/api/nowhere", "application/json", http.StatusNotFound},
		{"console readyz", srv.Console(), "/readyz", "", http.StatusOK},
		{"readyz is not on intake", srv.Intake(), "/readyz", "", http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, tc.path, nil)
			req.RemoteAddr = "127.0.0.1:5555"
			if tc.accept != "" {
				req.Header.Set("Accept", tc.accept)
			}
			rec := httptest.NewRecorder()
			tc.handler.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d", rec.Code, tc.status)
			}
			h := rec.Header()
			if got := h.Get("Content-Security-Policy"); got != "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'" {
				t.Errorf("CSP %q", got)
			}
			if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
				t.Errorf("missing nosniff or referrer policy: %v", h)
			}
			if h.Get("Strict-Transport-Security") != "" {
				t.Error("HSTS sent without TLS")
			}
			rid := h.Get("X-Request-Id")
			if rid == "" {
				t.Fatal("no request id")
			}
			if tc.status == http.StatusNotFound {
				body := rec.Body.String()
				if !strings.Contains(body, rid) {
					t.Errorf("error body does not carry the request id %s: %s", rid, body)
				}
				if tc.accept == "application/json" {
					var v map[string]string
					if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil || v["request_id"] != rid || v["error"] == "" {
						t.Errorf("JSON error %q: %v", body, err)
					}
				} else if !strings.Contains(body, "<html") {
					t.Errorf("HTML error page expected: %s", body)
				}
			}
		})
	}
}

func TestLanguageSwitchIsRemembered(t *testing.T) {
	srv, _ := testServer(t, testConfig(t))
	get := func(path string, cookies []*http.Cookie, acceptLang string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Accept-Language", acceptLang)
		for _, c := range cookies {
			req.AddCookie(c)
		}
		rec := httptest.NewRecorder()
		srv.Intake().ServeHTTP(rec, req)
		return rec
	}
	if body := get("/", nil, "en-GB,en;q=0.9").Body.String(); !strings.Contains(body, `lang="en"`) {
		t.Fatal("Accept-Language en not honoured")
	}
	if body := get("/", nil, "").Body.String(); !strings.Contains(body, `<html lang="fr">`) {
		t.Fatal("French is not the default")
	}
	rec := get("/?lang=en", nil, "fr-FR")
	if !strings.Contains(rec.Body.String(), `<html lang="en">`) {
		t.Fatal("switch to English not applied")
	}
	cookies := rec.Result().Cookies()
	if body := get("/", cookies, "fr-FR").Body.String(); !strings.Contains(body, `<html lang="en">`) {
		t.Fatal("the switch was not remembered")
	}
}

func TestStaticFilesUseContentHashURLs(t *testing.T) {
	srv, _ := testServer(t, testConfig(t))
	rec := httptest.NewRecorder()
	srv.Intake().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	body := rec.Body.String()
	i := strings.Index(body, `href="/static/style.`)
	if i < 0 {
		t.Fatalf("no hashed stylesheet link in %s", body)
	}
	url := body[i+6 : i+6+strings.Index(body[i+6:], `"`)]
	rec = httptest.NewRecorder()
	srv.Intake().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, url, nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Header().Get("Cache-Control"), "immutable") ||
		!strings.HasPrefix(rec.Header().Get("Content-Type"), "text/css") {
		t.Fatalf("%s: %d %v", url, rec.Code, rec.Header())
	}
	rec = httptest.NewRecorder()
	srv.Intake().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/static/style.css", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("unhashed URL answered %d", rec.Code)
	}
}

func TestServeShutsDownGracefully(t *testing.T) {
	srv, _ := testServer(t, testConfig(t))
	in, _ := net.Listen("tcp", "127.0.0.1:0")
	co, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, in, co) }()
	resp, err := http.Get("http://" + in.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok\n" {
		t.Fatalf("healthz said %q", b)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return after the context ended")
	}
}
