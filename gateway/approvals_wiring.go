package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/identity"
	"gatewayd/gateway/keys"
	"gatewayd/gateway/records"
)

// newDomain builds the records and approvals services and wires records and identity into approvals through
// the interfaces approvals declares. Without a master key (some tests) there is neither.
func newDomain(d Deps, id *identity.Service, now func() time.Time) (*records.Service, *approvals.Service, error) {
	if d.Keys == nil {
		return nil, nil, nil
	}
	rec, err := records.New(d.DB, d.Keys)
	if err != nil {
		return nil, nil, fmt.Errorf("records: %w", err)
	}
	ap, err := WireApprovals(d.DB, d.Keys, rec, id, identitySigner{id}, now)
	if err != nil {
		return nil, nil, err
	}
	return rec, ap, nil
}

// WireApprovals builds an approvals service over records and identity with the given signer. The server
// passes identity's WebAuthn ceremonies; tests may pass a software signer (approvalstest) to approve
// requests without the signing pages.
func WireApprovals(db *gorm.DB, master *keys.Master, rec *records.Service, id *identity.Service, signer approvals.Signer,
	now func() time.Time) (*approvals.Service, error) {
	return approvals.New(approvals.Deps{DB: db, Records: recordsSelector{rec}, Renderer: recordsRenderer{rec}, Signer: signer,
		Users: identityUsers{id}, SealKey: master.Derive(keys.PurposeApprovals), Now: now})
}

// recordsRenderer adapts records' rendering to approvals.Renderer. It rebuilds the records manifest from the
// signed entry references first (every entry stored, the patient's, with the signed hash), so that a mismatch
// is refused before the first byte.
type recordsRenderer struct{ r *records.Service }

func (a recordsRenderer) Render(ctx context.Context, w io.Writer, job approvals.RenderJob) error {
	refs := make([]records.EntryRef, len(job.Entries))
	for i, e := range job.Entries {
		refs[i] = records.EntryRef{ID: e.ID, Version: e.Version, ContentHash: e.ContentHash}
	}
	id := records.Identifier(job.Patient)
	m, err := a.r.ManifestOf(ctx, id, refs)
	if err != nil {
		return err
	}
	wm := records.Watermark{RequestID: job.Watermark.RequestID, DecisionID: job.Watermark.DecisionID,
		Requester: job.Watermark.Requester, Purpose: job.Watermark.Purpose, Recipient: job.Watermark.Retriever,
		Expiry: job.Watermark.Expiry, ManifestDigest: job.Watermark.ManifestDigest}
	if job.Format == approvals.FormatHTML {
		return a.r.RenderHTML(ctx, w, m, id, wm, job.Lang)
	}
	return a.r.RenderBundle(ctx, w, m, id, wm)
}

// recordsSelector adapts records.Select to approvals.Records. It leaves Manifest.Digest empty: the two
// packages write their digests differently, and approvals computes the one it signs.
type recordsSelector struct{ r *records.Service }

func (a recordsSelector) Select(ctx context.Context, id approvals.Identifier, scope approvals.Scope) (approvals.Manifest, error) {
	rs := records.Scope{}
	for _, c := range scope.Categories {
		rs.Categories = append(rs.Categories, records.Category(c))
	}
	if scope.Period.From != "" {
		t, err := time.Parse(time.DateOnly, scope.Period.From)
		if err != nil {
			return approvals.Manifest{}, err
		}
		rs.From = &t
	}
	if scope.Period.To != "" {
		t, err := time.Parse(time.DateOnly, scope.Period.To)
		if err != nil {
			return approvals.Manifest{}, err
		}
		// records compares instants: the last day is included up to its end.
		t = t.Add(24*time.Hour - time.Microsecond)
		rs.To = &t
	}
	m, err := a.r.Select(ctx, records.Identifier(id), rs)
	if errors.Is(err, records.ErrNoPatient) {
		return approvals.Manifest{}, fmt.Errorf("%w", approvals.ErrNoPatient)
	}
	if err != nil {
		return approvals.Manifest{}, err
	}
	out := approvals.Manifest{Entries: make([]approvals.ManifestEntry, len(m.Entries))}
	for i, e := range m.Entries {
		date := ""
		if e.Date != nil {
			date = e.Date.UTC().Format(time.DateOnly)
		}
		out.Entries[i] = approvals.ManifestEntry{ID: e.ID, Version: e.Version, ContentHash: e.ContentHash,
			Category: approvals.Category(e.Category), Date: date, Display: e.Display}
	}
	return out, nil
}

// identitySigner adapts identity's signing ceremonies to approvals.Signer.
type identitySigner struct{ id *identity.Service }

func (a identitySigner) BeginSign(ctx context.Context, officerID string, challenge []byte) (any, string, error) {
	return a.id.BeginSign(ctx, officerID, challenge)
}

func (a identitySigner) FinishSign(ctx context.Context, ceremonyID, officerID string, response []byte) (approvals.SignedAssertion, error) {
	s, err := a.id.FinishSign(ctx, ceremonyID, officerID, response)
	if err != nil {
		return approvals.SignedAssertion{}, err
	}
	return approvals.SignedAssertion(s), nil
}

// identityUsers adapts identity's users to approvals.Users.
type identityUsers struct{ id *identity.Service }

func (a identityUsers) User(ctx context.Context, userID string) (approvals.User, error) {
	u, err := a.id.User(ctx, userID)
	if errors.Is(err, identity.ErrNotFound) {
		return approvals.User{}, fmt.Errorf("user %s: %w", userID, approvals.ErrNoUser)
	}
	if err != nil {
		return approvals.User{}, err
	}
	return approvals.User{ID: u.ID, Role: approvals.Role(u.Role), Name: u.DisplayName, ProfessionalID: u.ProfessionalID,
		Active: u.Status == identity.StatusActive}, nil
}
