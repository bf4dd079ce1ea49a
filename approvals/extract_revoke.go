package approvals

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

// RevocationFormat is the version of a revocation's canonical form (2 added revocation_id and audit_anchor).
const RevocationFormat = 2

// Revocation is what an officer signs to withdraw a ready extract. Its canonical form, version 2, is the
// output of encoding/json for this struct (fields in this order, no spaces, no trailing newline):
//
//	{"format":2,"kind":"extract-revocation","revocation_id":"...","extract_id":"...","request_id":"...",
//	 "decision_id":"...","officer_id":"...","issued_at":"YYYY-MM-DDTHH:MM:SSZ","nonce":"<base64url of 32 bytes>",
//	 "reason":"...","audit_anchor":{"seq":N,"hash":"<64 hex>"}}
//
// The reason (what the requester reads) is left out when empty, so revocations signed before it existed keep
// their exact bytes.
// and the WebAuthn challenge is nonce || SHA-256(canonical), as for a decision. It names ids only: the
// canonical form is stored in clear beside the assertion, so the revocation can be re-checked offline.
type Revocation struct {
	Format       int         `json:"format"`
	Kind         string      `json:"kind"`
	RevocationID string      `json:"revocation_id"`
	ExtractID    string      `json:"extract_id"`
	RequestID    string      `json:"request_id"`
	DecisionID   string      `json:"decision_id"`
	OfficerID    string      `json:"officer_id"`
	IssuedAt     string      `json:"issued_at"`
	Nonce        string      `json:"nonce"`
	Reason       string      `json:"reason,omitempty"`
	AuditAnchor  AuditAnchor `json:"audit_anchor"`
}

// Canonical returns the exact bytes of the revocation's canonical form.
func (r Revocation) Canonical() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, fmt.Errorf("canonical revocation: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// PreparedRevocation is a revocation ready to be signed.
type PreparedRevocation struct {
	ID         string
	Revocation Revocation
	Canonical  []byte
	Challenge  []byte
	Options    any
	SignBy     time.Time
}

type revocationRow struct {
	ID                string
	ExtractID         string
	OfficerID         string
	Canonical         string
	Challenge         []byte
	CeremonyID        string
	PreparedAt        time.Time
	PreparedUntil     time.Time
	CompletedAt       *time.Time
	CredentialID      []byte
	PublicKey         []byte
	AuthenticatorData []byte
	ClientDataJSON    []byte
	Signature         []byte
	RPID              string `gorm:"column:rp_id"`
	Origin            string
}

func (revocationRow) TableName() string { return "extract_revocations" }

// PrepareRevocation checks that an extract is ready (not retrieved, revoked or expired), builds the canonical
// revocation with its reason (signed, and shown to the requester) and starts the signing ceremony over
// nonce || SHA-256(canonical). Nothing changes until CompleteRevocation.
func (s *Service) PrepareRevocation(ctx context.Context, officerID, extractID, reason string) (PreparedRevocation, error) {
	if _, err := s.officer(ctx, officerID); err != nil {
		return PreparedRevocation{}, err
	}
	reason = normalizeText(reason)
	if reason == "" {
		return PreparedRevocation{}, ErrReasonRequired
	}
	if utf8.RuneCountInString(reason) > MaxReasonLen {
		return PreparedRevocation{}, fmt.Errorf("%w: reason longer than %d characters", ErrBadInput, MaxReasonLen)
	}
	if !cleanText(reason) {
		return PreparedRevocation{}, ErrControlChars
	}
	h, err := s.newSignedHeader(ctx)
	if err != nil {
		return PreparedRevocation{}, err
	}
	now := h.At
	var row extractRow
	err = withManifest(s.db.WithContext(ctx)).Where("id = ?", extractID).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return PreparedRevocation{}, fmt.Errorf("extract %s: %w", extractID, ErrNotFound)
	}
	if err != nil {
		return PreparedRevocation{}, err
	}
	x, err := row.extract()
	if err != nil {
		return PreparedRevocation{}, err
	}
	switch x.State(now) {
	case ExtractRetrieved:
		return PreparedRevocation{}, fmt.Errorf("extract %s: %w", extractID, ErrAlreadyRetrieved)
	case ExtractRevoked:
		return PreparedRevocation{}, fmt.Errorf("extract %s: %w", extractID, ErrRevoked)
	case ExtractExpired:
		return PreparedRevocation{}, fmt.Errorf("extract %s: %w", extractID, ErrExpired)
	}
	rv := Revocation{Kind: "extract-revocation", ExtractID: x.ID, RequestID: x.RequestID, DecisionID: x.DecisionID,
		OfficerID: officerID, Reason: reason}
	rv.stamp(h)
	canonical, err := rv.Canonical()
	if err != nil {
		return PreparedRevocation{}, err
	}
	sp, err := s.prepareSigned(ctx, officerID, h, canonical,
		func(tx *gorm.DB, challenge []byte, ceremonyID string, signBy time.Time) (audit.Event, error) {
			prow := revocationRow{ID: h.ID, ExtractID: x.ID, OfficerID: officerID, Canonical: string(canonical),
				Challenge: challenge, CeremonyID: ceremonyID, PreparedAt: now, PreparedUntil: signBy}
			if err := tx.Create(&prow).Error; err != nil {
				return audit.Event{}, err
			}
			return audit.Event{Action: "extract.revocation_prepared", Subject: "extract:" + x.ID,
				Details: map[string]any{"revocation": h.ID}}, nil
		})
	if err != nil {
		return PreparedRevocation{}, err
	}
	return PreparedRevocation{ID: h.ID, Revocation: rv, Canonical: canonical, Challenge: sp.Challenge,
		Options: sp.Options, SignBy: sp.SignBy}, nil
}

