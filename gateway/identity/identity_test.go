package identity

import (
	"context"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/store/storetest"

	"gatewayd/gateway/identity/attesttest"
)

// Authenticate and User scan a user by hand: every column of users, into the field it belongs to. A column
// added to users fails here until userColumns reads it too.
func TestAuthenticateReadsTheWholeUser(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		e := newEnv(t, db, nil)
		ctx := context.Background()
		ns, err := e.register(t, Intake, e.invite(t, RoleRequester).Token, newKey(Intake))
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Exec("UPDATE users SET professional_id = ?, person_id = ? WHERE id = ?", "10000000001", "person-1",
			ns.User.ID).Error; err != nil {
			t.Fatal(err)
		}
		got, err := e.svc.Authenticate(ctx, Intake, ns.Token)
		if err != nil {
			t.Fatal(err)
		}
		var want User
		if err := db.Take(&want, "id = ?", ns.User.ID).Error; err != nil {
			t.Fatal(err)
		}
		if !got.User.CreatedAt.Equal(want.CreatedAt) {
			t.Fatalf("created_at %v, want %v", got.User.CreatedAt, want.CreatedAt)
		}
		// User reads the same columns by hand.
		read, err := e.svc.User(ctx, ns.User.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !read.CreatedAt.Equal(want.CreatedAt) {
			t.Fatalf("User: created_at %v, want %v", read.CreatedAt, want.CreatedAt)
		}
		if _, err := e.svc.User(ctx, "no-such-user"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("User of an unknown id: %v, want ErrNotFound", err)
		}
		got.User.CreatedAt, read.CreatedAt, want.CreatedAt = time.Time{}, time.Time{}, time.Time{}
		if !reflect.DeepEqual(got.User, want) {
			t.Fatalf("user %+v, want %+v", got.User, want)
		}
		if !reflect.DeepEqual(read, want) {
			t.Fatalf("User: %+v, want %+v", read, want)
		}
		rows, err := db.Raw("SELECT * FROM users WHERE 1 = 0").Rows()
		if err != nil {
			t.Fatal(err)
		}
		cols, err := rows.Columns()
		rows.Close()
		if err != nil {
			t.Fatal(err)
		}
		if n := reflect.TypeFor[User]().NumField(); len(cols) != n {
			t.Fatalf("users has %d columns (%v), User %d fields: read the new one in Authenticate", len(cols), cols, n)
		}
	})
}

func TestRegisterSignInSignOut(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		e := newEnv(t, db, nil)
		ctx := context.Background()
		inv := e.invite(t, RoleRequester)
		k := newKey(Intake)
		ns, err := e.register(t, Intake, inv.Token, k)
		if err != nil {
			t.Fatalf("register: %v", err)
		}
		if ns.User.Role != RoleRequester {
			t.Fatalf("role %q", ns.User.Role)
		}
		if _, err := e.svc.Authenticate(ctx, Intake, ns.Token); err != nil {
			t.Fatalf("session after registration: %v", err)
		}
		// The invitation is used up.
		if _, _, err := e.svc.BeginRegistration(ctx, Intake, inv.Token); !errors.Is(err, ErrInvitationInvalid) {
			t.Fatalf("second use of invitation: %v", err)
		}
		if err := e.svc.SignOut(ctx, ns.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Authenticate(ctx, Intake, ns.Token); !errors.Is(err, ErrNoSession) {
			t.Fatalf("old cookie after sign-out: %v", err)
		}
		ns2, err := e.signIn(t, Intake, k)
		if err != nil {
			t.Fatalf("sign in: %v", err)
		}
		if ns2.Token == ns.Token || ns2.User.ID != ns.User.ID {
			t.Fatal("sign-in must give a new token for the same user")
		}
		// A console session is worthless on intake and the reverse.
		if _, err := e.svc.Authenticate(ctx, Console, ns2.Token); !errors.Is(err, ErrNoSession) {
			t.Fatalf("intake token on console: %v", err)
		}
		for _, action := range []string{"invitation.created", "invitation.used", "credential.registered", "session.signed_in", "session.signed_out"} {
			if n := count(t, db, "audit_events", "action = ?", action); n == 0 {
				t.Errorf("no audit row %s", action)
			}
		}
	})
}

