package identity

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"gorm.io/gorm"
)

// SignedAssertion is everything needed to re-verify, offline and later, that a user's key signed a
// challenge: the signature covers AuthenticatorData || SHA-256(ClientDataJSON), and ClientDataJSON carries
// Challenge, RPID's origin and the ceremony type.
type SignedAssertion struct {
	CredentialID      []byte
	PublicKey         []byte // COSE
	AuthenticatorData []byte
	ClientDataJSON    []byte
	Signature         []byte
	RPID              string
	Origin            string
	Challenge         []byte
	// Commit writes the key's use back (sign count, flags, last use) and applies the officer counter rule to
	// the count read at FinishSign, on condition that the stored count has not moved since (the update's row
	// lock decides between concurrent uses); the caller runs it inside the transaction that stores what was
	// signed, with its audit row, so that a refused decision leaves the key's counter where it was.
	Commit func(tx *gorm.DB) error
}

// BeginSign asks a user's own key to sign challenge (approvals binds a decision's digest into it; it must be
// at least 16 bytes and should start with a random nonce). Only the user's active credentials are allowed and
// user verification is required.
func (s *Service) BeginSign(ctx context.Context, userID string, challenge []byte) (options json.RawMessage, ceremonyID string, err error) {
	u, err := s.User(ctx, userID)
	if err != nil {
		return nil, "", err
	}
	if u.Status != StatusActive {
		return nil, "", ErrUserSuspended
	}
	listener := ListenerFor(u.Role)
	rp, err := s.rp(listener)
	if err != nil {
		return nil, "", err
	}
	w, err := s.loadWAUser(s.db.WithContext(ctx), u)
	if err != nil {
		return nil, "", err
	}
	if len(w.creds) == 0 {
		return nil, "", ErrUnknownCredential
	}
	assertion, sd, err := rp.BeginLogin(w, webauthn.WithChallenge(challenge), webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		return nil, "", fmt.Errorf("begin sign: %w", err)
	}
	return s.startCeremony(ctx, kindSign, listener, u.ID, "", sd, assertion)
}

// FinishSign verifies a signature begun by BeginSign for the same user: the ceremony is consumed once, user
// verification is checked and the officer counter rule applies; the sign count is written back by the
// returned Commit, in the caller's transaction.
func (s *Service) FinishSign(ctx context.Context, ceremonyID, userID string, response []byte) (SignedAssertion, error) {
	u, err := s.User(ctx, userID)
	if err != nil {
		return SignedAssertion{}, err
	}
	listener := ListenerFor(u.Role)
	rp, err := s.rp(listener)
	if err != nil {
		return SignedAssertion{}, err
	}
	cer, sd, err := s.consumeCeremony(ctx, ceremonyID, kindSign, listener)
	if err != nil {
		return SignedAssertion{}, err
	}
	if cer.UserID != u.ID {
		return SignedAssertion{}, ErrSignatureNotForYou
	}
	if u.Status != StatusActive {
		return SignedAssertion{}, ErrUserSuspended
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(response)
	if err != nil {
		return SignedAssertion{}, fmt.Errorf("%w: %w", ErrVerification, err)
	}
	w, err := s.loadWAUser(s.db.WithContext(ctx), u)
	if err != nil {
		return SignedAssertion{}, err
	}
	cred, err := rp.ValidateLogin(w, sd, parsed)
	if err != nil {
		return SignedAssertion{}, fmt.Errorf("%w: %w", ErrVerification, err)
	}
	if !parsed.Response.AuthenticatorData.Flags.HasUserVerified() {
		return SignedAssertion{}, fmt.Errorf("%w: user not verified", ErrVerification)
	}
	challenge, err := protocol.URLEncodedBase64(nil), error(nil)
	if err = challenge.UnmarshalJSON([]byte(`"` + sd.Challenge + `"`)); err != nil {
		return SignedAssertion{}, fmt.Errorf("decode challenge: %w", err)
	}
	return SignedAssertion{
		CredentialID:      cred.ID,
		PublicKey:         cred.PublicKey,
		AuthenticatorData: parsed.Raw.AssertionResponse.AuthenticatorData,
		ClientDataJSON:    parsed.Raw.AssertionResponse.ClientDataJSON,
		Signature:         parsed.Raw.AssertionResponse.Signature,
		RPID:              rp.Config.RPID,
		Origin:            parsed.Response.CollectedClientData.Origin,
		Challenge:         challenge,
		Commit:            func(tx *gorm.DB) error { return s.recordUse(tx, w, cred, parsed) },
	}, nil
}
