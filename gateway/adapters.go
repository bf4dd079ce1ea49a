package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gatewayd/approvals"
	"gatewayd/gateway/identity"
	"gatewayd/gateway/records"
)

// recordsAdapter lets approvals select manifests from gateway/records. Categories share their names, so the
// mapping is one to one; a care period's "to" date is inclusive, so it becomes the end of that day.
type recordsAdapter struct{ rec *records.Service }

func (a recordsAdapter) Select(ctx context.Context, id approvals.Identifier, scope approvals.Scope) (approvals.Manifest, error) {
	rs := records.Scope{}
	for _, c := range scope.Categories {
		rs.Categories = append(rs.Categories, records.Category(c))
	}
	if scope.Period.From != "" {
		t, err := time.Parse(time.DateOnly, scope.Period.From)
		if err != nil {
			return approvals.Manifest{}, fmt.Errorf("period from: %w", err)
		}
		rs.From = &t
	}
	if scope.Period.To != "" {
		t, err := time.Parse(time.DateOnly, scope.Period.To)
		if err != nil {
			return approvals.Manifest{}, fmt.Errorf("period to: %w", err)
		}
		t = t.Add(24*time.Hour - time.Microsecond)
		rs.To = &t
	}
	m, err := a.rec.Select(ctx, records.Identifier{System: id.System, Value: id.Value}, rs)
	if errors.Is(err, records.ErrNoPatient) {
		return approvals.Manifest{}, fmt.Errorf("%w", approvals.ErrNoPatient)
	}
	if err != nil {
		return approvals.Manifest{}, err
	}
	// Both sides implement the same documented digest; approvals recomputes it and refuses a mismatch, so the
	// two implementations are checked against each other on every decision.
	out := approvals.Manifest{Digest: m.Digest, Entries: make([]approvals.ManifestEntry, 0, len(m.Entries))}
	for _, e := range m.Entries {
		date := ""
		if e.Date != nil {
			date = e.Date.UTC().Format(time.DateOnly)
		}
		out.Entries = append(out.Entries, approvals.ManifestEntry{ID: e.ID, Version: e.Version, ContentHash: e.ContentHash,
			Category: approvals.Category(e.Category), Date: date, Display: e.Display})
	}
	return out, nil
}

// Traits gives approvals the identity traits of the records' Patient (console only: the review and decisions).
func (a recordsAdapter) Traits(ctx context.Context, id approvals.Identifier) (approvals.Traits, error) {
	t, err := a.rec.PatientTraits(ctx, records.Identifier{System: id.System, Value: id.Value})
	if errors.Is(err, records.ErrNoPatient) {
		return approvals.Traits{}, fmt.Errorf("%w", approvals.ErrNoPatient)
	}
	if err != nil {
		return approvals.Traits{}, err
	}
	return approvals.Traits{BirthName: t.Family, GivenName: t.Given, BirthDate: t.BirthDate, Sex: t.Gender}, nil
}

// signerAdapter lets approvals run signing ceremonies with the officer's registered passkey.
type signerAdapter struct{ id *identity.Service }

func (a signerAdapter) BeginSign(ctx context.Context, officerID string, challenge []byte) (any, string, error) {
	return a.id.BeginSign(ctx, officerID, challenge)
}

func (a signerAdapter) FinishSign(ctx context.Context, ceremonyID, officerID string, response []byte) (approvals.SignedAssertion, error) {
	s, err := a.id.FinishSign(ctx, ceremonyID, officerID, response)
	if err != nil {
		return approvals.SignedAssertion{}, err
	}
	return approvals.SignedAssertion{CredentialID: s.CredentialID, PublicKey: s.PublicKey,
		AuthenticatorData: s.AuthenticatorData, ClientDataJSON: s.ClientDataJSON, Signature: s.Signature,
		RPID: s.RPID, Origin: s.Origin, Challenge: s.Challenge, Commit: s.Commit}, nil
}

// usersAdapter tells approvals who a user is.
type usersAdapter struct{ id *identity.Service }

func (a usersAdapter) User(ctx context.Context, id string) (approvals.User, error) {
	u, known := sessionUser(ctx, id)
	if !known {
		var err error
		u, err = a.id.User(ctx, id)
		if errors.Is(err, identity.ErrNotFound) {
			return approvals.User{}, fmt.Errorf("user %s: %w", id, approvals.ErrNoUser)
		}
		if err != nil {
			return approvals.User{}, err
		}
	}
	return approvals.User{ID: u.ID, Role: approvals.Role(u.Role), Name: u.DisplayName, ProfessionalID: u.ProfessionalID,
		PersonID: u.PersonID, Active: u.Status == identity.StatusActive}, nil
}
