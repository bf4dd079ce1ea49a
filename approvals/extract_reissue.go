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
