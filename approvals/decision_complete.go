package approvals

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

// Outcome is what a signed decision did.
type Outcome struct {
	DecisionID string
	// RequestID is the request the signed preparation decided (whatever URL carried the signature).
	RequestID string
	Verdict   string
	// Status is the request's status after the decision: approved, awaiting_second, denied or nothing_recorded.
	Status Status
	// ExtractID is set on final approval.
	ExtractID string
	Receipt   Receipt
}

// CompleteDecision takes the officer's signature over a prepared decision. It checks, trusting no signer,
// that the assertion's challenge is the one prepared for this decision (so a signature made for request A
// cannot approve B, nor a changed scope pass with an old signature) and that the receipt it will keep
// verifies offline; then, in one transaction with its audit rows, it consumes the preparation, stores the
// receipt and moves the request: denied, awaiting a second officer, or approved with its extract row.
// On any refusal nothing changes.
func (s *Service) CompleteDecision(ctx context.Context, officerID, preparationID string, response []byte) (Outcome, error) {
	if len(bytes.TrimSpace(response)) == 0 {
		return Outcome{}, ErrNoAssertion
	}
	if _, err := s.officer(ctx, officerID); err != nil {
		return Outcome{}, err
	}
	if !validID(preparationID) {
		return Outcome{}, ErrPreparation
	}
	now := s.clock()
	var prep decisionRow
	err := s.db.WithContext(ctx).Where("id = ? AND officer_id = ?", preparationID, officerID).Take(&prep).Error
	if errors.Is(err, gorm.ErrRecordNotFound) || (err == nil && (prep.CompletedAt != nil || !prep.PreparedUntil.After(now))) {
		return Outcome{}, ErrPreparation
	}
	if err != nil {
		return Outcome{}, fmt.Errorf("complete decision: %w", err)
	}
	canonical, err := s.sealer.open("approval_decisions", "canonical", prep.ID, prep.CanonicalSealed)
	if err != nil {
		return Outcome{}, err
	}
	d, err := ParseDecision(canonical)
	if err != nil {
		return Outcome{}, err
	}
	nonce, err := d.NonceBytes()
	if err != nil {
		return Outcome{}, err
	}
	shown, err := s.sealer.open("approval_decisions", "shown", prep.ID, prep.ShownSealed)
	if err != nil {
		return Outcome{}, err
	}

	a, err := s.signer.FinishSign(ctx, prep.CeremonyID, officerID, response)
	if err != nil {
		return Outcome{}, fmt.Errorf("finish signature: %w", err)
	}
	if !bytes.Equal(a.Challenge, prep.Challenge) {
		return Outcome{}, ErrChallenge
	}
	rc := Receipt{Format: ReceiptFormat, DecisionID: prep.ID, Decision: string(canonical), Nonce: nonce,
		CredentialID: a.CredentialID, PublicKey: a.PublicKey, AuthenticatorData: a.AuthenticatorData,
		ClientDataJSON: a.ClientDataJSON, Signature: a.Signature, RPID: a.RPID, Origin: a.Origin, Shown: string(shown)}
	// The same check `gatewayd receipt verify` makes: a receipt that would not verify is never stored.
	if _, err := VerifyReceipt(rc); err != nil {
		if errors.Is(err, ErrReceipt) {
			return Outcome{}, fmt.Errorf("%w: %v", ErrChallenge, err)
		}
		return Outcome{}, err
	}

	out := Outcome{DecisionID: prep.ID, RequestID: prep.RequestID, Verdict: d.Verdict, Receipt: rc}
	err = store.Tx(ctx, s.db, func(tx *gorm.DB) error {
		if err := a.Commit(tx); err != nil {
			return err
		}
		// The patient's restrictions are checked again inside the transaction: a block or a mask recorded
		// since the preparation voids an approval.
		if d.Verdict == Approve {
			var entries []ManifestEntry
			if err := json.Unmarshal([]byte(prep.Manifest), &entries); err != nil {
				return fmt.Errorf("manifest of %s: %w", prep.ID, err)
			}
			err := s.enforceRestrictions(ctx, tx, d.Scope.Patient, prep.RequestID, entries)
			if errors.Is(err, ErrMasked) && prep.ReissueOf != "" {
				return fmt.Errorf("re-issue of %s: %w", prep.ReissueOf, ErrReissueMasked) // masked since PrepareReissue
			}
			if err != nil {
				return err
			}
		}
		res := tx.Model(&decisionRow{}).Where("id = ? AND completed_at IS NULL AND prepared_until > ?", prep.ID, now).
			Update("completed_at", now)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected != 1 {
			return ErrPreparation
		}
		first := false
		if prep.ReissueOf != "" {
			f, err := firstReissueSignature(tx, prep, officerID)
			if err != nil {
				return err
			}
			first = f
		}
		if first {
			// The first of two signatures re-issuing an extract whose delivery is unknown: kept, audited,
			// nothing released yet.
			out.Status = StatusApproved
			if err := s.insertReceipt(tx, rc, prep.RequestID, officerID, now); err != nil {
				return err
			}
			return audit.Append(tx, audit.Event{At: now, Actor: "user:" + officerID, Action: "decision.reissue_first_signature",
				Subject: "request:" + prep.RequestID, Details: map[string]any{"decision": prep.ID, "reissue_of": prep.ReissueOf}})
		}
		from := Status(prep.RequestStatus)
		var (
			to      Status
			updates = map[string]any{"updated_at": now}
		)
		switch {
		case d.Verdict == Deny:
			to = StatusDenied
			updates["final_decision_id"] = prep.ID
		case d.Verdict == NothingRecorded:
			// Nothing is released, so one officer's signature answers, whatever the two-officer rule.
			to = StatusNothingRecorded
			updates["final_decision_id"] = prep.ID
		case from == StatusPending && s.policy.needsTwoOfficers(d.Scope.Scope()) && !prep.Emergency:
			// An emergency release needs one signature whatever the two-officer rule: the post-hoc review by a
			// second officer takes the second look.
			to = StatusAwaitingSecond
			updates["first_officer_id"] = officerID
		default:
			to = StatusApproved
			updates["final_decision_id"] = prep.ID
		}
		updates["status"] = to
		// The request must still be where it was when the decision was prepared (a cancel, a lapse or another
		// officer's decision in between voids this one), and a second approval must not be the first officer's.
		q := tx.Model(&requestRow{}).Where("id = ? AND status = ?", prep.RequestID, from)
		if from == StatusAwaitingSecond {
			q = q.Where("first_officer_id <> ?", officerID)
		}
		res = q.Updates(updates)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected != 1 {
			return ErrNotOpen
		}
		out.Status = to
		if err := s.insertReceipt(tx, rc, prep.RequestID, officerID, now); err != nil {
			return err
		}
		details := map[string]any{"decision": prep.ID, "status": string(to)}
		if prep.Emergency {
			details["emergency"] = true
		}
		if prep.ReissueOf != "" {
			if err := markReissued(tx, prep); err != nil {
				return err
			}
			details["reissue_of"] = prep.ReissueOf
		}
		action := "decision.approved"
		switch d.Verdict {
		case Deny:
			action = "decision.denied"
		case NothingRecorded:
			action = "decision.nothing_recorded"
		}
		if err := audit.Append(tx, audit.Event{At: now, Actor: "user:" + officerID, Action: action,
			Subject: "request:" + prep.RequestID, Details: details}); err != nil {
			return err
		}
		if to != StatusApproved {
			return nil
		}
		if out.ExtractID, err = s.createExtract(tx, prep, now); err != nil || !prep.Emergency {
			return err
		}
		return s.awaitEmergencyReview(tx, prep, out.ExtractID, now)
	})
	if err != nil {
		return Outcome{}, fmt.Errorf("complete decision: %w", err)
	}
	return out, nil
}

