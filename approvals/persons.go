package approvals

import (
	"context"
	"errors"
	"fmt"

	"gatewayd/gateway/audit"
)

// checkPersons is one person, one vote: the officer may not decide a request filed by any account of the same
// person, nor give a second approval after any account of the same person gave the first. A refusal is
// audited (it may be a person trying their two accounts), with ids and a reason code only.
func (s *Service) checkPersons(ctx context.Context, officer User, req Request) error {
	refuse := func(code string, err error) error { return s.refuseDecision(ctx, officer, req, code, err) }
	same, err := s.samePerson(ctx, officer, req.RequesterID)
	if err != nil {
		return err
	}
	if same {
		return refuse("own_request", ErrOwnRequest)
	}
	if req.Status == StatusAwaitingSecond {
		if same, err = s.samePerson(ctx, officer, req.FirstOfficerID); err != nil {
			return err
		}
		if same {
			return refuse("same_officer", ErrSameOfficer)
		}
	}
	return nil
}

// samePerson says whether the account otherID is u's person (an unknown account is nobody's).
func (s *Service) samePerson(ctx context.Context, u User, otherID string) (bool, error) {
	if otherID == u.ID {
		return true, nil
	}
	other, err := s.users.User(ctx, otherID)
	if errors.Is(err, ErrNoUser) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("user %s: %w", otherID, err)
	}
	return other.person() == u.person(), nil
}

// refuseDecision audits an officer's refused decision (ids and a reason code only) and returns err.
func (s *Service) refuseDecision(ctx context.Context, officer User, req Request, code string, err error) error {
	if aerr := audit.Record(context.WithoutCancel(ctx), s.db, audit.Event{At: s.clock(), Actor: "user:" + officer.ID,
		Action: "decision.refused", Subject: "request:" + req.ID, Details: map[string]any{"reason": code}}); aerr != nil {
		return fmt.Errorf("%w (and its audit row failed: %v)", err, aerr)
	}
	return err
}
