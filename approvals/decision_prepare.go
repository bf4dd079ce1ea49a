package approvals

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxReasonLen bounds a denial's reason.
const MaxReasonLen = 2000

// DecisionInput is what an officer chose on the review page.
type DecisionInput struct {
	Verdict string // Approve, Deny or NothingRecorded
	// Scope narrows the requested scope; nil takes it as requested. Ignored for a denial.
	Scope *Scope
	// Retriever is who may retrieve the extract; "" takes the delivery the requester asked for.
	Retriever RetrieverKind
	// ExpiresIn is the extract's lifetime from now; 0 takes the policy default.
	ExpiresIn time.Duration
	// Reason is required for a denial.
	Reason string
	// IdentityOverride is the officer's reason to approve although an identity trait differs from the records
	// (signed in the decision); it must be empty when no trait differs.
	IdentityOverride string
	// WordingVersion names the version of the review page's wording the officer read.
	WordingVersion string
	// Shown is what the page showed the officer, kept in the receipt; "" keeps the decision's summary.
	Shown string
	// Describe, when set, writes Shown from the decision as built (expiry, digest and all), so that a page can
	// show the officer, in its own language, exactly the text the receipt keeps. It wins over Shown.
	Describe func(Decision, Manifest) string
}

// Prepared is a decision ready to be signed.
type Prepared struct {
	ID        string
	Decision  Decision
	Canonical []byte
	Challenge []byte
	// Options are the signer's options for the browser (navigator.credentials.get).
	Options any
	// Manifest is what the approval releases (with displays, for the page); empty for a denial.
	Manifest Manifest
	// SignBy is when the preparation stops being usable.
	SignBy time.Time
	// Shown is the text kept in the receipt as what the page showed.
	Shown string
}

// decisionRow is a prepared decision, completed once it is signed.
type decisionRow struct {
	ID               string
	RequestID        string
	OfficerID        string
	Verdict          string
	RequestStatus    string
	CanonicalSealed  []byte
	Challenge        []byte
	CeremonyID       string
	Manifest         string // JSON of []ManifestEntry: ids, versions, hashes, categories and dates, no display
	ManifestDigest   string
	RetrieverKind    string
	RetrieverID      string
	ExtractExpiresAt *time.Time
	ShownSealed      []byte
	PreparedAt       time.Time
	PreparedUntil    time.Time
	CompletedAt      *time.Time
	// ReissueOf is the extract whose broken delivery this approval re-issues ("" for a first decision).
	ReissueOf string
	// Emergency is an approval under the emergency rules (Decision.Emergency).
	Emergency bool
}

func (decisionRow) TableName() string { return "approval_decisions" }

// PrepareDecision checks an officer's decision against the request and the policy, builds its canonical
// form, and starts the signing ceremony over nonce || SHA-256(canonical). The preparation is bound to this
// officer and request, usable once, until SignBy.
func (s *Service) PrepareDecision(ctx context.Context, officerID, requestID string, in DecisionInput) (Prepared, error) {
	off, err := s.officer(ctx, officerID)
	if err != nil {
		return Prepared{}, err
	}
	row, err := s.requestRow(ctx, s.db, requestID)
	if err != nil {
		return Prepared{}, err
	}
	req, err := s.toRequest(row)
	if err != nil {
		return Prepared{}, err
	}
	if !req.Status.Open() {
		return Prepared{}, fmt.Errorf("request %s is %s: %w", requestID, req.Status, ErrNotOpen)
	}
	if err := s.checkPersons(ctx, off, req); err != nil {
		return Prepared{}, err
	}
	if strings.TrimSpace(in.WordingVersion) == "" {
		return Prepared{}, fmt.Errorf("%w: wording version missing", ErrBadInput)
	}

	h, err := s.newSignedHeader(ctx)
	if err != nil {
		return Prepared{}, err
	}
	now := h.At
	d := Decision{RequestID: req.ID, OfficerID: officerID, Verdict: in.Verdict, WordingVersion: strings.TrimSpace(in.WordingVersion)}
	var (
		manifest  Manifest
		retriever RetrieverField
		expiresAt *time.Time
		emergency bool
	)
	switch in.Verdict {
	case Deny:
		reason := normalizeText(in.Reason)
		if reason == "" {
			return Prepared{}, ErrReasonRequired
		}
		if !cleanText(reason) {
			return Prepared{}, ErrControlChars
		}
		if utf8.RuneCountInString(reason) > MaxReasonLen {
			return Prepared{}, fmt.Errorf("%w: reason longer than %d characters", ErrBadInput, MaxReasonLen)
		}
		d.Scope, d.Reason = canonicalScope(req.Scope), reason
	case NothingRecorded:
		scope, err := decidedScope(req, in)
		if err != nil {
			return Prepared{}, err
		}
		rs, err := s.restrictionsOf(ctx, s.db, scope.Patient)
		if err != nil {
			return Prepared{}, err
		}
		m, _, err := s.selectUnmasked(ctx, scope, rs)
		if err != nil {
			return Prepared{}, fmt.Errorf("select manifest: %w", err)
		}
		if len(m.Entries) > 0 {
			return Prepared{}, ErrNotEmpty
		}
		d.Scope, d.ManifestDigest = canonicalScope(scope), ManifestDigest(nil)
	case Approve:
		scope, err := decidedScope(req, in)
		if err != nil {
			return Prepared{}, err
		}
		rs, err := s.restrictionsOf(ctx, s.db, scope.Patient)
		if err != nil {
			return Prepared{}, err
		}
		if err := s.checkBlocked(ctx, off, req, rs); err != nil {
			return Prepared{}, err
		}
		retriever = RetrieverField{Kind: in.Retriever}
		if retriever.Kind == "" {
			retriever.Kind = req.Delivery
		}
		switch retriever.Kind {
		case ToRequester:
			retriever.UserID = req.RequesterID
		case ToStaff:
		default:
			return Prepared{}, fmt.Errorf("%w: retriever %q", ErrBadInput, in.Retriever)
		}
		// The opposition is asked again here: it may have been recorded since the filing.
		if req.Emergency {
			if emergency, err = s.emergencyGranted(ctx, s.db, req.Scope.Purpose, req.Scope.Patient); err != nil {
				return Prepared{}, err
			}
		}
		if req.Scope.Purpose == PurposeEmergency && !InMinimumDataset(scope.Categories) {
			return Prepared{}, ErrWidened
		}
		ttl, err := s.extractTTL(in.ExpiresIn, emergency)
		if err != nil {
			return Prepared{}, err
		}
		exp := now.Truncate(time.Second).Add(ttl)
		expiresAt = &exp
		if manifest, err = s.selectManifest(ctx, scope, rs); err != nil {
			return Prepared{}, err
		}
		// Identity vigilance: the traits are compared again now, not as the review page showed them.
		if d.IdentityOverride, err = s.identityOverride(ctx, req, in.IdentityOverride); err != nil {
			return Prepared{}, err
		}
		d.Scope, d.Retriever, d.ExpiresAt, d.ManifestDigest = canonicalScope(scope), &retriever, exp.Format(TimeFormat), manifest.Digest
		d.Emergency = emergency
		if req.Status == StatusAwaitingSecond {
			if err := s.matchFirstApproval(ctx, req, d); err != nil {
				return Prepared{}, err
			}
		}
	default:
		return Prepared{}, fmt.Errorf("%w: verdict %q", ErrBadInput, in.Verdict)
	}

	describe := func(d Decision, m Manifest) string {
		shown := in.Shown
		if in.Describe != nil {
			shown = in.Describe(d, m)
		}
		if shown == "" {
			shown = d.Summary()
		}
		return shown
	}
	entries, err := json.Marshal(manifest.Entries)
	if err != nil {
		return Prepared{}, err
	}
	drow := decisionRow{RequestID: req.ID, RequestStatus: string(req.Status), Manifest: string(entries),
		ManifestDigest: d.ManifestDigest, RetrieverKind: string(retriever.Kind), RetrieverID: retriever.UserID,
		ExtractExpiresAt: expiresAt, Emergency: emergency}
	return s.prepareDecisionRow(ctx, officerID, h, d, manifest, describe, drow,
		map[string]any{"entries": len(manifest.Entries), "identity_override": d.IdentityOverride != nil, "emergency": emergency})
}

