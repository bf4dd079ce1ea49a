package identity

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

// BeginSignIn starts a discoverable sign-in: the authenticator says which of its passkeys, the user handle
// says who.
func (s *Service) BeginSignIn(ctx context.Context, listener string) (options json.RawMessage, ceremonyID string, err error) {
	rp, err := s.rp(listener)
	if err != nil {
		return nil, "", err
	}
	assertion, sd, err := rp.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		return nil, "", fmt.Errorf("begin sign-in: %w", err)
	}
	return s.startCeremony(ctx, kindSignIn, listener, "", "", sd, assertion)
}

// FinishSignIn verifies the assertion and opens a session, audited; a failure is audited too.
func (s *Service) FinishSignIn(ctx context.Context, listener, ceremonyID string, response []byte, client string) (NewSession, error) {
	ns, err := s.finishSignIn(ctx, listener, ceremonyID, response)
	if err != nil {
		s.auditFailure(ctx, "session.signin_failed", listener, client, err)
	}
	return ns, err
}

func (s *Service) finishSignIn(ctx context.Context, listener, ceremonyID string, response []byte) (NewSession, error) {
	rp, err := s.rp(listener)
	if err != nil {
		return NewSession{}, err
	}
	// The response is parsed first, for its user handle: the ceremony's consumption reads that user too. A
	// response that does not parse still consumes the ceremony (one attempt per ceremony), and an unknown
	// ceremony is still the answer before a malformed response.
	parsed, err := protocol.ParseCredentialRequestResponseBytes(response)
	if err != nil {
		if _, _, cerr := s.consumeCeremony(ctx, ceremonyID, kindSignIn, listener); cerr != nil {
			return NewSession{}, cerr
		}
		return NewSession{}, fmt.Errorf("%w: %w", ErrVerification, err)
	}
	read, err := s.consumeSignIn(ctx, ceremonyID, listener, parsed.Response.UserHandle)
	if err != nil {
		return NewSession{}, err
	}
	sd := read.sd
	var found waUser
	var lookupErr error
	handler := func(rawID, userHandle []byte) (webauthn.User, error) {
		// The library asks for the handle the response carries, the one read with the ceremony.
		if !bytes.Equal(userHandle, parsed.Response.UserHandle) {
			lookupErr = ErrUnknownCredential
			return nil, lookupErr
		}
		w, err := read.user, read.lookupErr
		if errors.Is(err, ErrNotFound) {
			err = ErrUnknownCredential
		}
		if err != nil {
			lookupErr = err
			return nil, lookupErr
		}
		if w.u.Status != StatusActive {
			lookupErr = ErrUserSuspended
			return nil, lookupErr
		}
		if ListenerFor(w.u.Role) != listener {
			lookupErr = ErrWrongListener
			return nil, lookupErr
		}
		found = w
		return w, nil
	}
	_, cred, err := rp.ValidatePasskeyLogin(handler, sd, parsed)
	if lookupErr != nil {
		return NewSession{}, lookupErr
	}
	if err != nil {
		var unknown *protocol.ErrorUnknownCredential
		if errors.As(err, &unknown) || !s.liveCredential(ctx, parsed.RawID) {
			return NewSession{}, ErrUnknownCredential
		}
		return NewSession{}, fmt.Errorf("%w: %w", ErrVerification, err)
	}
	now := s.now().UTC()
	credID := base64.RawURLEncoding.EncodeToString(cred.ID)
	var ns NewSession
	// The sign count, the session and its audit row: one transaction, so that no session exists without its
	// row (if the row cannot be written, there is no session). It commits without waiting for the WAL flush
	// (store.NoFlushWaitJoin): if a crash loses it, it loses all three together, and the user signs in again. It
	// cannot lose a sign-in that anything durable rests on: whatever is done under the session later commits
	// synchronously, which flushes this commit first (WAL is flushed in order), so no audited action can exist
	// whose sign-in is missing. A key's counter that a crash sets back is what a replay would need; the
	// assertion it would replay is one whose sign-in the crash erased, ceremony and all.
	err = store.Tx(ctx, s.db, func(tx *gorm.DB) error {
		if ns, err = s.signedIn(tx, found, cred, parsed, listener, now); err != nil {
			return err
		}
		return audit.Append(tx, audit.Event{At: now, Actor: "user:" + found.u.ID, Action: "session.signed_in",
			Subject: "session:" + ns.ID, Details: map[string]any{"listener": listener, "credential_id": credID}})
	})
	return ns, err
}

// credentialUse is what a verified assertion writes back to its passkey: the sign count and flags, on
// condition that the stored count is still the one read before the verification (and the key not revoked
// since), so that two concurrent uses of one key cannot both pass.
type credentialUse struct {
	id       string
	from, to int64
	data     string
}