func TestReplayedAssertionRefused(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		e := newEnv(t, db, nil)
		ctx := context.Background()
		k := newKey(Intake)
		if _, err := e.register(t, Intake, e.invite(t, RoleRequester).Token, k); err != nil {
			t.Fatal(err)
		}
		cid, resp := e.signInResponse(t, Intake, k)
		if _, err := e.svc.FinishSignIn(ctx, Intake, cid, resp, "192.0.2.1"); err != nil {
			t.Fatal(err)
		}
		before := count(t, db, "sessions", "")
		if _, err := e.svc.FinishSignIn(ctx, Intake, cid, resp, "192.0.2.1"); !errors.Is(err, ErrCeremonyNotFound) {
			t.Fatalf("same ceremony twice: %v", err)
		}
		// The same assertion against a fresh ceremony: its challenge does not match.
		_, cid2, err := e.svc.BeginSignIn(ctx, Intake)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.FinishSignIn(ctx, Intake, cid2, resp, "192.0.2.1"); !errors.Is(err, ErrVerification) {
			t.Fatalf("replay on new ceremony: %v", err)
		}
		if after := count(t, db, "sessions", ""); after != before {
			t.Fatalf("a refused replay opened a session (%d -> %d)", before, after)
		}
		if n := count(t, db, "audit_events", "action = ?", "session.signin_failed"); n != 2 {
			t.Fatalf("failed sign-ins audited: %d, want 2", n)
		}
	})
}

func TestExpiredCeremonyRefused(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		e := newEnv(t, db, nil)
		inv := e.invite(t, RoleRequester)
		k := newKey(Intake)
		cid, resp, err := e.registerResponse(t, Intake, inv.Token, k)
		if err != nil {
			t.Fatal(err)
		}
		e.clock.Add(6 * time.Minute)
		if _, err := e.svc.FinishRegistration(context.Background(), Intake, cid, resp, "192.0.2.1"); !errors.Is(err, ErrCeremonyExpired) {
			t.Fatalf("expired ceremony: %v", err)
		}
		if n := count(t, db, "users", ""); n != 0 {
			t.Fatalf("users after refused registration: %d", n)
		}
		if n := count(t, db, "invitations", "used_at IS NULL"); n != 1 {
			t.Fatal("the invitation must stay unused")
		}
	})
}

// A sign-in's ceremony is not stored while it waits (its state is sealed in its id); the write that opens the
// session records it as used, and every failed finish does too (one attempt per ceremony): a malformed answer,
// an answer for another ceremony. The valid answer that follows is refused as an unknown ceremony, and opens
// nothing. An expired ceremony is refused before anything is read, and stays refused: nothing to use up.
func TestFailedSignInUsesItsCeremony(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		e, k := withRequester(t, db)
		ctx := context.Background()
		_, other := e.signInResponse(t, Intake, k)
		for _, c := range []struct {
			name   string
			answer func(valid []byte) []byte
			before func()
			want   error
			used   int64 // rows of used_sign_ins the failure adds
			then   error // what the valid answer gets afterwards
		}{
			{"malformed", func([]byte) []byte { return []byte(`{"id":`) }, nil, ErrVerification, 1, ErrCeremonyNotFound},
			{"another ceremony's answer", func([]byte) []byte { return other }, nil, ErrVerification, 1, ErrCeremonyNotFound},
			{"expired", func(valid []byte) []byte { return valid }, func() { e.clock.Add(6 * time.Minute) }, ErrCeremonyExpired, 0, ErrCeremonyExpired},
		} {
			cid, valid := e.signInResponse(t, Intake, k)
			if c.before != nil {
				c.before()
			}
			sessions, used := count(t, db, "sessions", ""), count(t, db, "used_sign_ins", "")
			if _, err := e.svc.FinishSignIn(ctx, Intake, cid, c.answer(valid), "192.0.2.1"); !errors.Is(err, c.want) {
				t.Fatalf("%s: %v, want %v", c.name, err, c.want)
			}
			if n := count(t, db, "used_sign_ins", ""); n-used != c.used {
				t.Fatalf("%s: %d ceremonies recorded as used, want %d", c.name, n-used, c.used)
			}
			if _, err := e.svc.FinishSignIn(ctx, Intake, cid, valid, "192.0.2.1"); !errors.Is(err, c.then) {
				t.Fatalf("%s, then the valid answer: %v, want %v", c.name, err, c.then)
			}
			if n := count(t, db, "sessions", ""); n != sessions {
				t.Fatalf("%s: %d sessions opened", c.name, n-sessions)
			}
		}
	})
}