// createExtract writes the extract row of a final approval: no content, only the signed manifest's entry
// references, the retriever and the expiry.
func (s *Service) createExtract(tx *gorm.DB, prep decisionRow, now time.Time) (string, error) {
	if prep.ExtractExpiresAt == nil {
		return "", errors.New("approval without an expiry")
	}
	var entries []ManifestEntry
	if err := json.Unmarshal([]byte(prep.Manifest), &entries); err != nil {
		return "", fmt.Errorf("manifest of %s: %w", prep.ID, err)
	}
	x := extractRow{ID: newID(), RequestID: prep.RequestID, DecisionID: prep.ID, RetrieverKind: prep.RetrieverKind,
		RetrieverID: prep.RetrieverID, Manifest: prep.Manifest, ManifestDigest: prep.ManifestDigest,
		CreatedAt: now, ExpiresAt: prep.ExtractExpiresAt.UTC(), Emergency: prep.Emergency}
	if err := tx.Create(&x).Error; err != nil {
		return "", fmt.Errorf("create extract: %w", err)
	}
	err := audit.Append(tx, audit.Event{At: now, Actor: "system", Action: "extract.created", Subject: "extract:" + x.ID,
		Details: map[string]any{"request": prep.RequestID, "decision": prep.ID, "entries": len(entries),
			"retriever": prep.RetrieverKind}})
	return x.ID, err
}
