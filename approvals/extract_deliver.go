package approvals

import (
	"context"
	"fmt"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

// Delivery is what the gateway needs to render a claimed extract: the signed manifest (the claim's Extract),
// the patient it is about, and the watermark's fields. It is read after the claim committed and is never
// stored anywhere.
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
	row, err := s.requestRow(ctx, s.db, x.RequestID)
	if err != nil {
		return Delivery{}, err
	}
	req, err := s.toRequest(row)
	if err != nil {
		return Delivery{}, err
	}
	requester, err := s.users.User(ctx, req.RequesterID)
	if err != nil {
		return Delivery{}, fmt.Errorf("requester of %s: %w", x.RequestID, err)
	}
	retriever, err := s.users.User(ctx, retrieverID)
	if err != nil {
		return Delivery{}, fmt.Errorf("retriever of %s: %w", x.ID, err)
	}
	return Delivery{Extract: x, Patient: req.Scope.Patient, Purpose: req.Scope.Purpose, Requester: requester,
		Retriever: retriever}, nil
}

// Delivered is what was sent for a claimed extract: the SHA-256 (hex) and size of the bytes written, and
// whether the stream ended as rendered (false: the client went away or rendering failed).
type Delivered struct {
	SHA256   string
	Bytes    int64
	Complete bool
}

// RecordDelivery writes, after the stream of a claimed extract ended, what was sent: on the extract row and
// in an audit row extract.delivered {sha256, bytes, complete}, in one transaction of its own (the claim's
// transaction committed before any byte was rendered). It is recorded once per extract.
func (s *Service) RecordDelivery(ctx context.Context, extractID, retrieverID string, d Delivered) error {
	now := s.clock()
	return store.Tx(ctx, s.db, func(tx *gorm.DB) error {
		res := tx.Exec("UPDATE extracts SET delivered_at = ?, delivery_sha256 = ?, delivery_bytes = ?, delivery_complete = ? "+
			"WHERE id = ? AND retrieved_by = ? AND delivered_at IS NULL", now, d.SHA256, d.Bytes, d.Complete, extractID, retrieverID)
		if res.Error != nil {
			return fmt.Errorf("record delivery: %w", res.Error)
		}
		if res.RowsAffected != 1 {
			return fmt.Errorf("record delivery of %s: %w", extractID, ErrNotRetriever)
		}
		return audit.Append(tx, audit.Event{At: now, Actor: "user:" + retrieverID, Action: "extract.delivered",
			Subject: "extract:" + extractID, Details: map[string]any{"sha256": d.SHA256, "bytes": d.Bytes, "complete": d.Complete}})
	})
}

// deliveryBroken says whether an extract was claimed and its delivery did not complete (or never reported),
// which is what allows a re-issue.
func deliveryBroken(r extractViewRow) bool {
	return r.RetrievedAt != nil && (r.DeliveryComplete == nil || !*r.DeliveryComplete)
}
