package identity

import (
	"context"
	"crypto/rand"
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

// BeginRegistration starts a passkey registration for the holder of an invitation token. The invitation is
// only read here; it is used up by FinishRegistration. Officers are asked for direct attestation, which is
// what proves a hardware key.
func (s *Service) BeginRegistration(ctx context.Context, listener, invitationToken string) (options json.RawMessage, ceremonyID string, err error) {
	rp, err := s.rp(listener)
	if err != nil {
		return nil, "", err
	}
	inv, err := s.OpenInvitation(ctx, listener, invitationToken)
	if err != nil {
		return nil, "", err
	}
	handle := make([]byte, 32)
	rand.Read(handle)
	u := waUser{u: User{ID: "new", WebAuthnID: handle, DisplayName: inv.DisplayName}}
	conveyance := protocol.PreferNoAttestation
	if SignsWithKey(inv.Role) {
		conveyance = protocol.PreferDirectAttestation
	}
	creation, sd, err := rp.BeginRegistration(u, webauthn.WithConveyancePreference(conveyance),
		webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{
			ResidentKey: protocol.ResidentKeyRequirementRequired, UserVerification: protocol.VerificationRequired}))
	if err != nil {
		return nil, "", fmt.Errorf("begin registration: %w", err)
	}
	return s.startCeremony(ctx, kindRegister, listener, "", inv.ID, sd, creation)
}

// FinishRegistration checks the authenticator's answer and, in one transaction, uses up the invitation,
// creates the user, stores the credential, opens a session and writes the audit rows. client is the caller's
// address, for the audit of a failure.
func (s *Service) FinishRegistration(ctx context.Context, listener, ceremonyID string, response []byte, client string) (NewSession, error) {
	ns, err := s.finishRegistration(ctx, listener, ceremonyID, response)
	if err != nil {
		s.auditFailure(ctx, "registration.failed", listener, client, err)
	}
	return ns, err
}

func (s *Service) finishRegistration(ctx context.Context, listener, ceremonyID string, response []byte) (NewSession, error) {
	rp, err := s.rp(listener)
	if err != nil {
		return NewSession{}, err
	}
	cer, sd, err := s.consumeCeremony(ctx, ceremonyID, kindRegister, listener)
	if err != nil {
		return NewSession{}, err
	}
	var inv Invitation
	if err := s.db.WithContext(ctx).Where("id = ?", cer.InvitationID).Take(&inv).Error; err != nil {
		return NewSession{}, ErrInvitationInvalid
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(response)
	if err != nil {
		return NewSession{}, fmt.Errorf("%w: %w", ErrVerification, err)
	}
	u := waUser{u: User{ID: "new", WebAuthnID: sd.UserID, DisplayName: inv.DisplayName}}
	cred, err := rp.CreateCredential(u, sd, parsed)
	if err != nil {
		return NewSession{}, fmt.Errorf("%w: %w", ErrVerification, err)
	}
	if !cred.Flags.UserVerified {
		return NewSession{}, fmt.Errorf("%w: user not verified", ErrVerification)
	}
	if SignsWithKey(inv.Role) && !s.cfg.DevAllowSoftwareKeys {
		if err := s.checkHardwareKey(parsed, cred); err != nil {
			return NewSession{}, err
		}
	}
	data, err := json.Marshal(cred)
	if err != nil {
		return NewSession{}, fmt.Errorf("encode credential: %w", err)
	}
	now := s.now().UTC()
	user := User{ID: newID(), WebAuthnID: sd.UserID, Role: inv.Role, DisplayName: inv.DisplayName,
		ProfessionalID: inv.ProfessionalID, PersonID: inv.PersonID, Status: StatusActive, CreatedAt: now}
	if user.PersonID == "" {
		user.PersonID = user.ID
	}
	credID := base64.RawURLEncoding.EncodeToString(cred.ID)
	var ns NewSession
	err = store.Tx(ctx, s.db, func(tx *gorm.DB) error {
		// Single use: the invitation is taken by this statement or by nobody.
		res := tx.Model(&Invitation{}).Where("id = ? AND used_at IS NULL AND expires_at > ?", inv.ID, now).
			Updates(map[string]any{"used_at": now})
		if res.Error != nil {
			return fmt.Errorf("use invitation: %w", res.Error)
		}
		if res.RowsAffected != 1 {
			return ErrInvitationInvalid
		}
		if err := checkPerson(tx, user); err != nil {
			return err
		}
		if err := tx.Create(&user).Error; err != nil {
			return fmt.Errorf("create user: %w", err)
		}
		if err := tx.Model(&Invitation{}).Where("id = ?", inv.ID).Update("user_id", user.ID).Error; err != nil {
			return fmt.Errorf("link invitation: %w", err)
		}
		row := Credential{ID: credID, UserID: user.ID, Data: string(data), SignCount: int64(cred.Authenticator.SignCount),
			AttestationFormat: cred.AttestationFormat, CreatedAt: now}
		if err := tx.Create(&row).Error; err != nil {
			return fmt.Errorf("store credential: %w", err)
		}
		if ns, err = s.startSession(tx, user, credID, listener, now); err != nil {
			return err
		}
		for _, ev := range []audit.Event{
			{Action: "invitation.used", Subject: "invitation:" + inv.ID, Details: map[string]any{"user_id": user.ID, "role": user.Role}},
			{Action: "credential.registered", Subject: "credential:" + credID,
				Details: map[string]any{"user_id": user.ID, "format": cred.AttestationFormat, "attestation_type": cred.AttestationType}},
			{Action: "session.signed_in", Subject: "session:" + ns.ID, Details: map[string]any{"listener": listener, "credential_id": credID}},
		} {
			ev.At, ev.Actor = now, "user:"+user.ID
			if err := audit.Append(tx, ev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return NewSession{}, err
	}
	return ns, nil
}

// auditFailure records a failed ceremony with a reason code, never the submitted data.
func (s *Service) auditFailure(ctx context.Context, action, listener, client string, cause error) {
	reason := "verification"
	for _, r := range []struct {
		err  error
		code string
	}{
		{ErrCeremonyNotFound, "ceremony_unknown"}, {ErrCeremonyExpired, "ceremony_expired"},
		{ErrInvitationInvalid, "invitation_invalid"}, {ErrHardwareKeyNeeded, "not_hardware_key"},
		{ErrCounterWentBack, "counter_went_back"}, {ErrUnknownCredential, "credential_unknown"},
		{ErrUserSuspended, "user_suspended"}, {ErrWrongListener, "wrong_listener"},
		{ErrSignatureNotForYou, "wrong_user"}, {ErrProfessionalIDTaken, "professional_id_taken"},
	} {
		if errors.Is(cause, r.err) {
			reason = r.code
			break
		}
	}
	if client == "" {
		client = "unknown"
	}
	// Standalone: the ceremony's own change (if any) was rolled back.
	audit.Record(context.WithoutCancel(ctx), s.db, audit.Event{At: s.now().UTC(), Actor: "ip:" + client, Action: action,
		Subject: "listener:" + listener, Details: map[string]any{"reason": reason}})
}
