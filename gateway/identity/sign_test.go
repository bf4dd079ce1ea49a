package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"testing"

	"github.com/go-webauthn/webauthn/protocol/webauthncose"
	"gorm.io/gorm"

	"gatewayd/gateway/store"
	"gatewayd/gateway/store/storetest"
)

// TestBeginFinishSign shows that an officer's key signs a challenge the caller chose, and that what
// FinishSign returns is enough to verify the signature again, offline.
func TestBeginFinishSign(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		e := newEnv(t, db, func(c *Config) { c.DevAllowSoftwareKeys = true })
		ctx := context.Background()
		k := newKey(Console)
		ns, err := e.register(t, Console, e.invite(t, RoleOfficer).Token, k)
		if err != nil {
			t.Fatal(err)
		}
		other, err := e.register(t, Console, e.invite(t, RoleOfficer).Token, newKey(Console))
		if err != nil {
			t.Fatal(err)
		}
		digest := sha256.Sum256([]byte("decision 42: approve"))
		challenge := make([]byte, 16, 48)
		rand.Read(challenge)
		challenge = append(challenge, digest[:]...)

		sign := func() (string, []byte) {
			opts, cid, err := e.svc.BeginSign(ctx, ns.User.ID, challenge)
			if err != nil {
				t.Fatal(err)
			}
			var o struct {
				PublicKey struct {
					UserVerification string `json:"userVerification"`
					AllowCredentials []any  `json:"allowCredentials"`
				} `json:"publicKey"`
			}
			json.Unmarshal(opts, &o)
			if o.PublicKey.UserVerification != "required" || len(o.PublicKey.AllowCredentials) != 1 {
				t.Fatalf("options: %s", opts)
			}
			cid2, resp := cid, assertFor(t, k, opts)
			return cid2, resp
		}
		cid, resp := sign()
		// Another user cannot finish this ceremony, and trying uses it up.
		if _, err := e.svc.FinishSign(ctx, cid, other.User.ID, resp); !errors.Is(err, ErrCeremonyNotFound) && !errors.Is(err, ErrSignatureNotForYou) {
			t.Fatalf("other user: %v", err)
		}
		cid, resp = sign()
		sa, err := e.svc.FinishSign(ctx, cid, ns.User.ID, resp)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Tx(ctx, e.db, sa.Commit); err != nil {
			t.Fatal(err)
		}
		if string(sa.Challenge) != string(challenge) || sa.RPID != "localhost" || sa.Origin != testConsole {
			t.Fatalf("assertion: rp %q origin %q", sa.RPID, sa.Origin)
		}
		pub, err := webauthncose.ParsePublicKey(sa.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		cdHash := sha256.Sum256(sa.ClientDataJSON)
		ok, err := webauthncose.VerifySignature(pub, append(append([]byte{}, sa.AuthenticatorData...), cdHash[:]...), sa.Signature)
		if err != nil || !ok {
			t.Fatalf("offline verification: %v %v", ok, err)
		}
		if _, err := e.svc.FinishSign(ctx, cid, ns.User.ID, resp); !errors.Is(err, ErrCeremonyNotFound) {
			t.Fatalf("replay: %v", err)
		}
		// A signature whose counter went back is refused for officers, when its use is committed with what
		// it signed.
		k.cred.Counter = 0
		cid, resp = sign()
		sa, err = e.svc.FinishSign(ctx, cid, ns.User.ID, resp)
		if err == nil {
			err = store.Tx(ctx, e.db, sa.Commit)
		}
		if !errors.Is(err, ErrCounterWentBack) {
			t.Fatalf("counter back: %v", err)
		}
	})
}

func assertFor(t testing.TB, k *key, opts []byte) []byte {
	t.Helper()
	o := string(opts)
	asO, err := vwParse(o)
	if err != nil {
		t.Fatal(err)
	}
	k.cred.Counter++
	return []byte(vwAssert(k, asO))
}
