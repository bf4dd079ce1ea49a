package approvals

import (
	"context"
	"errors"
	"fmt"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

// MyRequests lists one page of a requester's requests, newest first, with their total.
func (s *Service) MyRequests(ctx context.Context, requesterID string, p store.Page) (store.Listed[Request], error) {
	var rows []requestRow
	total, err := store.NewestFirst(s.db.WithContext(ctx).Model(&requestRow{}).Where("requester_id = ?", requesterID),
		"filed_at", "id", p, &rows)
	if err != nil {
		return store.Listed[Request]{}, fmt.Errorf("list requests: %w", err)
	}
	reqs, err := s.toRequests(rows)
	if err != nil {
		return store.Listed[Request]{}, err
	}
	out := store.PageOf(reqs, p, total, func(r Request) store.Cursor { return store.Cursor{At: r.FiledAt, ID: r.ID} })
	return out, s.statesOf(ctx, out.Items)
}

// MyRequest returns one of a requester's requests. Someone else's request is ErrNotFound, as an unknown id:
// the answer must not tell that the id exists.
func (s *Service) MyRequest(ctx context.Context, requesterID, id string) (Request, error) {
	row, err := s.requestRow(ctx, s.db, id)
	if err != nil {
		return Request{}, err
	}
	if row.RequesterID != requesterID {
		return Request{}, fmt.Errorf("request %s: %w", id, ErrNotFound)
	}
	r, err := s.toRequest(row)
	if err != nil {
		return Request{}, err
	}
	return r, s.fillState(ctx, &r)
}

// CancelRequest cancels a requester's own pending request, with its audit row.
func (s *Service) CancelRequest(ctx context.Context, requesterID, id string) error {
	now := s.clock()
	return store.Tx(ctx, s.db, func(tx *gorm.DB) error {
		res := tx.Model(&requestRow{}).Where("id = ? AND requester_id = ? AND status = ?", id, requesterID, StatusPending).
			Updates(map[string]any{"status": StatusCancelled, "updated_at": now})
		if res.Error != nil {
			return fmt.Errorf("cancel request: %w", res.Error)
		}
		if res.RowsAffected != 1 {
			row, err := s.requestRow(ctx, tx, id)
			if err != nil {
				return err
			}
			if row.RequesterID != requesterID {
				return fmt.Errorf("cancel request %s: %w", id, ErrNotFound)
			}
			return fmt.Errorf("cancel request %s (%s): %w", id, row.Status, ErrNotPending)
		}
		return audit.Append(tx, audit.Event{At: now, Actor: "user:" + requesterID, Action: "request.cancelled",
			Subject: "request:" + id})
	})
}

// queueRank puts emergency requests first in the queue, then urgent ones. An emergency loses its place as soon
// as the patient opposes emergency access (an opposition in force, as emergencyOpposed reads it), even one
// recorded after the filing: the patient is then treated like any other.
const queueRank = "CASE WHEN emergency AND NOT EXISTS (SELECT 1 FROM patient_restrictions pr WHERE " +
	"pr.patient_index = approval_requests.patient_index AND pr.kind = 'oppose_emergency' AND pr.lifts = '' AND " +
	"pr.completed_at IS NOT NULL AND pr.lifted_at IS NULL) THEN 0 WHEN urgency = 'urgent' THEN 1 ELSE 2 END"

// Queue lists one page of the requests waiting for an officer, emergencies first, then urgent, then oldest (keyset-paged on
// rank, filing time and id), with their total.
func (s *Service) Queue(ctx context.Context, p store.Page) (store.Listed[Request], error) {
	q := s.db.WithContext(ctx).Model(&requestRow{}).Where("status IN ?", []Status{StatusPending, StatusAwaitingSecond})
	var total int64
	if err := q.Session(&gorm.Session{}).Select("COUNT(*)").Scan(&total).Error; err != nil {
		return store.Listed[Request]{}, fmt.Errorf("queue: %w", err)
	}
	page := q.Session(&gorm.Session{}).Order(queueRank + ", filed_at, id").Limit(p.Limit() + 1)
	if p.After != "" {
		c, err := store.ParseCursor(p.After)
		if err != nil {
			return store.Listed[Request]{}, err
		}
		page = page.Where("("+queueRank+" > ? OR ("+queueRank+" = ? AND (filed_at > ? OR (filed_at = ? AND id > ?))))",
			c.Rank, c.Rank, c.At, c.At, c.ID)
	}
	var rows []requestRow
	if err := page.Select("approval_requests.*, " + queueRank + " AS queue_rank").Find(&rows).Error; err != nil {
		return store.Listed[Request]{}, fmt.Errorf("queue: %w", err)
	}
	reqs := make([]Request, len(rows))
	ranks := make(map[string]int, len(rows))
	for i, r := range rows {
		req, err := s.toRequest(r)
		if err != nil {
			return store.Listed[Request]{}, err
		}
		// Emergency, as the queue shows it, is the privilege in force now.
		req.Emergency = r.QueueRank == 0
		reqs[i], ranks[req.ID] = req, r.QueueRank
	}
	return store.PageOf(reqs, p, total, func(r Request) store.Cursor {
		return store.Cursor{Rank: ranks[r.ID], At: r.FiledAt, ID: r.ID}
	}), nil
}

// RequesterStats counts a requester's requests by status, for the review page.
type RequesterStats struct {
	Filed    int
	ByStatus map[Status]int
}

// Review is what an officer's review page shows.
type Review struct {
	Request   Request
	Requester User
	Stats     RequesterStats
	// Manifest is what the requested scope selects today; NoPatient is set instead when the identifier names
	// nobody (the officer then denies).
	Manifest  Manifest
	NoPatient bool
	// Masked is how many entries the scope would select that the patient masked (never which: they are left
	// out of Manifest). Blocked says that the patient blocked the requester: the request cannot be approved.
	Masked  int
	Blocked bool
	// Identity compares the filed traits with the records' Patient, trait by trait (nil when NoPatient).
	Identity IdentityCheck
}

// OpenReview gathers a request's review for an officer and audits that the officer saw it.
func (s *Service) OpenReview(ctx context.Context, officerID, id string) (Review, error) {
	if _, err := s.officer(ctx, officerID); err != nil {
		return Review{}, err
	}
	row, err := s.requestRow(ctx, s.db, id)
	if err != nil {
		return Review{}, err
	}
	req, err := s.toRequest(row)
	if err != nil {
		return Review{}, err
	}
	rv := Review{Request: req, Stats: RequesterStats{ByStatus: map[Status]int{}}}
	if rv.Requester, err = s.users.User(ctx, req.RequesterID); err != nil {
		return Review{}, fmt.Errorf("review %s: requester: %w", id, err)
	}
	var counts []struct {
		Status string
		N      int
	}
	if err := s.db.WithContext(ctx).Model(&requestRow{}).Select("status, COUNT(*) AS n").
		Where("requester_id = ?", req.RequesterID).Group("status").Scan(&counts).Error; err != nil {
		return Review{}, fmt.Errorf("review %s: requester's history: %w", id, err)
	}
	for _, c := range counts {
		rv.Stats.ByStatus[Status(c.Status)] = c.N
		rv.Stats.Filed += c.N
	}
	rs, err := s.restrictionsOf(ctx, s.db, req.Scope.Patient)
	if err != nil {
		return Review{}, fmt.Errorf("review %s: %w", id, err)
	}
	rv.Manifest, rv.Masked, err = s.selectUnmasked(ctx, req.Scope, rs)
	switch {
	case errors.Is(err, ErrNoPatient):
		rv.NoPatient, rv.Manifest = true, Manifest{}
	case err != nil:
		return Review{}, fmt.Errorf("review %s: manifest: %w", id, err)
	default:
		rv.Manifest.Digest = ManifestDigest(rv.Manifest.Entries)
		if rv.Identity, err = s.checkIdentity(ctx, req); err != nil {
			return Review{}, fmt.Errorf("review %s: %w", id, err)
		}
	}
	rv.Blocked = rs.blocks(rv.Requester)
	err = audit.Record(ctx, s.db, audit.Event{At: s.clock(), Actor: "user:" + officerID, Action: "request.viewed",
		Subject: "request:" + id, Details: map[string]any{"entries": len(rv.Manifest.Entries),
			"traits_differ": len(rv.Identity.Differs())}})
	if err != nil {
		return Review{}, err
	}
	return rv, nil
}

func (s *Service) officer(ctx context.Context, id string) (User, error) {
	u, err := s.users.User(ctx, id)
	if err != nil {
		return User{}, fmt.Errorf("officer %s: %w", id, err)
	}
	if !u.Active || u.Role != RoleOfficer {
		return User{}, fmt.Errorf("user %s: %w", id, ErrForbidden)
	}
	return u, nil
}

func (s *Service) requestRow(ctx context.Context, db *gorm.DB, id string) (requestRow, error) {
	var row requestRow
	err := db.WithContext(ctx).Where("id = ?", id).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return row, fmt.Errorf("request %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return row, fmt.Errorf("request %s: %w", id, err)
	}
	return row, nil
}

func (s *Service) toRequests(rows []requestRow) ([]Request, error) {
	out := make([]Request, 0, len(rows))
	for _, r := range rows {
		req, err := s.toRequest(r)
		if err != nil {
			return nil, err
		}
		out = append(out, req)
	}
	return out, nil
}

// ScopeOf returns a request's scope, for the console to narrow it into a DecisionInput. It is not audited on
// its own: it serves an officer's decision, whose preparation is.
func (s *Service) ScopeOf(ctx context.Context, id string) (Scope, error) {
	row, err := s.requestRow(ctx, s.db, id)
	if err != nil {
		return Scope{}, err
	}
	r, err := s.toRequest(row)
	return r.Scope, err
}
