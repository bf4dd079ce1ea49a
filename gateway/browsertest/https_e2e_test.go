package browsertest_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"gatewayd/approvals"
	"gatewayd/gateway/browsertest"
	"gatewayd/gateway/identity"
	"gatewayd/gateway/records"
	"gatewayd/gateway/store/storetest"
	"gatewayd/gateway/tlstest"
)

// TestHTTPSEndToEnd runs the gateway as deployed: TLS on both listeners with a certificate from the test's
// CA, real host names (Chromium resolves them to loopback), passkeys bound to those hosts, and officers'
// keys checked against attestation roots (no dev flag: TLS refuses it). A requester registers, signs out and
// signs in again, files a request; an officer registers and signs the approval. Every cookie is __Host- and
// Secure, and both listeners send HSTS.
func TestHTTPSEndToEnd(t *testing.T) {
	ca := tlstest.NewCA(t)
	srv, cert := browsertest.StartHTTPS(t, storetest.NewSQLite(t), ca, "--attestation-roots", browsertest.ChromiumAttestationRoot(t))
	if !strings.HasPrefix(srv.IntakeURL, "https://"+browsertest.IntakeHost+":") {
		t.Fatalf("intake URL %s", srv.IntakeURL)
	}
	ctx := context.Background()
	if _, err := srv.Records().Import(ctx, []string{testdataBundle(t)}, records.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	browser := browsertest.BrowserHTTPS(t, cert)
	doctor := browsertest.Tab(t, browser)
	officer := browsertest.Tab(t, browser)
	browsertest.SignUp(t, srv, doctor, identity.RoleRequester, "Dr Requester")
	start := `[data-webauthn-start]`
	browsertest.Run(t, doctor, "sign out and in again",
		chromedp.Click(`[data-test="signout"]`, chromedp.NodeVisible),
		chromedp.WaitVisible(`[data-webauthn="signin"] `+start),
		chromedp.Click(`[data-webauthn="signin"] `+start, chromedp.NodeVisible),
		chromedp.WaitVisible(`[data-home="requester"]`))
	browsertest.SignUp(t, srv, officer, identity.RoleOfficer, "Officer One")
	fileRequest(t, doctor, srv, "urgent")
	var id string
	srv.DB.Raw("SELECT id FROM approval_requests").Scan(&id)
	browsertest.Run(t, officer, "review and sign",
		chromedp.Navigate(srv.ConsoleURL+"/review/"+id),
		chromedp.Click(`[data-test="prepare-approve"]`, chromedp.NodeVisible),
		chromedp.WaitVisible(`[data-test="shown"]`),
		chromedp.Click(`[data-test="sign"]`),
		chromedp.WaitVisible(`[data-test="signed"]`))
	var status string
	srv.DB.Raw("SELECT status FROM approval_requests WHERE id = ?", id).Scan(&status)
	if status != "approved" {
		t.Fatalf("request %s after signing", status)
	}
	// The officer's key signed for the console's host name, on its https:// origin; the receipt verifies.
	rids, err := srv.Approvals().ReceiptIDs(ctx, id)
	if err != nil || len(rids) != 1 {
		t.Fatalf("receipts: %v %v", rids, err)
	}
	rc, err := srv.Approvals().Receipt(ctx, rids[0])
	if err != nil {
		t.Fatal(err)
	}
	if rc.RPID != browsertest.ConsoleHost || rc.Origin != srv.ConsoleURL {
		t.Fatalf("receipt signed for %s at %s, want %s at %s", rc.RPID, rc.Origin, browsertest.ConsoleHost, srv.ConsoleURL)
	}
	if _, err := approvals.VerifyReceipt(rc); err != nil {
		t.Fatalf("receipt: %v", err)
	}

	for _, c := range []struct {
		tab context.Context
		url string
	}{{doctor, srv.IntakeURL}, {officer, srv.ConsoleURL}} {
		res, err := chromedp.Call(c.tab, network.GetCookies, network.GetCookiesParams{URLs: []string{c.url + "/"}})
		if err != nil {
			t.Fatal(err)
		}
		sessions := 0
		for _, ck := range res.Cookies {
			if ck.Name == "lang" {
				continue // no secret; Secure is checked below all the same
			}
			if !strings.HasPrefix(ck.Name, "__Host-") || ck.Domain != strings.Split(strings.TrimPrefix(c.url, "https://"), ":")[0] {
				t.Errorf("%s: cookie %s for %s: want __Host- and host-only", c.url, ck.Name, ck.Domain)
			}
			if strings.HasPrefix(ck.Name, "__Host-gw_session_") {
				sessions++
			}
		}
		for _, ck := range res.Cookies {
			if !ck.Secure || !ck.HTTPOnly {
				t.Errorf("%s: cookie %s Secure=%v HttpOnly=%v", c.url, ck.Name, ck.Secure, ck.HTTPOnly)
			}
		}
		if sessions != 1 {
			t.Errorf("%s: %d session cookies, want 1", c.url, sessions)
		}
	}

	// HSTS on both listeners, seen by a client that trusts only the test CA and checks the host names.
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: tlsConfig(ca),
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, _ := net.SplitHostPort(addr)
			return (&net.Dialer{}).DialContext(ctx, network, "127.0.0.1:"+port)
		}}}
	for _, u := range []string{srv.IntakeURL + "/signin", srv.ConsoleURL + "/signin"} {
		resp, err := client.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if h := resp.Header.Get("Strict-Transport-Security"); !strings.HasPrefix(h, "max-age=63072000") {
			t.Errorf("%s: HSTS %q", u, h)
		}
	}
}

func tlsConfig(ca *tlstest.CA) *tls.Config {
	return &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
}
