package approvals

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

// ErrNotReissuable is returned when an extract's delivery did not break and no restore invalidated it (or it
// was already re-issued).
var ErrNotReissuable = errors.New("only an extract whose delivery broke, or that a restore invalidated, can be re-issued, once")

// ReissueInput is what an officer chooses to re-issue an extract.
type ReissueInput struct {
	// ExpiresIn is the new extract's lifetime; 0 takes the policy default.
	ExpiresIn      time.Duration
	WordingVersion string
	Shown          string
}

// PrepareReissue prepares a new approval of an approved request whose extract was claimed but not delivered
// completely (the client went away: one time is one time, so the claimed extract stays retrieved). The new
// decision is an ordinary canonical decision (format 1, verdict approve) that releases exactly what the first
// one released — same scope, same manifest digest, same retriever — with a new expiry, issued-at and nonce.
// When the delivery is unknown (claimed, never recorded: a complete copy may exist), two officers must sign a
// re-issue; the first signature is kept and releases nothing (see firstReissueSignature).
// It is signed and completed with CompleteDecision like any other; completing it marks the broken extract as
// re-issued (once) and creates the new extract. The two-officer rule is not asked again: the release was
// already approved as policy demanded, and the re-issue releases nothing more.
func (s *Service) PrepareReissue(ctx context.Context, officerID, extractID string, in ReissueInput) (Prepared, error) {
	if _, err := s.officer(ctx, officerID); err != nil {
		return Prepared{}, err
	}
	if strings.TrimSpace(in.WordingVersion) == "" {
		return Prepared{}, fmt.Errorf("%w: wording version missing", ErrBadInput)
	}
	var xr extractViewRow
	err := s.extractViews(s.db.WithContext(ctx)).Where("x.id = ?", extractID).Take(&xr).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return Prepared{}, fmt.Errorf("extract %s: %w", extractID, ErrNotFound)
	}
	if err != nil {
		return Prepared{}, err
	}
	if !xr.reissuable() {
		return Prepared{}, fmt.Errorf("extract %s: %w", extractID, ErrNotReissuable)
	}
	if deliveryUnknown(xr) {
		if first, err := reissueSigner(s.db.WithContext(ctx), extractID); err != nil {
			return Prepared{}, err
		} else if first == officerID {
			return Prepared{}, fmt.Errorf("re-issue of %s: %w", extractID, ErrSameOfficer)
		}
	}
	row, err := s.requestRow(ctx, s.db, xr.RequestID)
	if err != nil {
		return Prepared{}, err
	}
	if Status(row.Status) != StatusApproved {
		return Prepared{}, fmt.Errorf("request %s is %s: %w", row.ID, row.Status, ErrNotOpen)
	}
	if row.RequesterID == officerID {
		return Prepared{}, ErrOwnRequest
	}
	var first decisionRow
	if err := s.db.WithContext(ctx).Where("id = ?", xr.DecisionID).Take(&first).Error; err != nil {
		return Prepared{}, fmt.Errorf("decision of %s: %w", extractID, err)
	}
	c, err := s.sealer.open("approval_decisions", "canonical", first.ID, first.CanonicalSealed)
	if err != nil {
		return Prepared{}, err
	}
	fd, err := ParseDecision(c)
	if err != nil {
		return Prepared{}, err
	}
	ttl := in.ExpiresIn
	if ttl == 0 {
		ttl = s.policy.DefaultExtractTTL
	}
	if ttl < time.Minute || ttl > s.policy.MaxExtractTTL {
		return Prepared{}, fmt.Errorf("%w: %s (at most %s)", ErrExpiryOutOfRange, ttl, s.policy.MaxExtractTTL)
	}
	now := s.clock()
	exp := now.Truncate(time.Second).Add(ttl)
	nonce := make([]byte, NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return Prepared{}, err
	}
	d := Decision{Format: DecisionFormat, RequestID: row.ID, OfficerID: officerID, Verdict: Approve, Scope: fd.Scope,
		ManifestDigest: xr.ManifestDigest, Retriever: fd.Retriever, ExpiresAt: exp.Format(TimeFormat),
		IssuedAt: now.Format(TimeFormat), Nonce: base64.RawURLEncoding.EncodeToString(nonce),
		WordingVersion: strings.TrimSpace(in.WordingVersion)}
	canonical, err := d.Canonical()
	if err != nil {
		return Prepared{}, err
	}
	challenge := Challenge(nonce, canonical)
	options, ceremonyID, err := s.signer.BeginSign(ctx, officerID, challenge)
	if err != nil {
		return Prepared{}, fmt.Errorf("begin signature: %w", err)
	}
	shown := in.Shown
	if shown == "" {
		shown = "Re-issue of extract " + extractID + " (delivery incomplete).\n" + d.Summary()
	}
	p := Prepared{ID: newID(), Decision: d, Canonical: canonical, Challenge: challenge, Options: options,
		Manifest: Manifest{Digest: xr.ManifestDigest, Entries: xr.extractRow().entries()}, SignBy: now.Add(s.policy.SignWindow)}
	drow := decisionRow{ID: p.ID, RequestID: row.ID, OfficerID: officerID, Verdict: Approve, RequestStatus: string(StatusApproved),
		CanonicalSealed: s.sealer.seal("approval_decisions", "canonical", p.ID, canonical),
		Challenge:       challenge, CeremonyID: ceremonyID, Manifest: xr.Manifest, ManifestDigest: xr.ManifestDigest,
		RetrieverKind: xr.RetrieverKind, RetrieverID: xr.RetrieverID, ExtractExpiresAt: &exp,
		ShownSealed: s.sealer.seal("approval_decisions", "shown", p.ID, []byte(shown)), PreparedAt: now,
		PreparedUntil: p.SignBy, ReissueOf: extractID}
	err = store.Tx(ctx, s.db, func(tx *gorm.DB) error {
		if err := tx.Create(&drow).Error; err != nil {
			return err
		}
		return audit.Append(tx, audit.Event{At: now, Actor: "user:" + officerID, Action: "decision.prepared",
			Subject: "request:" + row.ID, Details: map[string]any{"decision": p.ID, "verdict": Approve, "reissue_of": extractID}})
	})
	if err != nil {
		return Prepared{}, fmt.Errorf("prepare re-issue: %w", err)
	}
	return p, nil
}