// CompleteRevocation takes the officer's signature over a prepared revocation, checks (trusting no signer)
// that it signed this revocation's challenge and that the assertion verifies offline, then, in one
// transaction with its audit row, consumes the preparation, keeps the assertion and revokes the extract if it
// is still neither retrieved nor revoked. On any refusal nothing changes.
func (s *Service) CompleteRevocation(ctx context.Context, officerID, preparationID string, response []byte) error {
	if len(bytes.TrimSpace(response)) == 0 {
		return ErrNoAssertion
	}
	if _, err := s.officer(ctx, officerID); err != nil {
		return err
	}
	if !validID(preparationID) {
		return ErrPreparation
	}
	now := s.clock()
	var prep revocationRow
	err := s.db.WithContext(ctx).Where("id = ? AND officer_id = ?", preparationID, officerID).Take(&prep).Error
	if errors.Is(err, gorm.ErrRecordNotFound) || (err == nil && (prep.CompletedAt != nil || !prep.PreparedUntil.After(now))) {
		return ErrPreparation
	}
	if err != nil {
		return fmt.Errorf("complete revocation: %w", err)
	}
	a, err := s.signer.FinishSign(ctx, prep.CeremonyID, officerID, response)
	if err != nil {
		return fmt.Errorf("finish signature: %w", err)
	}
	if !bytes.Equal(a.Challenge, prep.Challenge) {
		return ErrChallenge
	}
	if err := verifyAssertion(prep.Challenge, a.Origin, a.RPID, a.ClientDataJSON, a.AuthenticatorData, a.PublicKey,
		a.Signature); err != nil {
		return fmt.Errorf("%w: %v", ErrChallenge, err)
	}
	return store.Tx(ctx, s.db, func(tx *gorm.DB) error {
		if err := a.Commit(tx); err != nil {
			return err
		}
		if err := completeSigned(tx, &revocationRow{}, prep.ID, now, a); err != nil {
			return err
		}
		res := tx.Exec("UPDATE extracts SET revoked_at = ?, revoked_by = ? WHERE id = ? AND retrieved_at IS NULL AND revoked_at IS NULL",
			now, officerID, prep.ExtractID)
		if res.Error != nil {
			return fmt.Errorf("revoke extract: %w", res.Error)
		}
		if res.RowsAffected != 1 {
			var row extractRow
			if err := tx.Where("id = ?", prep.ExtractID).Take(&row).Error; err != nil {
				return err
			}
			if row.RetrievedAt != nil {
				return fmt.Errorf("extract %s: %w", prep.ExtractID, ErrAlreadyRetrieved)
			}
			return fmt.Errorf("extract %s: %w", prep.ExtractID, ErrRevoked)
		}
		return audit.Append(tx, audit.Event{At: now, Actor: "user:" + officerID, Action: "extract.revoked",
			Subject: "extract:" + prep.ExtractID, Details: map[string]any{"revocation": prep.ID, "signed": true}})
	})
}

// VerifyRevocation re-checks a completed revocation offline from what is stored: the canonical form, its
// challenge and the kept assertion.
func (s *Service) VerifyRevocation(ctx context.Context, revocationID string) (Revocation, error) {
	var r revocationRow
	if err := s.db.WithContext(ctx).Where("id = ? AND completed_at IS NOT NULL", revocationID).Take(&r).Error; err != nil {
		return Revocation{}, fmt.Errorf("revocation %s: %w", revocationID, ErrNotFound)
	}
	var rv Revocation
	if err := json.Unmarshal([]byte(r.Canonical), &rv); err != nil {
		return Revocation{}, fmt.Errorf("%w: %v", ErrReceipt, err)
	}
	again, err := rv.Canonical()
	if err != nil || !bytes.Equal(again, []byte(r.Canonical)) {
		return Revocation{}, fmt.Errorf("%w: revocation not canonical", ErrReceipt)
	}
	nonce, err := base64.RawURLEncoding.DecodeString(rv.Nonce)
	if err != nil || len(nonce) != NonceSize {
		return Revocation{}, fmt.Errorf("%w: nonce", ErrReceipt)
	}
	err = verifyAssertion(Challenge(nonce, []byte(r.Canonical)), r.Origin, r.RPID, r.ClientDataJSON, r.AuthenticatorData,
		r.PublicKey, r.Signature)
	return rv, err
}
