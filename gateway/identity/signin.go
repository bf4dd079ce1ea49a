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
	opts, err := json.Marshal(assertion)
	if err != nil {
		return nil, "", fmt.Errorf("encode options: %w", err)
	}
	// Nothing is stored: the ceremony's state is sealed in its id (signin_ceremony.go).
	id, err := s.sealSignIn(listener, sd, s.now().UTC())
	if err != nil {
		return nil, "", err
	}
	return opts, id, nil
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
	// An id this gateway did not seal for this listener, or an expired one, is the answer before anything is
	// read, and leaves nothing to use up.
	c, err := s.openSignIn(listener, ceremonyID)
	if err != nil {
		return NewSession{}, err
	}
	s.sweepCeremonies(s.db.WithContext(ctx), s.now().UTC())
	// The response is parsed first, for its user handle: the ceremony's read reads that user too. A used
	// ceremony is still the answer before a malformed response.
	parsed, parseErr := protocol.ParseCredentialRequestResponseBytes(response)
	var handle, credentialID []byte
	if parseErr == nil {
		handle, credentialID = parsed.Response.UserHandle, parsed.RawID
	}
	read, err := s.readSignIn(ctx, c, handle, credentialID)
	if errors.Is(err, ErrCeremonyNotFound) {
		return NewSession{}, err
	}
	if err == nil && parseErr != nil {
		err = fmt.Errorf("%w: %w", ErrVerification, parseErr)
	}
	var ns NewSession
	if err == nil {
		ns, err = s.verifySignIn(ctx, rp, listener, c, parsed, read)
	}
	if err != nil && !errors.Is(err, ErrCeremonyNotFound) {
		// Whatever failed, the attempt uses the ceremony up (one attempt per ceremony): a response that does not
		// parse, a failed verification or a refused write.
		s.useSignIn(ctx, c)
	}
	return ns, err
}

// verifySignIn checks the assertion against the ceremony and the user read with it, then opens the session.
func (s *Service) verifySignIn(ctx context.Context, rp *webauthn.WebAuthn, listener string, c signInCeremony,
	parsed *protocol.ParsedCredentialAssertionData, read signInRead) (NewSession, error) {
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
	_, cred, err := rp.ValidatePasskeyLogin(handler, read.sd, parsed)
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
	return s.signedIn(ctx, found, cred, parsed, c, listener, s.now().UTC())
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

// signedIn is recordUse for a sign-in: it records the ceremony as used, writes the sign count back, starts the
// session and appends its audit row, all or nothing: no session without its row (if the row cannot be written,
// there is no session: fail closed), and none unless this call's INSERT into used_sign_ins added the row (of
// two finishes of one ceremony, one writes; the other gets ErrCeremonyNotFound), nor once it has expired
// (checked when it was opened, and again here, after the verification).
//
// The write commits without waiting for the WAL flush (store.NoFlushWaitJoin, carried by the ceremony's
// INSERT): if a crash loses it, it loses all four together, and the user signs in again. It cannot lose a
// sign-in that anything durable rests on: whatever is done under the session later commits synchronously,
// which flushes this commit first (WAL is flushed in order), so no audited action can exist whose sign-in is
// missing. A key's counter that a crash sets back is what a replay would need; the assertion it would replay is
// one whose sign-in the crash erased, ceremony and all (the ceremony comes back unused, as if its finish had
// not happened yet, and only until it expires).
//
// On PostgreSQL the four are one statement, data-modifying WITHs chained on each other's RETURNING (the sign
// count's conditional update from the ceremony's INSERT, the session from the update, the audit row from the
// session: audit.InsertFrom), committed on its own: one round trip, where the ceremony's DELETE, BEGIN,
// the update, the audit row and COMMIT were five. SQLite has no data-modifying WITH: there they are one
// transaction of four steps, each only after the one before it took its row.
func (s *Service) signedIn(ctx context.Context, w waUser, cred *webauthn.Credential, parsed *protocol.ParsedCredentialAssertionData,
	c signInCeremony, listener string, now time.Time) (NewSession, error) {
	use, err := s.checkUse(w, cred, parsed)
	if err != nil {
		return NewSession{}, err
	}
	if !now.Before(c.Expires) { // it was open when the finish began; the verification took time
		return NewSession{}, ErrCeremonyExpired
	}
	ns, sess := s.newSession(w.u, use.id, listener, now)
	ev := audit.Event{At: now, Actor: "user:" + w.u.ID, Action: "session.signed_in", Subject: "session:" + ns.ID,
		Details: map[string]any{"listener": listener, "credential_id": use.id}}
	db := s.db.WithContext(ctx)
	if store.DialectOf(db) != store.Postgres {
		err := store.Tx(ctx, s.db, func(tx *gorm.DB) error {
			res := tx.Exec(insertUsedSignIn(""), c.ID, c.Expires)
			if res.Error != nil {
				return fmt.Errorf("record ceremony use: %w", res.Error)
			}
			if res.RowsAffected != 1 {
				return ErrCeremonyNotFound
			}
			q, args := use.update("", now)
			if res = tx.Exec(q, args...); res.Error != nil {
				return fmt.Errorf("sign-in: update credential: %w", res.Error)
			}
			if res.RowsAffected != 1 {
				return use.refused(tx)
			}
			if err := tx.Create(&sess).Error; err != nil {
				return fmt.Errorf("start session: %w", err)
			}
			return audit.Append(tx, ev)
		})
		return ns, err
	}
	insert, insertArgs, err := audit.InsertFrom(ev, "started")
	if err != nil {
		return NewSession{}, fmt.Errorf("sign-in: %w", err)
	}
	update, updateArgs := use.update(" FROM consumed", now)
	args := append([]any{c.ID, c.Expires}, updateArgs...)
	args = append(args, sess.ID, sess.TokenHash, sess.UserID, sess.CredentialID, sess.Listener, sess.CreatedAt,
		sess.LastSeenAt, sess.ExpiresAt)
	var consumed, audited int64
	err = store.QueryRow(ctx, db, `WITH consumed AS (`+insertUsedSignIn(store.NoFlushWaitJoin(db, "FROM"))+` RETURNING 1),
		used AS (`+update+` RETURNING credentials.id),
		started AS (INSERT INTO sessions (id, token_hash, user_id, credential_id, listener, created_at, last_seen_at, expires_at)
			SELECT ?, ?, ?, ?, ?, ?, ?, ? FROM used RETURNING 1),
		audited AS (`+insert+` RETURNING 1)
		SELECT (SELECT COUNT(*) FROM consumed), (SELECT COUNT(*) FROM audited)`, append(args, insertArgs...)...).
		Scan(&consumed, &audited)
	if err != nil {
		return NewSession{}, fmt.Errorf("sign-in: ceremony, credential, session and audit row: %w: %w", audit.ErrUnavailable, err)
	}
	switch {
	case consumed != 1:
		return NewSession{}, ErrCeremonyNotFound
	case audited != 1:
		return NewSession{}, use.refused(db)
	}
	audit.Committed(ctx, s.db)
	return ns, nil
}

// liveCredential says whether a credential id is stored and not revoked.
func (s *Service) liveCredential(ctx context.Context, rawID []byte) bool {
	var n int64
	s.db.WithContext(ctx).Model(&Credential{}).
		Where("id = ? AND revoked_at IS NULL", base64.RawURLEncoding.EncodeToString(rawID)).Count(&n)
	return n == 1
}
