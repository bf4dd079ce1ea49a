package approvals

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"gatewayd/gateway/audit"
)

// Renderer writes a claimed extract: exactly the entries given (the signed manifest), for the patient, with
// the watermark, streamed to w. The gateway adapts gateway/records to it, so that no intake handler touches
// the records: an intake retrieval goes through the claim. A Renderer should check everything it can before
// its first byte, so that a refusal still reaches the client as an error rather than a truncated file.
type Renderer interface {
	Render(ctx context.Context, w io.Writer, job RenderJob) error
}

// Extract formats.
const (
	FormatFHIR = "fhir" // FHIR R4 Bundle, JSON
	FormatHTML = "html" // the printable page
)

// RenderJob is one extract to render.
type RenderJob struct {
	Format  string
	Lang    string
	Patient Identifier
	// Entries is the signed manifest as the claim decoded it (once): what the renderer reads, in order.
	Entries   []ManifestEntry
	Watermark Watermark
	// Emergency asks for the International Patient Summary's shape (a document Bundle) in FHIR.
	Emergency bool
}

// Watermark is what every rendered extract carries: ids, people (name and professional id, no patient data),
// purpose, expiry and the signed manifest digest.
type Watermark struct {
	RequestID      string
	DecisionID     string
	Requester      string
	Purpose        string
	Retriever      string
	Expiry         time.Time
	ManifestDigest string
	// Released is when the extract was released (the final approval).
	Released time.Time
}

// ErrNoRenderer is returned by DeliverExtract when the service was built without a Renderer.
var ErrNoRenderer = errors.New("no extract renderer configured")

// DeliverExtract renders an extract the caller has just claimed (ClaimExtract: its claim and audit row are
// committed) into w, through a writer that hashes and counts the bytes w accepts, then records what was sent
// (RecordDelivery, in a transaction of its own, even if ctx was cancelled because the client went away). It
// returns what was sent; Complete is false when rendering or writing failed, and the error says why. The
// extract stays retrieved either way: one time is one time.
//
// finish is called once the last byte was rendered: it hands the rest of the response to the connection
// (http.ResponseController's Flush) and says whether that worked. Only then is the delivery recorded complete.
// A process stopped before the record is written leaves the delivery unknown (claimed, never recorded), which
// DeliveryUnknown tells apart from a broken one.
func (s *Service) DeliverExtract(ctx context.Context, x Extract, retrieverID, format, lang string, w io.Writer, finish func() error) (Delivered, error) {
	cw := &countingHash{w: w, h: sha256.New()}
	err := s.deliver(ctx, x, retrieverID, format, lang, cw)
	if err == nil && cw.err == nil {
		if ferr := finish(); ferr != nil {
			err = fmt.Errorf("hand the response to the connection: %w", ferr)
		}
	}
	d := Delivered{SHA256: hex.EncodeToString(cw.h.Sum(nil)), Bytes: cw.n, Complete: err == nil && cw.err == nil}
	if rerr := s.RecordDelivery(context.WithoutCancel(ctx), x.ID, retrieverID, d); rerr != nil {
		return d, errors.Join(err, rerr)
	}
	return d, err
}

func (s *Service) deliver(ctx context.Context, x Extract, retrieverID, format, lang string, w io.Writer) error {
	if s.renderer == nil {
		return ErrNoRenderer
	}
	if format != FormatFHIR && format != FormatHTML {
		return fmt.Errorf("%w: format %q", ErrBadInput, format)
	}
	d, err := s.DeliveryOf(ctx, x, retrieverID)
	if err != nil {
		return err
	}
	wm := Watermark{RequestID: x.RequestID, DecisionID: x.DecisionID, Requester: person(d.Requester),
		Purpose: string(d.Purpose), Retriever: person(d.Retriever), Expiry: x.ExpiresAt, ManifestDigest: x.ManifestDigest,
		Released: x.CreatedAt}
	return s.renderer.Render(ctx, w, RenderJob{Format: format, Lang: lang, Patient: d.Patient, Entries: x.Entries,
		Watermark: wm, Emergency: x.Emergency})
}

// person is how the watermark names a user: display name and professional id (not patient data).
func person(u User) string {
	if u.ProfessionalID == "" {
		return u.Name
	}
	return u.Name + " (" + u.ProfessionalID + ")"
}

// countingHash passes bytes to w and hashes and counts those w accepted. After w fails it keeps the error and
// refuses further writes, so rendering stops.
type countingHash struct {
	w   io.Writer
	h   hash.Hash
	n   int64
	err error
}

func (cw *countingHash) Write(p []byte) (int, error) {
	if cw.err != nil {
		return 0, cw.err
	}
	n, err := cw.w.Write(p)
	cw.h.Write(p[:n])
	cw.n += int64(n)
	cw.err = err
	return n, err
}

// Delivery is what rendering a claimed extract needs besides the signed manifest (the claim's Extract): the
// patient it is about, and the watermark's fields. It is read after the claim committed and stored nowhere.
type Delivery struct {
	Extract Extract
	Patient Identifier
	Purpose Purpose
	// Requester is the user who filed the request (the watermark shows their name and professional id).
	Requester User
	// Retriever is the user who claimed the extract.
	Retriever User
}