// checkUse applies the officer rules to a verified assertion and returns what to write back.
func (s *Service) checkUse(w waUser, cred *webauthn.Credential, parsed *protocol.ParsedCredentialAssertionData) (credentialUse, error) {
	row, ok := w.stored(cred.ID)
	if !ok {
		return credentialUse{}, ErrUnknownCredential
	}
	newCount := int64(parsed.Response.AuthenticatorData.Counter)
	if SignsWithKey(w.u.Role) {
		// A counter that does not move forward means a cloned key (or a replay the challenge did not stop).
		if cred.Authenticator.CloneWarning || (newCount != 0 || row.SignCount != 0) && newCount <= row.SignCount {
			return credentialUse{}, ErrCounterWentBack
		}
		if parsed.Response.AuthenticatorData.Flags.HasBackupEligible() && !s.cfg.DevAllowSoftwareKeys {
			return credentialUse{}, ErrHardwareKeyNeeded
		}
	}
	if newCount < row.SignCount {
		newCount = row.SignCount // keep the highest count seen for a passkey that may sync
	}
	cred.Authenticator.CloneWarning = false
	cred.Authenticator.SignCount = uint32(newCount)
	data, err := json.Marshal(cred)
	if err != nil {
		return credentialUse{}, fmt.Errorf("encode credential: %w", err)
	}
	return credentialUse{id: base64.RawURLEncoding.EncodeToString(cred.ID), from: row.SignCount, to: newCount, data: string(data)}, nil
}

// update returns the conditional write-back; from is added to its FROM list ("" for none).
func (c credentialUse) update(from string, now time.Time) (string, []any) {
	return `UPDATE credentials SET sign_count = ?, data = ?, last_used_at = ?` + from +
		` WHERE id = ? AND sign_count = ? AND revoked_at IS NULL`, []any{c.to, c.data, now, c.id, c.from}
}

// refused says why a write-back changed no row: the key was revoked since it was read, or its count moved.
func (c credentialUse) refused(tx *gorm.DB) error {
	var live int64
	if tx.Model(&Credential{}).Where("id = ? AND revoked_at IS NULL", c.id).Count(&live); live == 0 {
		return ErrUnknownCredential
	}
	return ErrCounterWentBack
}

// recordUse applies the officer rules to a verified assertion and writes back the sign count and flags, in
// the caller's transaction (a signature's: it commits durably with the decision).
func (s *Service) recordUse(tx *gorm.DB, w waUser, cred *webauthn.Credential, parsed *protocol.ParsedCredentialAssertionData) error {
	use, err := s.checkUse(w, cred, parsed)
	if err != nil {
		return err
	}
	q, args := use.update("", s.now().UTC())
	res := tx.Exec(q, args...)
	if res.Error != nil {
		return fmt.Errorf("update credential: %w", res.Error)
	}
	if res.RowsAffected != 1 {
		return use.refused(tx)
	}
	return nil
}

// signedIn is recordUse for a sign-in: it also starts the session, and makes the caller's transaction commit
// without waiting for the WAL flush (finishSignIn says why that is safe). The setting rides on the update
// (store.NoFlushWaitJoin: one round trip fewer than a SET LOCAL of its own). On PostgreSQL the session is
// inserted by the same statement, from the update's RETURNING: one round trip for both, and no session
// unless the conditional update happened. SQLite has no data-modifying WITH: there the session is a second
// statement, run only after the update.
func (s *Service) signedIn(tx *gorm.DB, w waUser, cred *webauthn.Credential, parsed *protocol.ParsedCredentialAssertionData,
	listener string, now time.Time) (NewSession, error) {
	use, err := s.checkUse(w, cred, parsed)
	if err != nil {
		return NewSession{}, err
	}
	ns, sess := s.newSession(w.u, use.id, listener, now)
	q, args := use.update(store.NoFlushWaitJoin(tx, "FROM"), now)
	postgres := store.DialectOf(tx) == store.Postgres
	if postgres {
		q = `WITH used AS (` + q + ` RETURNING credentials.id)
			INSERT INTO sessions (id, token_hash, user_id, credential_id, listener, created_at, last_seen_at, expires_at)
			SELECT ?, ?, ?, ?, ?, ?, ?, ? FROM used`
		args = append(args, sess.ID, sess.TokenHash, sess.UserID, sess.CredentialID, sess.Listener, sess.CreatedAt,
			sess.LastSeenAt, sess.ExpiresAt)
	}
	res := tx.Exec(q, args...)
	if res.Error != nil {
		return NewSession{}, fmt.Errorf("sign-in: credential and session: %w", res.Error)
	}
	if res.RowsAffected != 1 {
		return NewSession{}, use.refused(tx)
	}
	if !postgres {
		if err := tx.Create(&sess).Error; err != nil {
			return NewSession{}, fmt.Errorf("start session: %w", err)
		}
	}
	return ns, nil
}

// liveCredential says whether a credential id is stored and not revoked.
func (s *Service) liveCredential(ctx context.Context, rawID []byte) bool {
	var n int64
	s.db.WithContext(ctx).Model(&Credential{}).
		Where("id = ? AND revoked_at IS NULL", base64.RawURLEncoding.EncodeToString(rawID)).Count(&n)
	return n == 1
}
