package gateway

import (
	"context"
	"io"
	"time"

	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/identity"
	"gatewayd/gateway/keys"
	"gatewayd/gateway/records"
)

// WireApprovals builds an approvals service over records and identity with the given signer. The server
// passes identity's WebAuthn ceremonies; tests may pass a software signer (approvalstest) to approve
// requests without the signing pages.
func WireApprovals(db *gorm.DB, master *keys.Master, rec *records.Service, id *identity.Service, signer approvals.Signer,
	now func() time.Time) (*approvals.Service, error) {
	zone, err := time.LoadLocation(DefaultTimeZone)
	if err != nil {
		return nil, err
	}
	return approvals.New(approvals.Deps{DB: db, Records: recordsAdapter{rec}, Renderer: recordsRenderer{rec, zone}, Signer: signer,
		Users: usersAdapter{id}, SealKey: master.Derive(keys.PurposeApprovals), Now: now})
}

// recordsRenderer adapts records' rendering to approvals.Renderer. The signed manifest, as the claim decoded
// it, goes to records as references (records.ManifestOf, no second decode: decoding the stored JSON again,
// twice, for the Bundle's targets and for the entries' query, was a sixth of a retrieval's CPU): rendering
// streams its entries in one query per chunk and checks each (stored, the patient's, with the signed hash) as
// it goes; a mismatch in the first 64 KB is still refused before the first byte reaches the client.
type recordsRenderer struct {
	r    *records.Service
	zone *time.Location // the hospital's, for the printable page's times
}

func (a recordsRenderer) Render(ctx context.Context, w io.Writer, job approvals.RenderJob) error {
	id := records.Identifier(job.Patient)
	refs := make([]records.EntryRef, len(job.Entries))
	for i, e := range job.Entries {
		refs[i] = records.EntryRef{ID: e.ID, Version: e.Version, ContentHash: e.ContentHash}
	}
	m, err := a.r.ManifestOf(ctx, id, refs)
	if err != nil {
		return err
	}
	wm := records.Watermark{RequestID: job.Watermark.RequestID, DecisionID: job.Watermark.DecisionID,
		Requester: job.Watermark.Requester, Purpose: job.Watermark.Purpose, Recipient: job.Watermark.Retriever,
		Expiry: job.Watermark.Expiry, ManifestDigest: job.Watermark.ManifestDigest, Released: job.Watermark.Released, Zone: a.zone}
	switch {
	case job.Format == approvals.FormatHTML:
		return a.r.RenderHTML(ctx, w, m, id, wm, job.Lang)
	case job.Emergency:
		return a.r.RenderIPS(ctx, w, m, id, wm)
	}
	return a.r.RenderBundle(ctx, w, m, id, wm)
}
