package browsertest_test

import (
	"context"
	"testing"

	"github.com/chromedp/chromedp"

	"gatewayd/gateway/browsertest"
	"gatewayd/gateway/identity"
	"gatewayd/gateway/store/storetest"
)

// TestPasskeyEndToEnd opens an invitation link in Chromium, registers a passkey with the virtual
// authenticator, signs out, signs in again and reaches the role's home page: a requester on intake and an
// officer on console (software keys allowed by the dev flag).
func TestPasskeyEndToEnd(t *testing.T) {
	browser := browsertest.Browser(t)
	srv := browsertest.Start(t, storetest.NewSQLite(t), "--dev-allow-software-keys")
	for _, role := range []string{identity.RoleRequester, identity.RoleOfficer} {
		t.Run(role, func(t *testing.T) {
			inv, err := srv.Identity().Invite(context.Background(), "cli", identity.NewInvitation{Role: role, DisplayName: "E2E " + role})
			if err != nil {
				t.Fatal(err)
			}
			tab := browsertest.Tab(t, browser)
			home := `[data-home="` + role + `"]`
			start := `[data-webauthn-start]`
			steps := []struct {
				name string
				act  chromedp.Action[chromedp.Void]
			}{
				{"open invitation", chromedp.Navigate(inv.Link)},
				{"register", chromedp.Click(`[data-webauthn="register"] `+start, chromedp.NodeVisible)},
				{"reach home after registration", chromedp.WaitVisible(home)},
				{"sign out", chromedp.Click(`[data-test="signout"]`, chromedp.NodeVisible)},
				{"sign-in page", chromedp.WaitVisible(`[data-webauthn="signin"] ` + start)},
				{"sign in", chromedp.Click(`[data-webauthn="signin"] `+start, chromedp.NodeVisible)},
				{"reach home after sign-in", chromedp.WaitVisible(home)},
			}
			for _, s := range steps {
				if err := browsertest.Step(tab, s.act); err != nil {
					// The tab's deadline may be spent: look at the page with a fresh one.
					t.Fatalf("%s: %v (page: %s)", s.name, err, browsertest.Describe(tab))
				}
			}
			if role == identity.RoleOfficer {
				banner, err := chromedp.Run(tab, chromedp.Text(`.dev-banner`))
				if err != nil || banner == "" {
					t.Fatalf("the dev banner is missing on the console: %v", err)
				}
			}
			var sessions int64
			srv.DB.Raw("SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.role = ? AND s.ended_at IS NULL", role).Scan(&sessions)
			if sessions != 1 {
				t.Fatalf("open sessions for %s: %d, want 1 (the first ended at sign-out)", role, sessions)
			}
		})
	}
}

// TestPasskeyRefusalsShown: without the dev flag an officer's authenticator (Chromium's virtual one, a
// software key) is refused and the page says why; with user verification failing, the page says the
// operation was cancelled. Nothing is registered either way.
func TestPasskeyRefusalsShown(t *testing.T) {
	browser := browsertest.Browser(t)
	srv := browsertest.Start(t, storetest.NewSQLite(t))
	for _, tc := range []struct {
		name, role, state string
		noUV              bool
	}{
		{"officer software key", identity.RoleOfficer, "hardware_key_needed", false},
		{"user verification fails", identity.RoleRequester, "cancelled", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv, err := srv.Identity().Invite(context.Background(), "cli", identity.NewInvitation{Role: tc.role, DisplayName: "E2E"})
			if err != nil {
				t.Fatal(err)
			}
			tab := browsertest.Tab(t, browser)
			if tc.noUV {
				browsertest.SetUserVerified(t, tab, false)
			}
			for _, a := range []chromedp.Action[chromedp.Void]{
				chromedp.Navigate(inv.Link),
				chromedp.Click(`[data-webauthn="register"] [data-webauthn-start]`, chromedp.NodeVisible),
				chromedp.WaitVisible(`[data-webauthn-status][data-state="` + tc.state + `"]`),
			} {
				if err := browsertest.Step(tab, a); err != nil {
					t.Fatalf("%v (page: %s)", err, browsertest.Describe(tab))
				}
			}
			msg, err := chromedp.Run(tab, chromedp.Text(`[data-webauthn-status]`))
			if err != nil || len(msg) < 20 {
				t.Fatalf("message %q: %v", msg, err)
			}
			var users int64
			srv.DB.Raw("SELECT COUNT(*) FROM users").Scan(&users)
			if users != 0 {
				t.Fatalf("%d users registered", users)
			}
		})
	}
}
