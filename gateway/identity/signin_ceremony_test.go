package identity

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/store/storetest"
)

// Beginning a sign-in writes nothing, and its ceremony id is the only place its state lives: an id altered
// anywhere, sealed for the other listener, sealed under another key, or not sealed at all is refused as an
// unknown ceremony, writes no session and uses up nothing; the untouched id then signs in.
func TestSignInCeremonyIDIsSealed(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		e, k := withRequester(t, db)
		ctx := context.Background()
		ceremonies, used := count(t, db, "ceremonies", ""), count(t, db, "used_sign_ins", "")
		cid, valid := e.signInResponse(t, Intake, k)
		if n := count(t, db, "ceremonies", ""); n != ceremonies {
			t.Fatalf("beginning a sign-in stored %d ceremonies", n-ceremonies)
		}
		otherKey := newEnv(t, db, nil) // another random SignInKey, the same database
		_, foreign, err := otherKey.svc.BeginSignIn(ctx, Intake)
		if err != nil {
			t.Fatal(err)
		}
		flip := func(i int) string {
			b := []byte(cid)
			if b[i] == 'A' {
				b[i] = 'B'
			} else {
				b[i] = 'A'
			}
			return string(b)
		}
		for _, c := range []struct{ name, listener, id string }{
			{"one character changed in the sealed text", Intake, flip(len(signInTokenPrefix) + 20)},
			{"its last character changed (the tag)", Intake, flip(len(cid) - 1)},
			{"cut short", Intake, cid[:len(cid)-10]},
			{"the format's prefix changed", Intake, "s2." + strings.TrimPrefix(cid, signInTokenPrefix)},
			{"on the other listener", Console, cid},
			{"sealed under another key", Intake, foreign},
			{"empty", Intake, ""},
			{"not base64", Intake, signInTokenPrefix + "%%%%"},
			{"too long", Intake, cid + strings.Repeat("A", maxSignInToken)},
		} {
			sessions := count(t, db, "sessions", "")
			if _, err := e.svc.FinishSignIn(ctx, c.listener, c.id, valid, "192.0.2.1"); !errors.Is(err, ErrCeremonyNotFound) {
				t.Fatalf("%s: %v, want %v", c.name, err, ErrCeremonyNotFound)
			}
			if n := count(t, db, "sessions", ""); n != sessions {
				t.Fatalf("%s: %d sessions opened", c.name, n-sessions)
			}
			if n := count(t, db, "used_sign_ins", ""); n != used {
				t.Fatalf("%s: %d ceremonies recorded as used", c.name, n-used)
			}
		}
		if _, err := e.svc.FinishSignIn(ctx, Intake, cid, valid, "192.0.2.1"); err != nil {
			t.Fatalf("the untouched id: %v", err)
		}
		if n := count(t, db, "used_sign_ins", ""); n != used+1 {
			t.Fatalf("after the sign-in, %d ceremonies recorded as used, want %d", n-used, 1)
		}
	})
}

// Instances that share the database and the key finish each other's sign-ins (a load balancer may send the
// begin to one and the finish to another), and still only once: of concurrent finishes of one ceremony on
// both, exactly one opens a session.
func TestSignInFinishesOnAnotherInstanceOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		key := make([]byte, 32)
		for i := range key {
			key[i] = byte(i)
		}
		withKey := func(c *Config) { c.SignInKey = key }
		a := newEnv(t, db, withKey)
		k := newKey(Intake)
		if _, err := a.register(t, Intake, a.invite(t, RoleRequester).Token, k); err != nil {
			t.Fatal(err)
		}
		b := newEnv(t, db, withKey)
		ctx := context.Background()
		cid, resp := a.signInResponse(t, Intake, k)
		if _, err := b.svc.FinishSignIn(ctx, Intake, cid, resp, "192.0.2.1"); err != nil {
			t.Fatalf("begun on one instance, finished on the other: %v", err)
		}

		cid, resp = a.signInResponse(t, Intake, k)
		sessions := count(t, db, "sessions", "")
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			svc := a.svc
			if i%2 == 1 {
				svc = b.svc
			}
			wg.Go(func() { _, errs[i] = svc.FinishSignIn(ctx, Intake, cid, resp, "192.0.2.1") })
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrCeremonyNotFound), errors.Is(err, ErrVerification), errors.Is(err, ErrCounterWentBack):
			default:
				t.Errorf("a concurrent finish: %v", err)
			}
		}
		if n := count(t, db, "sessions", ""); ok != 1 || n != sessions+1 {
			t.Fatalf("%d finishes succeeded and %d sessions opened, want 1 and 1", ok, n-sessions)
		}
	})
}

// A used ceremony is remembered until its seal refuses it anyway: the sweep forgets it an hour after it expired,
// and its answer, replayed after that, is refused as expired, opening nothing.
func TestUsedSignInsAreForgottenOnceExpired(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		e, k := withRequester(t, db)
		ctx := context.Background()
		cid, resp := e.signInResponse(t, Intake, k)
		if _, err := e.svc.FinishSignIn(ctx, Intake, cid, resp, "192.0.2.1"); err != nil {
			t.Fatal(err)
		}
		c, err := e.svc.openSignIn(Intake, cid)
		if err != nil {
			t.Fatal(err)
		}
		if n := count(t, db, "used_sign_ins", "id = ?", c.ID); n != 1 {
			t.Fatalf("the used ceremony is recorded %d times, want 1", n)
		}
		// Within the hour after its expiry it stays (instances' clocks may differ).
		e.clock.Add(5*time.Minute + 59*time.Minute)
		next, nextResp := e.signInResponse(t, Intake, k)
		if _, err := e.svc.FinishSignIn(ctx, Intake, next, nextResp, "192.0.2.1"); err != nil {
			t.Fatal(err)
		}
		if n := count(t, db, "used_sign_ins", "id = ?", c.ID); n != 1 {
			t.Fatal("swept 59 minutes after its expiry")
		}
		e.clock.Add(2 * time.Minute)
		next, nextResp = e.signInResponse(t, Intake, k)
		if _, err := e.svc.FinishSignIn(ctx, Intake, next, nextResp, "192.0.2.1"); err != nil {
			t.Fatal(err)
		}
		if n := count(t, db, "used_sign_ins", "id = ?", c.ID); n != 0 {
			t.Fatal("not swept an hour after its expiry")
		}
		sessions := count(t, db, "sessions", "")
		if _, err := e.svc.FinishSignIn(ctx, Intake, cid, resp, "192.0.2.1"); !errors.Is(err, ErrCeremonyExpired) {
			t.Fatalf("the forgotten ceremony's answer replayed: %v, want %v", err, ErrCeremonyExpired)
		}
		if n := count(t, db, "sessions", ""); n != sessions {
			t.Fatalf("the replay opened %d sessions", n-sessions)
		}
	})
}
