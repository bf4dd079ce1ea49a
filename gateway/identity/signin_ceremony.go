package identity

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"

	"gatewayd/gateway/store"
)

// A sign-in's ceremony is not stored between its begin and its finish: its state (the library's SessionData,
// an id and the expiry) is sealed with AES-GCM under SignInKey, bound to its listener, and the sealed text is
// the ceremony id the browser sends back. So beginning a sign-in, which anyone on a listener may do, writes
// nothing and costs no round trip to the database (issue 15: the begin's INSERT was a quarter of a sign-in's
// time); the id cannot be forged or altered (the seal), nor moved to the other listener (its additional data).
//
// Single use is kept where it was, at the finish: the write that opens the session inserts the ceremony's id
// into used_sign_ins in the same statement (or transaction), and only if no row was there; a failed finish
// inserts it too (one attempt per ceremony), and the read that precedes the verification already refuses an
// id found there. A used id stays until its ceremony has expired (then the seal's expiry refuses it) and the
// sweep forgets it. Registration and signing ceremonies stay in the ceremonies table: they are begun by a
// signed-in user or an invitation, and seldom.

// signInTokenPrefix names the format of a sealed sign-in ceremony, so that another can follow it.
const signInTokenPrefix = "s1."

// maxSignInToken bounds the ceremony id a finish accepts, before anything is decoded (the sealed state is
// about 300 bytes).
const maxSignInToken = 2048

// signInCeremony is a sign-in ceremony's sealed state.
type signInCeremony struct {
	ID      string               `json:"id"`
	Expires time.Time            `json:"exp"`
	Session webauthn.SessionData `json:"sd"`
}

// signInAAD binds a sealed ceremony to its listener (and to this use of the key).
func signInAAD(listener string) []byte { return []byte("gatewayd sign-in ceremony\x00" + listener) }

// sealSignIn returns the ceremony id of a new sign-in ceremony on listener.
func (s *Service) sealSignIn(listener string, sd *webauthn.SessionData, now time.Time) (string, error) {
	plain, err := json.Marshal(signInCeremony{ID: newID(), Expires: now.Add(s.cfg.CeremonyTTL), Session: *sd})
	if err != nil {
		return "", fmt.Errorf("encode ceremony: %w", err)
	}
	nonce := make([]byte, s.signIns.NonceSize(), s.signIns.NonceSize()+len(plain)+s.signIns.Overhead())
	rand.Read(nonce)
	return signInTokenPrefix + base64.RawURLEncoding.EncodeToString(s.signIns.Seal(nonce, nonce, plain, signInAAD(listener))), nil
}

// openSignIn returns the state sealed in a sign-in ceremony id of listener: ErrCeremonyNotFound for an id
// this gateway did not seal for that listener (or altered, or of a retired format), ErrCeremonyExpired once
// its time is over. Whether it was used already is for the database to say (readSignIn, signedIn).
func (s *Service) openSignIn(listener, token string) (signInCeremony, error) {
	var c signInCeremony
	rest, ok := strings.CutPrefix(token, signInTokenPrefix)
	if !ok || len(token) > maxSignInToken {
		return c, ErrCeremonyNotFound
	}
	sealed, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(sealed) < s.signIns.NonceSize() {
		return c, ErrCeremonyNotFound
	}
	n := s.signIns.NonceSize()
	plain, err := s.signIns.Open(nil, sealed[:n], sealed[n:], signInAAD(listener))
	if err != nil {
		return c, ErrCeremonyNotFound
	}
	if err := json.Unmarshal(plain, &c); err != nil || c.ID == "" {
		return c, fmt.Errorf("decode ceremony: %w", ErrCeremonyNotFound)
	}
	if !s.now().Before(c.Expires) {
		return c, ErrCeremonyExpired
	}
	return c, nil
}

// useSignIn records a sign-in ceremony as used after a failed finish (one attempt per ceremony). It does not
// wait for the WAL flush (store.NoFlushWaitJoin's rule): a crash that loses it gives back an attempt whose
// finish wrote nothing. A failure here is not reported: the attempt has failed already, and the ceremony
// expires within CeremonyTTL.
func (s *Service) useSignIn(ctx context.Context, c signInCeremony) {
	db := s.db.WithContext(ctx)
	db.Exec(insertUsedSignIn(store.NoFlushWaitJoin(db, "FROM")), c.ID, c.Expires)
}

// insertUsedSignIn is the INSERT that records a ceremony as used (arguments: its id and expiry), with from (a FROM
// item, or "") in its SELECT: it inserts a row, or none when the ceremony was used already. ("WHERE true" is
// SQLite's: an upsert after a SELECT needs a WHERE clause there, or ON would be read as a join's.)
func insertUsedSignIn(from string) string {
	return `INSERT INTO used_sign_ins (id, expires_at) SELECT ?, ?` + from + ` WHERE true ON CONFLICT (id) DO NOTHING`
}