func TestInvitationOnlyOnItsListener(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		e := newEnv(t, db, func(c *Config) { c.DevAllowSoftwareKeys = true })
		ctx := context.Background()
		for _, tc := range []struct{ role, wrong string }{{RoleRequester, Console}, {RoleOfficer, Intake}, {RoleAdmin, Intake}} {
			inv := e.invite(t, tc.role)
			if _, _, err := e.svc.BeginRegistration(ctx, tc.wrong, inv.Token); !errors.Is(err, ErrInvitationInvalid) {
				t.Errorf("%s invitation on %s: %v", tc.role, tc.wrong, err)
			}
			if _, err := e.register(t, ListenerFor(tc.role), inv.Token, newKey(ListenerFor(tc.role))); err != nil {
				t.Errorf("%s invitation on its own listener: %v", tc.role, err)
			}
		}
		if _, _, err := e.svc.BeginRegistration(ctx, Intake, "not-a-token"); !errors.Is(err, ErrInvitationInvalid) {
			t.Errorf("unknown token: %v", err)
		}
		old := e.invite(t, RoleRequester)
		e.clock.Add(73 * time.Hour)
		if _, _, err := e.svc.BeginRegistration(ctx, Intake, old.Token); !errors.Is(err, ErrInvitationInvalid) {
			t.Errorf("expired invitation: %v", err)
		}
		if _, err := e.svc.Invite(ctx, "cli", NewInvitation{Role: "root", DisplayName: "x"}); !errors.Is(err, ErrInvalidRole) {
			t.Errorf("bad role: %v", err)
		}
	})
}

func TestOfficerNeedsHardwareKey(t *testing.T) {
	root, leaf, leafKey := attesttest.VendorCA(t, yubiKeyAAGUID)
	otherRoot, _, _ := attesttest.VendorCA(t, yubiKeyAAGUID)
	// The vendor root as an operator would configure it: a folder of PEM files.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "vendor.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}), 0o600)
	os.WriteFile(filepath.Join(dir, "README.txt"), []byte("not a certificate"), 0o600)
	fromFolder, err := LoadTrustAnchors(dir)
	if err != nil || fromFolder.Len() != 1 {
		t.Fatalf("load PEM folder: %v", err)
	}
	cases := []struct {
		name    string
		anchors *TrustAnchors
		dev     bool
		setup   func(k *key)
		wantErr error
	}{
		{"self attestation", NewTrustAnchors(root), false, func(k *key) {}, ErrHardwareKeyNeeded},
		{"self attestation claiming a YubiKey AAGUID", NewTrustAnchors(root), false, func(k *key) { k.auth.Aaguid = yubiKeyAAGUID }, ErrHardwareKeyNeeded},
		{"x5c from an unknown vendor", NewTrustAnchors(otherRoot), false, func(k *key) {
			k.auth.Aaguid, k.attestCert, k.attestKey = yubiKeyAAGUID, leaf, leafKey
		}, ErrHardwareKeyNeeded},
		{"x5c but backup eligible", NewTrustAnchors(root), false, func(k *key) {
			k.auth.Aaguid, k.attestCert, k.attestKey, k.backup = yubiKeyAAGUID, leaf, leafKey, true
		}, ErrHardwareKeyNeeded},
		{"x5c without anchors", nil, false, func(k *key) {
			k.auth.Aaguid, k.attestCert, k.attestKey = yubiKeyAAGUID, leaf, leafKey
		}, ErrNoTrustAnchors},
		{"x5c chained to our root", fromFolder, false, func(k *key) {
			k.auth.Aaguid, k.attestCert, k.attestKey = yubiKeyAAGUID, leaf, leafKey
		}, nil},
		{"software key with the dev flag", nil, true, func(k *key) {}, nil},
	}
	// The data-protection officer signs restrictions with a key: the same rules as officers.
	for _, role := range []string{RoleOfficer, RoleDPO} {
		for _, tc := range cases {
			t.Run(role+"/"+tc.name, func(t *testing.T) {
				db := storetest.NewSQLite(t)
				e := newEnv(t, db, func(c *Config) { c.TrustAnchors, c.DevAllowSoftwareKeys = tc.anchors, tc.dev })
				k := newKey(Console)
				tc.setup(k)
				_, err := e.register(t, Console, e.invite(t, role).Token, k)
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %v, want %v", err, tc.wantErr)
				}
				if tc.wantErr != nil {
					if n := count(t, db, "users", ""); n != 0 {
						t.Fatalf("refused key made %d users", n)
					}
					if n := count(t, db, "invitations", "used_at IS NULL"); n != 1 {
						t.Fatal("refused key used the invitation")
					}
					return
				}
				if _, err := e.signIn(t, Console, k); err != nil {
					t.Fatalf("sign in after accepted registration: %v", err)
				}
			})
		}
	}
}

func TestRevokedAndSuspendedRefusedAtOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		e := newEnv(t, db, nil)
		ctx := context.Background()
		k1 := newKey(Intake)
		ns, err := e.register(t, Intake, e.invite(t, RoleRequester).Token, k1)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.svc.RevokeCredential(ctx, "user:admin", ns.CredentialID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Authenticate(ctx, Intake, ns.Token); !errors.Is(err, ErrNoSession) {
			t.Fatalf("session of a revoked credential: %v", err)
		}
		if _, err := e.signIn(t, Intake, k1); !errors.Is(err, ErrUnknownCredential) {
			t.Fatalf("sign-in with a revoked credential: %v", err)
		}
		if err := e.svc.RevokeCredential(ctx, "user:admin", ns.CredentialID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("revoking twice: %v", err)
		}

		k2 := newKey(Intake)
		ns2, err := e.register(t, Intake, e.invite(t, RoleRequester).Token, k2)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.svc.Suspend(ctx, "user:admin", ns2.User.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Authenticate(ctx, Intake, ns2.Token); !errors.Is(err, ErrNoSession) {
			t.Fatalf("session of a suspended user: %v", err)
		}
		if _, err := e.signIn(t, Intake, k2); !errors.Is(err, ErrUserSuspended) {
			t.Fatalf("sign-in of a suspended user: %v", err)
		}
		if n := count(t, db, "sessions", "ended_at IS NULL"); n != 0 {
			t.Fatalf("%d sessions still open", n)
		}
		for _, a := range []string{"credential.revoked", "user.suspended"} {
			if count(t, db, "audit_events", "action = ?", a) != 1 {
				t.Errorf("audit %s missing", a)
			}
		}
	})
}

func TestOfficerCounterGoingBackRefused(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		e := newEnv(t, db, func(c *Config) { c.DevAllowSoftwareKeys = true })
		k := newKey(Console)
		if _, err := e.register(t, Console, e.invite(t, RoleOfficer).Token, k); err != nil {
			t.Fatal(err)
		}
		k.cred.Counter = 9
		if _, err := e.signIn(t, Console, k); err != nil { // counter 10
			t.Fatal(err)
		}
		k.cred.Counter = 4
		if _, err := e.signIn(t, Console, k); !errors.Is(err, ErrCounterWentBack) { // counter 5
			t.Fatalf("counter going back: %v", err)
		}
		if n := count(t, db, "credentials", "sign_count = 10"); n != 1 {
			t.Fatal("the stored counter must stay at 10")
		}
		k.cred.Counter = 10
		if _, err := e.signIn(t, Console, k); err != nil { // counter 11
			t.Fatalf("counter moving forward again: %v", err)
		}
	})
}

func TestSessionsStoreNoUsableToken(t *testing.T) {
	db := storetest.NewSQLite(t)
	e := newEnv(t, db, nil)
	ns, err := e.register(t, Intake, e.invite(t, RoleRequester).Token, newKey(Intake))
	if err != nil {
		t.Fatal(err)
	}
	var rows []sessionRow
	db.Find(&rows)
	for _, r := range rows {
		if r.TokenHash == ns.Token || r.ID == ns.Token {
			t.Fatal("the token is stored in clear")
		}
		for _, v := range []string{r.TokenHash, r.ID} {
			if _, err := e.svc.Authenticate(context.Background(), Intake, v); !errors.Is(err, ErrNoSession) {
				t.Fatalf("a stored value works as a cookie: %v", err)
			}
		}
	}
	if len(ns.Token) < 43 {
		t.Fatalf("token %d chars: not 256 bits", len(ns.Token))
	}
}

