package approvals

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// SignedView is what a closed request's final decision signed, for the officer's pages: the decision as
// signed (scope, retriever, expiry, digest), how many entries of each category it released, who signed it
// and when. It is read from the signed decision, never from the request as asked.
type SignedView struct {
	DecisionID string
	Decision   Decision
	// Counts is the number of released entries per category, in Categories order (empty for a denial).
	Counts []CategoryCount
	// Officers signed the release: the first officer, then the second where two were needed.
	Officers []User
	// Retriever is the requester named in the decision, when it releases to them.
	Retriever *User
	SignedAt  time.Time
}

// CategoryCount is a number of entries of one category.
type CategoryCount struct {
	Category Category
	Entries  int
}

// Signed returns what closed a request; ErrNotFound when no decision closed it (open, cancelled, lapsed).
func (s *Service) Signed(ctx context.Context, officerID, requestID string) (SignedView, error) {
	if _, err := s.officer(ctx, officerID); err != nil {
		return SignedView{}, err
	}
	row, err := s.requestRow(ctx, s.db, requestID)
	if err != nil {
		return SignedView{}, err
	}
	if row.FinalDecisionID == "" {
		return SignedView{}, fmt.Errorf("decision of %s: %w", requestID, ErrNotFound)
	}
	var d decisionRow
	if err := s.db.WithContext(ctx).Where("id = ?", row.FinalDecisionID).Take(&d).Error; err != nil {
		return SignedView{}, fmt.Errorf("decision of %s: %w", requestID, err)
	}
	c, err := s.sealer.open("approval_decisions", "canonical", d.ID, d.CanonicalSealed)
	if err != nil {
		return SignedView{}, err
	}
	v := SignedView{DecisionID: d.ID}
	if v.Decision, err = ParseDecision(c); err != nil {
		return SignedView{}, err
	}
	if d.CompletedAt != nil {
		v.SignedAt = d.CompletedAt.UTC()
	}
	var entries []ManifestEntry
	if d.Manifest != "" {
		if err := json.Unmarshal([]byte(d.Manifest), &entries); err != nil {
			return SignedView{}, fmt.Errorf("manifest of %s: %w", d.ID, err)
		}
	}
	n := map[Category]int{}
	for _, e := range entries {
		n[e.Category]++
	}
	for _, cat := range Categories {
		if v.Decision.Scope.Scope().Has(cat) && v.Decision.Verdict != Deny {
			v.Counts = append(v.Counts, CategoryCount{Category: cat, Entries: n[cat]})
		}
	}
	ids := []string{d.OfficerID}
	if row.FirstOfficerID != "" && row.FirstOfficerID != d.OfficerID {
		ids = []string{row.FirstOfficerID, d.OfficerID}
	}
	for _, id := range ids {
		u, err := s.users.User(ctx, id)
		if err != nil {
			return SignedView{}, fmt.Errorf("officer of %s: %w", d.ID, err)
		}
		v.Officers = append(v.Officers, u)
	}
	if r := v.Decision.Retriever; r != nil && r.UserID != "" {
		u, err := s.users.User(ctx, r.UserID)
		if err != nil {
			return SignedView{}, fmt.Errorf("retriever of %s: %w", d.ID, err)
		}
		v.Retriever = &u
	}
	return v, nil
}
