package approvals

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

// signedHeader is what every document an officer signs (decision, re-issue, revocation) carries besides its
// own content: its id, its preparation time, the nonce that opens the challenge and the audit chain's head at
// preparation. Each document's stamp method writes all of them into its canonical form, so a signed field
// cannot be forgotten on one path.
type signedHeader struct {
	ID     string
	At     time.Time
	Nonce  []byte
	Anchor AuditAnchor
}

// newSignedHeader starts a preparation: a new id, the time, a random nonce and the chain's head now.
func (s *Service) newSignedHeader(ctx context.Context) (signedHeader, error) {
	nonce := make([]byte, NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return signedHeader{}, err
	}
	head, err := audit.LinkedHead(ctx, s.db)
	if err != nil {
		return signedHeader{}, err
	}
	return signedHeader{ID: newID(), At: s.clock(), Nonce: nonce, Anchor: AuditAnchor(head)}, nil
}

func (h signedHeader) issuedAt() string    { return h.At.Format(TimeFormat) }
func (h signedHeader) nonceString() string { return base64.RawURLEncoding.EncodeToString(h.Nonce) }

// stamp writes the header into a decision.
func (d *Decision) stamp(h signedHeader) {
	d.Format, d.DecisionID, d.IssuedAt, d.Nonce, d.AuditAnchor = DecisionFormat, h.ID, h.issuedAt(), h.nonceString(), h.Anchor
}

// stamp writes the header into a revocation.
func (r *Revocation) stamp(h signedHeader) {
	r.Format, r.RevocationID, r.IssuedAt, r.Nonce, r.AuditAnchor = RevocationFormat, h.ID, h.issuedAt(), h.nonceString(), h.Anchor
}

// ShownDigest is the SHA-256, lower-case hex, of the text a page showed: what a decision signs as shown_sha256.
func ShownDigest(shown string) string {
	sum := sha256.Sum256([]byte(shown))
	return hex.EncodeToString(sum[:])
}

// signedPrepared is a preparation stored and waiting for the officer's key.
type signedPrepared struct {
	Challenge []byte
	Options   any
	SignBy    time.Time
}

// prepareSigned is the one pipeline every signed document goes through once its canonical form is written
// (from a stamped header): the challenge nonce || SHA-256(canonical), the signing ceremony, then, in one
// transaction, the caller's preparation row (save) and the audit row it returns.
func (s *Service) prepareSigned(ctx context.Context, officerID string, h signedHeader, canonical []byte,
	save func(tx *gorm.DB, challenge []byte, ceremonyID string, signBy time.Time) (audit.Event, error)) (signedPrepared, error) {
	challenge := Challenge(h.Nonce, canonical)
	options, ceremonyID, err := s.signer.BeginSign(ctx, officerID, challenge)
	if err != nil {
		return signedPrepared{}, fmt.Errorf("begin signature: %w", err)
	}
	p := signedPrepared{Challenge: challenge, Options: options, SignBy: h.At.Add(s.policy.SignWindow)}
	err = store.Tx(ctx, s.db, func(tx *gorm.DB) error {
		ev, err := save(tx, challenge, ceremonyID, p.SignBy)
		if err != nil {
			return err
		}
		ev.At, ev.Actor = h.At, "user:"+officerID
		return audit.Append(tx, ev)
	})
	if err != nil {
		return signedPrepared{}, fmt.Errorf("prepare %s: %w", h.ID, err)
	}
	return p, nil
}

// prepareDecisionRow finishes the preparation of a decision (first decision or re-issue): it stamps the
// header, writes the text the page shows (describe), signs its digest, and stores the preparation.
func (s *Service) prepareDecisionRow(ctx context.Context, officerID string, h signedHeader, d Decision, m Manifest,
	describe func(Decision, Manifest) string, drow decisionRow, details map[string]any) (Prepared, error) {
	d.stamp(h)
	shown := describe(d, m)
	d.ShownSHA256 = ShownDigest(shown)
	canonical, err := d.Canonical()
	if err != nil {
		return Prepared{}, err
	}
	drow.ID, drow.OfficerID, drow.Verdict, drow.PreparedAt = h.ID, officerID, d.Verdict, h.At
	drow.CanonicalSealed = s.sealer.seal("approval_decisions", "canonical", h.ID, canonical)
	drow.ShownSealed = s.sealer.seal("approval_decisions", "shown", h.ID, []byte(shown))
	details["decision"], details["verdict"] = h.ID, d.Verdict
	sp, err := s.prepareSigned(ctx, officerID, h, canonical,
		func(tx *gorm.DB, challenge []byte, ceremonyID string, signBy time.Time) (audit.Event, error) {
			drow.Challenge, drow.CeremonyID, drow.PreparedUntil = challenge, ceremonyID, signBy
			if err := tx.Create(&drow).Error; err != nil {
				return audit.Event{}, err
			}
			return audit.Event{Action: "decision.prepared", Subject: "request:" + d.RequestID, Details: details}, nil
		})
	if err != nil {
		return Prepared{}, err
	}
	return Prepared{ID: h.ID, Decision: d, Canonical: canonical, Challenge: sp.Challenge, Options: sp.Options,
		Manifest: m, SignBy: sp.SignBy, Shown: shown}, nil
}

// completeSigned stores the officer's assertion on a prepared signed document (a revocation, a restriction or
// its lifting) in tx, once: one conditional UPDATE that only a prepared, unexpired, not yet completed row
// passes; any other gets ErrPreparation.
func completeSigned(tx *gorm.DB, model any, id string, now time.Time, a SignedAssertion) error {
	res := tx.Model(model).Where("id = ? AND completed_at IS NULL AND prepared_until > ?", id, now).
		Updates(map[string]any{"completed_at": now, "credential_id": a.CredentialID, "public_key": a.PublicKey,
			"authenticator_data": a.AuthenticatorData, "client_data_json": a.ClientDataJSON, "signature": a.Signature,
			"rp_id": a.RPID, "origin": a.Origin})
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected != 1 {
		return ErrPreparation
	}
	return nil
}
