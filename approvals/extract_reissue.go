package approvals

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
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
	off, err := s.officer(ctx, officerID)
	if err != nil {
		return Prepared{}, err
	}
	if strings.TrimSpace(in.WordingVersion) == "" {
		return Prepared{}, fmt.Errorf("%w: wording version missing", ErrBadInput)
	}
	var xr extractViewRow
	err = s.extractViews(s.db.WithContext(ctx)).Where("x.id = ?", extractID).Take(&xr).Error
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
	req, err := s.toRequest(row)
	if err != nil {
		return Prepared{}, err
	}
	if err := s.checkPersons(ctx, off, req); err != nil {
		return Prepared{}, err
	}
	rs, err := s.restrictionsOf(ctx, s.db, req.Scope.Patient)
	if err != nil {
		return Prepared{}, err
	}
	if err := s.checkBlocked(ctx, off, req, rs); err != nil {
		return Prepared{}, err
	}
	entries := xr.extractRow().entries()
	for _, e := range entries {
		if rs.masks(e) {
			return Prepared{}, fmt.Errorf("re-issue of %s: %w", extractID, ErrReissueMasked)
		}
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
	// An emergency release is re-issued as one: same short lifetime, same post-hoc review.
	ttl, err := s.extractTTL(in.ExpiresIn, fd.Emergency)
	if err != nil {
		return Prepared{}, err
	}
	h, err := s.newSignedHeader(ctx)
	if err != nil {
		return Prepared{}, err
	}
	exp := h.At.Truncate(time.Second).Add(ttl)
	d := Decision{RequestID: row.ID, OfficerID: officerID, Verdict: Approve, Scope: fd.Scope,
		ManifestDigest: xr.ManifestDigest, Retriever: fd.Retriever, ExpiresAt: exp.Format(TimeFormat),
		WordingVersion: strings.TrimSpace(in.WordingVersion), Emergency: fd.Emergency,
		// The release was approved with this override: the re-issue signs it again, so its receipt says so.
		IdentityOverride: fd.IdentityOverride}
	describe := func(d Decision, _ Manifest) string {
		if in.Shown != "" {
			return in.Shown
		}
		return "Re-issue of extract " + extractID + " (delivery incomplete).\n" + d.Summary()
	}
	drow := decisionRow{RequestID: row.ID, RequestStatus: string(StatusApproved), Manifest: xr.Manifest,
		ManifestDigest: xr.ManifestDigest, RetrieverKind: xr.RetrieverKind, RetrieverID: xr.RetrieverID,
		ExtractExpiresAt: &exp, ReissueOf: extractID, Emergency: fd.Emergency}
	return s.prepareDecisionRow(ctx, officerID, h, d, Manifest{Digest: xr.ManifestDigest, Entries: entries},
		describe, drow, map[string]any{"reissue_of": extractID})
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