// firstReissueSignature says, inside CompleteDecision's transaction, whether this re-issue decision is the
// first of the two signatures a re-issue needs when the extract's delivery is unknown (claimed and never
// recorded: a complete copy may exist). Another officer's completed re-issue of the same extract makes this
// one the second; the same officer signing twice is refused.
func firstReissueSignature(tx *gorm.DB, prep decisionRow, officerID string) (bool, error) {
	var xr extractViewRow
	if err := tx.Table("extracts AS x").Select("x.*").Where("x.id = ?", prep.ReissueOf).Take(&xr).Error; err != nil {
		return false, fmt.Errorf("extract %s: %w", prep.ReissueOf, err)
	}
	if !deliveryUnknown(xr) {
		return false, nil
	}
	var signers []string
	if err := tx.Table("approval_decisions").Where("reissue_of = ? AND completed_at IS NOT NULL AND id <> ?", prep.ReissueOf, prep.ID).
		Pluck("officer_id", &signers).Error; err != nil {
		return false, fmt.Errorf("re-issue signatures of %s: %w", prep.ReissueOf, err)
	}
	for _, o := range signers {
		if o != officerID {
			return false, nil
		}
	}
	if len(signers) > 0 {
		return false, ErrSameOfficer
	}
	return true, nil
}

// reissueSigner names the officer who signed the first of two re-issue signatures of an extract, if any.
func reissueSigner(db *gorm.DB, extractID string) (string, error) {
	var signers []string
	err := db.Table("approval_decisions").Where("reissue_of = ? AND completed_at IS NOT NULL", extractID).
		Order("completed_at").Limit(1).Pluck("officer_id", &signers).Error
	if err != nil || len(signers) == 0 {
		return "", err
	}
	return signers[0], nil
}

// markReissued, inside CompleteDecision's transaction, marks the broken (or restore-invalidated) extract as re-issued by this
// decision; it fails (and so the whole decision) if it was re-issued meanwhile.
func markReissued(tx *gorm.DB, prep decisionRow) error {
	res := tx.Exec("UPDATE extracts SET reissued_by = ? WHERE id = ? AND reissued_by IS NULL AND ((retrieved_at IS NOT NULL "+
		"AND (delivery_complete IS NULL OR delivery_complete = ?)) OR revoked_by = ?)", prep.ID, prep.ReissueOf, false, RevokedByRestore)
	if res.Error != nil {
		return fmt.Errorf("mark re-issued: %w", res.Error)
	}
	if res.RowsAffected != 1 {
		return ErrNotReissuable
	}
	return nil
}