// decidedScope is the scope an officer decides on: the one asked, or the officer's narrowing of it (never
// wider, with a well-formed care period).
func decidedScope(req Request, in DecisionInput) (Scope, error) {
	scope := req.Scope
	if in.Scope != nil {
		scope = *in.Scope
	}
	scope = scope.normalized()
	if !scope.Within(req.Scope) {
		return Scope{}, ErrWidened
	}
	if pf, pt := scope.Period.From, scope.Period.To; (pf != "" && !validDate(pf)) || (pt != "" && !validDate(pt)) ||
		(pf != "" && pt != "" && pf > pt) {
		return Scope{}, fmt.Errorf("%w: care period", ErrBadInput)
	}
	return scope, nil
}

// selectManifest asks the records what a scope selects (masked entries left out) and checks the answer: every
// entry inside the scope, at least one entry, and the digest (when the records side gives one) equal to ours.
func (s *Service) selectManifest(ctx context.Context, scope Scope, rs restrictionSet) (Manifest, error) {
	m, _, err := s.selectUnmasked(ctx, scope, rs)
	if err != nil {
		return Manifest{}, fmt.Errorf("select manifest: %w", err)
	}
	if len(m.Entries) == 0 {
		return Manifest{}, ErrEmptyManifest
	}
	for _, e := range m.Entries {
		if !scope.Has(e.Category) || !scope.Period.Contains(e.Date) || e.ID == "" || e.ContentHash == "" {
			return Manifest{}, fmt.Errorf("select manifest: records returned entry %s outside the scope", e.ID)
		}
	}
	digest := ManifestDigest(m.Entries)
	if m.Digest != "" && m.Digest != digest {
		return Manifest{}, errors.New("select manifest: the records' digest differs from approvals' (definitions disagree)")
	}
	m.Digest = digest
	return m, nil
}

// matchFirstApproval checks that a second approval approves what the first did: same scope, retriever and
// manifest. Two officers must have signed the same release; a second officer who disagrees denies.
func (s *Service) matchFirstApproval(ctx context.Context, req Request, d Decision) error {
	var first decisionRow
	err := s.db.WithContext(ctx).Where("request_id = ? AND officer_id = ? AND verdict = ? AND completed_at IS NOT NULL",
		req.ID, req.FirstOfficerID, Approve).Order("completed_at DESC").Take(&first).Error
	if err != nil {
		return fmt.Errorf("first approval of %s: %w", req.ID, err)
	}
	c, err := s.sealer.open("approval_decisions", "canonical", first.ID, first.CanonicalSealed)
	if err != nil {
		return err
	}
	fd, err := ParseDecision(c)
	if err != nil {
		return err
	}
	if !fd.Scope.Scope().Equal(d.Scope.Scope()) || fd.ManifestDigest != d.ManifestDigest ||
		fd.Retriever == nil || d.Retriever == nil || *fd.Retriever != *d.Retriever {
		return ErrSecondMismatch
	}
	return nil
}
