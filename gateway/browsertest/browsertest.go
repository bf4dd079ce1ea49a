// Package browsertest drives the gateway in a real headless Chromium for end-to-end tests: it starts a server
// on loopback ports (Start: plain HTTP on localhost, so WebAuthn's RP id is "localhost"; StartHTTPS: TLS on two
// host names that only the test's Chromium resolves, as deployed) and browser tabs with a CDP virtual
// authenticator. Later issues extend the end-to-end suite with it.
package browsertest

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
	"github.com/spf13/pflag"
	"gorm.io/gorm"

	"gatewayd/gateway"
	"gatewayd/gateway/identity"
	"gatewayd/gateway/keys"
	"gatewayd/gateway/tlstest"
)

// Server is a gateway serving on two loopback ports.
type Server struct {
	*gateway.Server
	DB         *gorm.DB
	Config     *gateway.Config
	Keys       *keys.Master
	IntakeURL  string
	ConsoleURL string
}

// Start serves db on two fresh loopback ports until the test ends. args are extra flags
// (e.g. "--dev-allow-software-keys").
func Start(t testing.TB, db *gorm.DB, args ...string) *Server {
	t.Helper()
	intakeLn, consoleLn := listen(t), listen(t)
	base := []string{"--public-intake-url", "http://localhost:" + port(intakeLn), "--public-console-url", "http://localhost:" + port(consoleLn)}
	return serve(t, db, intakeLn, consoleLn, append(base, args...))
}

// The host names of StartHTTPS, as a hospital names its two listeners; Chromium resolves them to loopback
// (BrowserHTTPS), nothing else does.
const (
	IntakeHost  = "demandes.hopital.test"
	ConsoleHost = "passerelle.hopital.test"
)

// StartHTTPS serves db over TLS on two fresh loopback ports, with a certificate the test CA issues for
// IntakeHost and ConsoleHost, as deployed: the public URLs are https://IntakeHost:port and
// https://ConsoleHost:port, so each relying party's id is its host. serve's own start checks pass.
func StartHTTPS(t testing.TB, db *gorm.DB, ca *tlstest.CA, args ...string) (*Server, tlstest.Server) {
	t.Helper()
	cert := ca.Issue(t, t.TempDir(), "gateway", IntakeHost, ConsoleHost)
	intakeLn, consoleLn := listen(t), listen(t)
	base := []string{"--tls-cert", cert.CertFile, "--tls-key", cert.KeyFile,
		"--public-intake-url", "https://" + IntakeHost + ":" + port(intakeLn), "--public-console-url", "https://" + ConsoleHost + ":" + port(consoleLn)}
	return serve(t, db, intakeLn, consoleLn, append(base, args...)), cert
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func port(ln net.Listener) string { return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) }

func serve(t testing.TB, db *gorm.DB, intakeLn, consoleLn net.Listener, args []string) *Server {
	t.Helper()
	cfg := &gateway.Config{}
	fs := pflag.NewFlagSet("browsertest", pflag.ContinueOnError)
	cfg.RegisterFlags(fs)
	base := []string{"--data-dir", t.TempDir(), "--intake-listen", intakeLn.Addr().String(), "--console-listen", consoleLn.Addr().String()}
	if err := fs.Parse(append(base, args...)); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Load(fs); err != nil {
		t.Fatal(err)
	}
	if err := cfg.CheckServing(); err != nil {
		t.Fatal(err)
	}
	// A master key of the test's own, so that records and approvals are served.
	raw := make([]byte, 32)
	rand.Read(raw)
	master, err := keys.FromBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := gateway.New(gateway.Deps{Config: cfg, DB: db, Keys: master, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, intakeLn, consoleLn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &Server{Server: srv, DB: db, Config: cfg, Keys: master, IntakeURL: cfg.PublicIntakeURL, ConsoleURL: cfg.PublicConsoleURL}
}

// URLFor is the listener's public URL for a role's user.
func (s *Server) URLFor(role string) string {
	if identity.ListenerFor(role) == identity.Intake {
		return s.IntakeURL
	}
	return s.ConsoleURL
}

// ChromiumPath is GATEWAY_TEST_CHROMIUM or /usr/bin/chromium. A missing browser skips the test, except under
// CI=true where the browser tests must run.
func ChromiumPath(t testing.TB) string {
	t.Helper()
	p := os.Getenv("GATEWAY_TEST_CHROMIUM")
	if p == "" {
		p = "/usr/bin/chromium"
	}
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium not found at %s: in CI the browser tests must run", p)
		}
		t.Skipf("chromium not found at %s (set GATEWAY_TEST_CHROMIUM): browser test skipped", p)
	}
	return p
}

// Browser starts a headless Chromium for the test (fresh profile, no background networking) and returns its
// context; each Tab opens in it. extra are more flags (BrowserHTTPS's).
func Browser(t testing.TB, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(ChromiumPath(t)),
		chromedp.Headless,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "profile")),
	)
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// BrowserHTTPS starts Chromium for a StartHTTPS server: the two host names resolve to loopback (and no other
// name resolves at all), and the server's certificate key is trusted, as a hospital's own CA would be, without
// touching any system store.
func BrowserHTTPS(t testing.TB, cert tlstest.Server) context.Context {
	t.Helper()
	return Browser(t,
		chromedp.Flag("host-resolver-rules", "MAP "+IntakeHost+" 127.0.0.1, MAP "+ConsoleHost+" 127.0.0.1, MAP * ~NOTFOUND"),
		chromedp.Flag("ignore-certificate-errors-spki-list", cert.SPKIHash()))
}

