package approvals

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/store"
)

// ExtractView is an extract as a list or a state page shows it: its state and, once retrieved, when, by whom
// and whether the delivery completed. It holds nothing of the content.
type ExtractView struct {
	Extract
	Purpose     Purpose
	RequesterID string
	// DeliveredAt, DeliveryComplete, DeliverySHA256 and DeliveryBytes are set once the stream of a retrieval
	// ended (DeliveredAt nil: never retrieved, or the process stopped while streaming).
	DeliveredAt      *time.Time
	DeliveryComplete bool
	DeliverySHA256   string
	DeliveryBytes    int64
	// ReissuedBy is the decision that released a new extract after this one's broken delivery.
	ReissuedBy string
	// Request is the request the extract answers (patient as typed, reference, categories asked), so that a
	// list row says what it is; Requester is who filed it.
	Request   Request
	Requester User
	// DeliveryUnknown: claimed, but what was sent was never recorded (see deliveryUnknown); a re-issue needs
	// two officers, and ReissueSignedBy names the officer who signed first, if any.
	DeliveryUnknown bool
	ReissueSignedBy string
	// Reissuable says whether an officer may re-issue it (broken delivery, or invalidated by a restore).
	Reissuable bool
	// InvalidatedByRestore: the database was restored from a backup in which this extract was ready.
	InvalidatedByRestore bool
}

// extractViewRow is an extract row with its delivery columns and two columns of its request. Its fields are
// spelled out (not an embedded extractRow): gorm does not fill an embedded struct from a joined query.
type extractViewRow struct {
	ID               string
	RequestID        string
	DecisionID       string
	RetrieverKind    string
	RetrieverID      string
	Manifest         string `gorm:"->"` // the decision's: manifestColumn
	ManifestDigest   string
	CreatedAt        time.Time
	ExpiresAt        time.Time
	RetrievedAt      *time.Time
	RetrievedBy      *string
	RevokedAt        *time.Time
	RevokedBy        *string
	ExpiredAt        *time.Time
	DeliveredAt      *time.Time
	DeliverySHA256   *string `gorm:"column:delivery_sha256"`
	DeliveryBytes    *int64
	DeliveryComplete *bool
	ReissuedBy       *string
	Emergency        bool
	Purpose          string
	RequesterID      string
}

func (r extractViewRow) extractRow() extractRow {
	return extractRow{ID: r.ID, RequestID: r.RequestID, DecisionID: r.DecisionID, RetrieverKind: r.RetrieverKind,
		RetrieverID: r.RetrieverID, Manifest: r.Manifest, ManifestDigest: r.ManifestDigest, CreatedAt: r.CreatedAt,
		ExpiresAt: r.ExpiresAt, RetrievedAt: r.RetrievedAt, RetrievedBy: r.RetrievedBy, RevokedAt: r.RevokedAt,
		RevokedBy: r.RevokedBy, ExpiredAt: r.ExpiredAt, Emergency: r.Emergency}
}

func (r extractViewRow) view() (ExtractView, error) {
	x, err := r.extractRow().extract()
	if err != nil {
		return ExtractView{}, err
	}
	v := ExtractView{Extract: x, Purpose: Purpose(r.Purpose), RequesterID: r.RequesterID, DeliveredAt: utc(r.DeliveredAt),
		Reissuable: r.reissuable(), InvalidatedByRestore: r.RevokedBy != nil && *r.RevokedBy == RevokedByRestore}
	if r.DeliverySHA256 != nil {
		v.DeliverySHA256 = *r.DeliverySHA256
	}
	if r.DeliveryBytes != nil {
		v.DeliveryBytes = *r.DeliveryBytes
	}
	if r.DeliveryComplete != nil {
		v.DeliveryComplete = *r.DeliveryComplete
	}
	if r.ReissuedBy != nil {
		v.ReissuedBy = *r.ReissuedBy
	}
	v.DeliveryUnknown = deliveryUnknown(r)
	return v, nil
}

func (s *Service) extractViews(db *gorm.DB) *gorm.DB {
	return db.Table("extracts AS x").
		Select("x.*, " + manifestColumn("x") + ", r.purpose AS purpose, r.requester_id AS requester_id").
		Joins("JOIN approval_requests r ON r.id = x.request_id")
}

// ExtractsFor lists one page of the extracts a user may retrieve, newest first, with their total: a
// requester's own (released to the requester), or, for staff, every extract released to staff. Other roles
// get none.
func (s *Service) ExtractsFor(ctx context.Context, userID string, p store.Page) (store.Listed[ExtractView], error) {
	u, err := s.users.User(ctx, userID)
	if err != nil {
		return store.Listed[ExtractView]{}, fmt.Errorf("list extracts: %w", err)
	}
	q := s.extractViews(s.db.WithContext(ctx))
	switch u.Role {
	case RoleRequester:
		q = q.Where("x.retriever_kind = ? AND x.retriever_id = ?", ToRequester, userID)
	case RoleStaff:
		q = q.Where("x.retriever_kind = ?", ToStaff)
	default:
		return store.Listed[ExtractView]{}, nil
	}
	var rows []extractViewRow
	total, err := store.NewestFirst(q, "x.created_at", "x.id", p, &rows)
	if err != nil {
		return store.Listed[ExtractView]{}, fmt.Errorf("list extracts: %w", err)
	}
	views := make([]ExtractView, 0, len(rows))
	for _, r := range rows {
		v, err := s.fullView(ctx, r)
		if err != nil {
			return store.Listed[ExtractView]{}, err
		}
		views = append(views, v)
	}
	return store.PageOf(views, p, total, func(v ExtractView) store.Cursor { return store.Cursor{At: v.CreatedAt, ID: v.ID} }), nil
}

// fullView is an extract's view with its request and requester.
func (s *Service) fullView(ctx context.Context, r extractViewRow) (ExtractView, error) {
	v, err := r.view()
	if err != nil {
		return ExtractView{}, err
	}
	row, err := s.requestRow(ctx, s.db, r.RequestID)
	if err != nil {
		return ExtractView{}, err
	}
	if v.Request, err = s.toRequest(row); err != nil {
		return ExtractView{}, err
	}
	if v.Requester, err = s.users.User(ctx, r.RequesterID); err != nil {
		return ExtractView{}, fmt.Errorf("requester of %s: %w", r.ID, err)
	}
	return v, nil
}

// ExtractView returns one extract with its state, for an officer's page (ErrNotFound when unknown).
func (s *Service) ExtractView(ctx context.Context, officerID, extractID string) (ExtractView, error) {
	if _, err := s.officer(ctx, officerID); err != nil {
		return ExtractView{}, err
	}
	var r extractViewRow
	err := s.extractViews(s.db.WithContext(ctx)).Where("x.id = ?", extractID).Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return ExtractView{}, fmt.Errorf("extract %s: %w", extractID, ErrNotFound)
	}
	if err != nil {
		return ExtractView{}, err
	}
	v, err := s.fullView(ctx, r)
	if err != nil || !v.DeliveryUnknown || v.ReissuedBy != "" {
		return v, err
	}
	v.ReissueSignedBy, err = reissueSigner(s.db.WithContext(ctx), extractID)
	return v, err
}

// Now is the service's clock (pages compute an extract's state with it).
func (s *Service) Now() time.Time { return s.clock() }
