package approvals

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// StateCode is what a person reads about a request: its status joined with what became of its extract. Every
// page and the JSON API show this one value, so that no page can say "ready" while another says "retrieved".
type StateCode string

const (
	StatePending         StateCode = "pending"
	StateAwaitingSecond  StateCode = "awaiting_second"
	StateDenied          StateCode = "denied"
	StateCancelled       StateCode = "cancelled"
	StateLapsed          StateCode = "lapsed"
	StateReady           StateCode = "ready"
	StateRetrieved       StateCode = "retrieved"
	StateExpired         StateCode = "expired"
	StateRevoked         StateCode = "revoked"
	StateNothingRecorded StateCode = "nothing_recorded"
)

// RequestState is a request's state with what explains it, all read from signed decisions and the extract.
type RequestState struct {
	Code StateCode
	// Narrowed is set when the signed scope releases less than was asked: Removed lists the categories taken
	// out, Period is the signed care period when it differs from the one asked (nil otherwise).
	Narrowed bool
	Removed  []Category
	Period   *Period
	// Reason is the officer's signed reason of a denial or a revocation.
	Reason string
	// ExtractID names the request's latest extract, Retriever who may retrieve it (the officer may have chosen
	// another than the requester asked), ExpiresAt when it stops (or stopped) being retrievable.
	ExtractID string
	Retriever RetrieverKind
	ExpiresAt *time.Time
	// RetrievedAt and RetrievedBy (a name) are set once the extract was retrieved.
	RetrievedAt *time.Time
	RetrievedBy string
	// LapsesAt is when an open request lapses without a decision.
	LapsesAt *time.Time
	// DecidedAt is when the final decision was signed.
	DecidedAt *time.Time
}

// Final says whether nothing more will happen to the request (no decision, no retrieval).
func (st RequestState) Final() bool {
	switch st.Code {
	case StatePending, StateAwaitingSecond, StateReady:
		return false
	}
	return true
}

// fillState computes r.State from the request's final decision and latest extract.
func (s *Service) fillState(ctx context.Context, r *Request) error {
	st := RequestState{Code: StateCode(r.Status)}
	if r.Status.Open() {
		t := r.FiledAt.Add(s.policy.MaxPending)
		st.LapsesAt = &t
	}
	if r.FinalDecisionID != "" {
		d, completed, err := s.finalDecision(ctx, r)
		if err != nil {
			return err
		}
		st.DecidedAt = completed
		switch d.Verdict {
		case Deny:
			st.Reason = d.Reason
		case Approve, NothingRecorded:
			signed := d.Scope.Scope()
			for _, c := range Categories {
				if r.Scope.Has(c) && !signed.Has(c) {
					st.Removed = append(st.Removed, c)
				}
			}
			if signed.Period != r.Scope.Period {
				st.Period = &signed.Period
			}
			st.Narrowed = len(st.Removed) > 0 || st.Period != nil
		}
	}
	if r.Status == StatusApproved {
		if err := s.fillExtractState(ctx, r.ID, &st); err != nil {
			return err
		}
	}
	r.State = st
	return nil
}

// finalDecision opens the signed decision that closed a request, and when it was signed.
func (s *Service) finalDecision(ctx context.Context, r *Request) (Decision, *time.Time, error) {
	var row decisionRow
	if err := s.db.WithContext(ctx).Where("id = ?", r.FinalDecisionID).Take(&row).Error; err != nil {
		return Decision{}, nil, fmt.Errorf("decision of %s: %w", r.ID, err)
	}
	c, err := s.sealer.open("approval_decisions", "canonical", row.ID, row.CanonicalSealed)
	if err != nil {
		return Decision{}, nil, err
	}
	d, err := ParseDecision(c)
	if err != nil {
		return Decision{}, nil, err
	}
	return d, utc(row.CompletedAt), nil
}

// fillExtractState reads the latest extract of an approved request: ready, retrieved (when, by whom),
// expired or revoked (with the revocation's signed reason).
func (s *Service) fillExtractState(ctx context.Context, requestID string, st *RequestState) error {
	x, err := s.ExtractOf(ctx, requestID)
	if errors.Is(err, ErrNotFound) {
		// An approval always creates its extract in the same transaction; without one nothing is retrievable.
		st.Code = StateExpired
		return nil
	}
	if err != nil {
		return err
	}
	st.ExtractID, st.Retriever, st.ExpiresAt = x.ID, x.Retriever.Kind, &x.ExpiresAt
	st.Code = StateCode(x.State(s.clock()))
	switch st.Code {
	case StateRetrieved:
		st.RetrievedAt = x.RetrievedAt
		u, err := s.users.User(ctx, x.RetrievedBy)
		if err != nil {
			return fmt.Errorf("retriever of %s: %w", x.ID, err)
		}
		st.RetrievedBy = u.Name
	case StateRevoked:
		st.Reason, err = s.revocationReason(ctx, x.ID)
		if err != nil {
			return err
		}
	}
	return nil
}

// revocationReason reads the reason an officer signed when revoking an extract ("" for an unsigned
// revocation).
func (s *Service) revocationReason(ctx context.Context, extractID string) (string, error) {
	var rows []revocationRow
	if err := s.db.WithContext(ctx).Where("extract_id = ? AND completed_at IS NOT NULL", extractID).
		Order("completed_at DESC").Limit(1).Find(&rows).Error; err != nil {
		return "", fmt.Errorf("revocation of %s: %w", extractID, err)
	}
	if len(rows) == 0 {
		return "", nil
	}
	var rv Revocation
	if err := json.Unmarshal([]byte(rows[0].Canonical), &rv); err != nil {
		return "", fmt.Errorf("revocation of %s: %w", extractID, err)
	}
	return rv.Reason, nil
}

// StateOf returns a request's state for the console (an officer's page), with no ownership check.
func (s *Service) StateOf(ctx context.Context, r Request) (RequestState, error) {
	err := s.fillState(ctx, &r)
	return r.State, err
}

// statesOf fills the states of a list of requests.
func (s *Service) statesOf(ctx context.Context, reqs []Request) error {
	for i := range reqs {
		if err := s.fillState(ctx, &reqs[i]); err != nil {
			return err
		}
	}
	return nil
}