// Tab opens a new tab with its own virtual authenticator: CTAP 2.1 over USB, resident keys, user
// verification that succeeds, and automatic presence (without it create() waits forever). Run actions on it
// with Step, which gives each a deadline. Tabs share cookies unless opened with
// chromedp.WithNewBrowserContext() (one person per tab on the same listener).
func Tab(t testing.TB, browser context.Context, opts ...chromedp.ContextOption) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, opts...)
	t.Cleanup(cancel)
	if _, err := chromedp.Call(ctx, webauthn.Enable, webauthn.EnableParams{}); err != nil {
		t.Fatalf("WebAuthn.enable: %v", err)
	}
	res, err := chromedp.Call(ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{
		Options: &webauthn.VirtualAuthenticatorOptions{
			Protocol: webauthn.AuthenticatorProtocolCtap2, Ctap2version: webauthn.Ctap2versionCtap21,
			Transport: webauthn.AuthenticatorTransportUsb, HasResidentKey: true, HasUserVerification: true,
			IsUserVerified: true, AutomaticPresenceSimulation: true,
		}})
	if err != nil {
		t.Fatalf("WebAuthn.addVirtualAuthenticator: %v", err)
	}
	return context.WithValue(ctx, authenticatorKey{}, res.AuthenticatorID)
}

type authenticatorKey struct{}

// SetUserVerified makes the tab's authenticator pass or fail user verification from now on.
func SetUserVerified(t testing.TB, tab context.Context, ok bool) {
	t.Helper()
	id, _ := tab.Value(authenticatorKey{}).(webauthn.AuthenticatorID)
	if _, err := chromedp.Call(tab, webauthn.SetUserVerified, webauthn.SetUserVerifiedParams{AuthenticatorID: id, IsUserVerified: ok}); err != nil {
		t.Fatalf("WebAuthn.setUserVerified: %v", err)
	}
}

// Screenshot saves the page into the folder GATEWAY_SCREENSHOTS names (the README embeds them), or else the
// test's temporary folder, and returns the file's path.
func Screenshot(t testing.TB, ctx context.Context, name string) string {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(60)) // small files: the README embeds them
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := ScreenshotDir()
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".jpeg")
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// ScreenshotDir is GATEWAY_SCREENSHOTS, a relative path being taken from the repository's root (as the README
// refers to docs/screenshots), or "" when unset.
func ScreenshotDir() string {
	dir := os.Getenv("GATEWAY_SCREENSHOTS")
	if dir == "" || filepath.IsAbs(dir) {
		return dir
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", dir)
}

// Describe says where a tab is and what its main text reads, for failure messages.
func Describe(tab context.Context) string {
	ctx, cancel := context.WithTimeout(tab, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + " :: " + (document.querySelector("main")||document.body).innerText.slice(0, 300)`))
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	return s
}

// Step runs one action with its own deadline, so that a stuck page fails the test (and leaves the tab
// readable for Describe) instead of hanging it.
func Step(tab context.Context, a chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(tab, 20*time.Second)
	defer cancel()
	return chromedp.Do(ctx, a)
}

// professionalIDs numbers the people the tests invite: a professional id is one person (issue 11), so two
// accounts of one test must not share one unless the test links them.
var professionalIDs atomic.Int64

// NextProfessionalID returns an 11-digit professional id (RPPS-shaped) no other account of this process has.
func NextProfessionalID() string {
	return fmt.Sprintf("1%010d", professionalIDs.Add(1))
}

// SignUp invites a user of role, opens the invitation in tab and registers the tab's virtual authenticator,
// leaving the user signed in on their home page. It returns the user's id.
func SignUp(t testing.TB, srv *Server, tab context.Context, role, name string) string {
	t.Helper()
	inv, err := srv.Identity().Invite(context.Background(), "cli", identity.NewInvitation{Role: role, DisplayName: name,
		ProfessionalID: NextProfessionalID()})
	if err != nil {
		t.Fatal(err)
	}
	Run(t, tab, "sign up "+role,
		chromedp.Navigate(inv.Link),
		chromedp.Click(`[data-webauthn="register"] [data-webauthn-start]`, chromedp.NodeVisible),
		chromedp.WaitVisible(`[data-home="`+role+`"]`))
	var id string
	if err := srv.DB.Raw("SELECT id FROM users WHERE display_name = ?", name).Scan(&id).Error; err != nil || id == "" {
		t.Fatalf("user %s: %v", name, err)
	}
	return id
}

// Run runs actions in order on tab, each with its own deadline, and fails the test with the page's text on
// the first that fails.
func Run(t testing.TB, tab context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	for i, a := range actions {
		if err := Step(tab, a); err != nil {
			t.Fatalf("%s, step %d: %v (page: %s)", what, i+1, err, Describe(tab))
		}
	}
}