// DeliveryOf opens what rendering a claimed extract needs. It refuses an extract that was not claimed by
// retrieverID: only the claim hands out a manifest to render.
func (s *Service) DeliveryOf(ctx context.Context, x Extract, retrieverID string) (Delivery, error) {
	if x.RetrievedAt == nil || x.RetrievedBy != retrieverID {
		return Delivery{}, fmt.Errorf("extract %s: %w", x.ID, ErrNotRetriever)
	}
	req, err := s.claimedRequestOf(ctx, x)
	if err != nil {
		return Delivery{}, err
	}
	// Only the patient is opened: the request's other sealed fields are not the extract's to show.
	p, err := s.sealer.open("approval_requests", "patient", x.RequestID, req.PatientSealed)
	if err != nil {
		return Delivery{}, err
	}
	var patient Identifier
	if err := json.Unmarshal(p, &patient); err != nil {
		return Delivery{}, fmt.Errorf("request %s: patient: %w", x.RequestID, err)
	}
	requester, err := s.users.User(ctx, req.RequesterID)
	if err != nil {
		return Delivery{}, fmt.Errorf("requester of %s: %w", x.RequestID, err)
	}
	retriever, err := x.claimerOr(ctx, s.users, retrieverID)
	if err != nil {
		return Delivery{}, fmt.Errorf("retriever of %s: %w", x.ID, err)
	}
	return Delivery{Extract: x, Patient: patient, Purpose: Purpose(req.Purpose), Requester: requester,
		Retriever: retriever}, nil
}

// claimedRequestOf is what the claim read of x's request, or, for an extract that did not come from the claim,
// the request read now.
func (s *Service) claimedRequestOf(ctx context.Context, x Extract) (claimedRequest, error) {
	if x.request != nil {
		return *x.request, nil
	}
	row, err := s.requestRow(ctx, s.db, x.RequestID)
	if err != nil {
		return claimedRequest{}, err
	}
	return claimedRequest{RequesterID: row.RequesterID, PatientSealed: row.PatientSealed, Purpose: row.Purpose}, nil
}

// Delivered is what was sent for a claimed extract: the SHA-256 (hex) and size of the bytes written, and
// whether the stream ended as rendered (false: the client went away or rendering failed).
type Delivered struct {
	SHA256   string
	Bytes    int64
	Complete bool
}

// RecordDelivery writes, after the stream of a claimed extract ended, what was sent: on the extract row and
// in an audit row extract.delivered {sha256, bytes, complete}, committed together on their own (the claim
// committed before any byte was rendered): one statement on PostgreSQL (audit.UpdateOne). It is recorded
// once per extract.
func (s *Service) RecordDelivery(ctx context.Context, extractID, retrieverID string, d Delivered) error {
	now := s.clock()
	ev := audit.Event{At: now, Actor: "user:" + retrieverID, Action: "extract.delivered",
		Subject: "extract:" + extractID, Details: map[string]any{"sha256": d.SHA256, "bytes": d.Bytes, "complete": d.Complete}}
	recorded, err := audit.UpdateOne(ctx, s.db, "UPDATE extracts SET delivered_at = ?, delivery_sha256 = ?, delivery_bytes = ?, "+
		"delivery_complete = ? WHERE id = ? AND retrieved_by = ? AND delivered_at IS NULL",
		[]any{now, d.SHA256, d.Bytes, d.Complete, extractID, retrieverID}, ev)
	switch {
	case err != nil:
		return fmt.Errorf("record delivery: %w", err)
	case !recorded:
		return fmt.Errorf("record delivery of %s: %w", extractID, ErrNotRetriever)
	}
	return nil
}

// deliveryBroken says whether an extract was claimed and its delivery did not complete, or was never recorded
// (unknown), which is what allows a re-issue.
func deliveryBroken(r extractViewRow) bool {
	return r.RetrievedAt != nil && (r.DeliveryComplete == nil || !*r.DeliveryComplete)
}

// deliveryUnknown says whether an extract was claimed and what was sent was never recorded: the process
// stopped, or the record could not be written, after bytes may have reached the client. A complete copy may
// exist, so a re-issue needs two officers' signatures.
func deliveryUnknown(r extractViewRow) bool {
	return r.RetrievedAt != nil && r.DeliveredAt == nil
}

// reissuable says whether an officer may re-issue the extract: its delivery broke, or a restore invalidated
// it, and it was not re-issued yet.
func (r extractViewRow) reissuable() bool {
	restored := r.RevokedBy != nil && *r.RevokedBy == RevokedByRestore
	return (deliveryBroken(r) || restored) && r.ReissuedBy == nil
}

// claimerOr is the user who claimed x as the claim read them, or, for an extract that did not come from
// ClaimExtract, userID read now.
func (x Extract) claimerOr(ctx context.Context, users Users, userID string) (User, error) {
	if x.claimer != nil && x.claimer.ID == userID {
		return *x.claimer, nil
	}
	return users.User(ctx, userID)
}