func TestSessionIdleAndAbsoluteExpiry(t *testing.T) {
	db := storetest.NewSQLite(t)
	e := newEnv(t, db, nil)
	ctx := context.Background()
	k := newKey(Intake)
	ns, err := e.register(t, Intake, e.invite(t, RoleRequester).Token, k)
	if err != nil {
		t.Fatal(err)
	}
	// Idle: 29 minutes apart keeps it alive (intake idle is 30 min); 30 minutes ends it.
	e.clock.Add(29 * time.Minute)
	if _, err := e.svc.Authenticate(ctx, Intake, ns.Token); err != nil {
		t.Fatalf("29 min idle: %v", err)
	}
	e.clock.Add(30 * time.Minute)
	if _, err := e.svc.Authenticate(ctx, Intake, ns.Token); !errors.Is(err, ErrNoSession) {
		t.Fatalf("30 min idle: %v", err)
	}
	// Absolute: active every 20 minutes, still over after 8 hours.
	ns2, err := e.signIn(t, Intake, k)
	if err != nil {
		t.Fatal(err)
	}
	for elapsed := time.Duration(0); elapsed < 8*time.Hour-20*time.Minute; elapsed += 20 * time.Minute {
		e.clock.Add(20 * time.Minute)
		if _, err := e.svc.Authenticate(ctx, Intake, ns2.Token); err != nil {
			t.Fatalf("active session at %v: %v", elapsed+20*time.Minute, err)
		}
	}
	e.clock.Add(20 * time.Minute)
	if _, err := e.svc.Authenticate(ctx, Intake, ns2.Token); !errors.Is(err, ErrNoSession) {
		t.Fatalf("session past 8h: %v", err)
	}
}

func TestConsoleIdleIsShorterAndConfigurable(t *testing.T) {
	db := storetest.NewSQLite(t)
	e := newEnv(t, db, nil)
	ctx := context.Background()
	ns, err := e.register(t, Console, e.invite(t, RoleAdmin).Token, newKey(Console))
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Add(14 * time.Minute)
	if _, err := e.svc.Authenticate(ctx, Console, ns.Token); err != nil {
		t.Fatalf("14 min idle on console: %v", err)
	}
	e.clock.Add(15 * time.Minute)
	if _, err := e.svc.Authenticate(ctx, Console, ns.Token); !errors.Is(err, ErrNoSession) {
		t.Fatalf("15 min idle on console: %v", err)
	}
	short := newEnv(t, storetest.NewSQLite(t), func(c *Config) { c.IdleConsole, c.SessionMax = time.Minute, 3*time.Minute })
	ns, err = short.register(t, Console, short.invite(t, RoleAdmin).Token, newKey(Console))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		short.clock.Add(59 * time.Second)
		if _, err := short.svc.Authenticate(ctx, Console, ns.Token); err != nil {
			t.Fatalf("configured idle, step %d: %v", i, err)
		}
	}
	short.clock.Add(61 * time.Second)
	if _, err := short.svc.Authenticate(ctx, Console, ns.Token); !errors.Is(err, ErrNoSession) {
		t.Fatalf("configured idle: %v", err)
	}
}

// TestCeremonyConsumedOnceUnderRace: many finishes of one sign-in ceremony race; exactly one opens a session.
func TestCeremonyConsumedOnceUnderRace(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		e := newEnv(t, db, nil)
		k := newKey(Intake)
		if _, err := e.register(t, Intake, e.invite(t, RoleRequester).Token, k); err != nil {
			t.Fatal(err)
		}
		cid, resp := e.signInResponse(t, Intake, k)
		before := count(t, db, "sessions", "")
		const n = 8
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			go func() {
				_, err := e.svc.FinishSignIn(context.Background(), Intake, cid, resp, "192.0.2.1")
				errs <- err
			}()
		}
		wins := 0
		for i := 0; i < n; i++ {
			err := <-errs
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, ErrCeremonyNotFound):
				t.Errorf("loser: %v", err)
			}
		}
		if wins != 1 || count(t, db, "sessions", "")-before != 1 {
			t.Fatalf("%d winners, %d new sessions", wins, count(t, db, "sessions", "")-before)
		}
	})
}
