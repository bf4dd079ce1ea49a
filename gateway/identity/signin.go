package identity

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

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
	_, sd, err := s.consumeCeremony(ctx, ceremonyID, kindSignIn, listener)
	if err != nil {
		return NewSession{}, err
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(response)
	if err != nil {
		return NewSession{}, fmt.Errorf("%w: %w", ErrVerification, err)
	}
	var found waUser
	var lookupErr error
	handler := func(rawID, userHandle []byte) (webauthn.User, error) {
		w, err := s.waUserByHandle(s.db.WithContext(ctx), userHandle)
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
	// (store.NoFlushWait): if a crash loses it, it loses all three together, and the user signs in again. It
	// cannot lose a sign-in that anything durable rests on: whatever is done under the session later commits
	// synchronously, which flushes this commit first (WAL is flushed in order), so no audited action can exist
	// whose sign-in is missing. A key's counter that a crash sets back is what a replay would need; the
	// assertion it would replay is one whose sign-in the crash erased, ceremony and all.
	err = store.Tx(ctx, s.db, func(tx *gorm.DB) error {
		if err := store.NoFlushWait(tx); err != nil {
			return err
		}
		if err := s.recordUse(tx, found, cred, parsed); err != nil {
			return err
		}
		if ns, err = s.startSession(tx, found.u, credID, listener, now); err != nil {
			return err
		}
		return audit.Append(tx, audit.Event{At: now, Actor: "user:" + found.u.ID, Action: "session.signed_in",
			Subject: "session:" + ns.ID, Details: map[string]any{"listener": listener, "credential_id": credID}})
	})
	return ns, err
}

// recordUse applies the officer rules to a verified assertion and writes back the sign count and flags. The
// stored count is the one w read before the verification: the update is conditional on it (and on the key
// not being revoked since), so two concurrent uses of one key cannot both pass.
func (s *Service) recordUse(tx *gorm.DB, w waUser, cred *webauthn.Credential, parsed *protocol.ParsedCredentialAssertionData) error {
	credID := base64.RawURLEncoding.EncodeToString(cred.ID)
	row, ok := w.stored(cred.ID)
	if !ok {
		return ErrUnknownCredential
	}
	u := w.u
	newCount := int64(parsed.Response.AuthenticatorData.Counter)
	if SignsWithKey(u.Role) {
		// A counter that does not move forward means a cloned key (or a replay the challenge did not stop).
		if cred.Authenticator.CloneWarning || (newCount != 0 || row.SignCount != 0) && newCount <= row.SignCount {
			return ErrCounterWentBack
		}
		if parsed.Response.AuthenticatorData.Flags.HasBackupEligible() && !s.cfg.DevAllowSoftwareKeys {
			return ErrHardwareKeyNeeded
		}
	}
	if newCount < row.SignCount {
		newCount = row.SignCount // keep the highest count seen for a passkey that may sync
	}
	cred.Authenticator.CloneWarning = false
	cred.Authenticator.SignCount = uint32(newCount)
	data, err := json.Marshal(cred)
	if err != nil {
		return fmt.Errorf("encode credential: %w", err)
	}
	now := s.now().UTC()
	res := tx.Model(&Credential{}).Where("id = ? AND sign_count = ? AND revoked_at IS NULL", credID, row.SignCount).
		Updates(map[string]any{"sign_count": newCount, "data": string(data), "last_used_at": now})
	if res.Error != nil {
		return fmt.Errorf("update credential: %w", res.Error)
	}
	if res.RowsAffected != 1 {
		var live int64
		if tx.Model(&Credential{}).Where("id = ? AND revoked_at IS NULL", credID).Count(&live); live == 0 {
			return ErrUnknownCredential // revoked since it was read
		}
		return ErrCounterWentBack
	}
	return nil
}

// liveCredential says whether a credential id is stored and not revoked.
func (s *Service) liveCredential(ctx context.Context, rawID []byte) bool {
	var n int64
	s.db.WithContext(ctx).Model(&Credential{}).
		Where("id = ? AND revoked_at IS NULL", base64.RawURLEncoding.EncodeToString(rawID)).Count(&n)
	return n == 1
}
