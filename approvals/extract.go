package approvals

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

// ExtractState is read from an extract's columns, never stored.
type ExtractState string

const (
	ExtractReady     ExtractState = "ready"
	ExtractRetrieved ExtractState = "retrieved"
	ExtractExpired   ExtractState = "expired"
	ExtractRevoked   ExtractState = "revoked"
)

// Extract is a released, not yet produced, extract: what the signed manifest names, for whom, until when.
type Extract struct {
	ID             string
	RequestID      string
	DecisionID     string
	Retriever      RetrieverField
	Entries        []ManifestEntry // without displays
	ManifestDigest string
	CreatedAt      time.Time
	ExpiresAt      time.Time
	RetrievedAt    *time.Time
	RetrievedBy    string
	RevokedAt      *time.Time
	// Emergency is an extract released under the emergency rules: rendered as an IPS-shaped document.
	Emergency bool
	// claimer is the user whose claim returned this extract (ClaimExtract read them to check the claim), so
	// that DeliveryOf need not read them again.
	claimer *User
	// request is what DeliveryOf needs of the extract's request, read by the claim's own statement.
	request *claimedRequest
}

// claimedRow is what the claim's statement returns: the extract, and what rendering needs of its request.
type claimedRow struct {
	Extract extractRow     `gorm:"embedded"`
	Request claimedRequest `gorm:"embedded"`
}

func (claimedRow) TableName() string { return "extracts" }

// claimedRequest is the part of an extract's request that rendering it needs (the patient, still sealed; the
// purpose; who filed it), read by the claim's UPDATE … RETURNING in the same round trip.
type claimedRequest struct {
	RequesterID   string `gorm:"column:request_requester_id"`
	PatientSealed []byte `gorm:"column:request_patient_sealed"`
	Purpose       string `gorm:"column:request_purpose"`
}

// State says where the extract is at time now.
func (x Extract) State(now time.Time) ExtractState {
	switch {
	case x.RetrievedAt != nil:
		return ExtractRetrieved
	case x.RevokedAt != nil:
		return ExtractRevoked
	case !x.ExpiresAt.After(now):
		return ExtractExpired
	}
	return ExtractReady
}

type extractRow struct {
	ID             string
	RequestID      string
	DecisionID     string
	RetrieverKind  string
	RetrieverID    string
	Manifest       string
	ManifestDigest string
	CreatedAt      time.Time
	ExpiresAt      time.Time
	RetrievedAt    *time.Time
	RetrievedBy    *string
	RevokedAt      *time.Time
	RevokedBy      *string
	ExpiredAt      *time.Time
	Emergency      bool
}

func (extractRow) TableName() string { return "extracts" }

func (r extractRow) extract() (Extract, error) {
	x := Extract{ID: r.ID, RequestID: r.RequestID, DecisionID: r.DecisionID,
		Retriever:      RetrieverField{Kind: RetrieverKind(r.RetrieverKind), UserID: r.RetrieverID},
		ManifestDigest: r.ManifestDigest, CreatedAt: r.CreatedAt.UTC(), ExpiresAt: r.ExpiresAt.UTC(),
		RetrievedAt: utc(r.RetrievedAt), RevokedAt: utc(r.RevokedAt), Emergency: r.Emergency}
	if r.RetrievedBy != nil {
		x.RetrievedBy = *r.RetrievedBy
	}
	// JSON v2's decoder: a third of encoding/json's CPU for a manifest (150 entries: 85 µs against 255 µs),
	// and a claim decodes it inside its transaction, holding SQLite's single write lock. The stored manifest is
	// encoding/json's output from the same struct (names exact, valid UTF-8, no duplicates), which v2's
	// stricter defaults accept unchanged.
	if err := jsonv2.Unmarshal([]byte(r.Manifest), &x.Entries); err != nil {
		return Extract{}, fmt.Errorf("extract %s: manifest: %w", r.ID, err)
	}
	return x, nil
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// ExtractOf returns the latest extract of a request (ErrNotFound when there is none; a re-issue adds one).
// It checks no ownership: intake callers first read the request with MyRequest.
func (s *Service) ExtractOf(ctx context.Context, requestID string) (Extract, error) {
	var r extractRow
	err := s.db.WithContext(ctx).Where("request_id = ?", requestID).Order("created_at DESC").Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return Extract{}, fmt.Errorf("extract of %s: %w", requestID, ErrNotFound)
	}
	if err != nil {
		return Extract{}, err
	}
	return r.extract()
}

// ClaimExtract takes an extract for retrieval by userID, once. The claim is one statement — set retrieved_at
// where it is still unset, not revoked, not expired and released to this user — that changes exactly one row
// or none, in one transaction with its audit row. Only after a failed claim is the row read, to tell why:
// ErrNotFound, ErrRevoked, ErrAlreadyRetrieved, ErrExpired or ErrNotRetriever; the refusal is audited too,
// since a refused retrieval is a sign that someone else tried.
func (s *Service) ClaimExtract(ctx context.Context, extractID, userID string) (Extract, error) {
	u, err := s.users.User(ctx, userID)
	if err != nil {
		return Extract{}, fmt.Errorf("claim extract: %w", err)
	}
	now := s.clock()
	var (
		claimed Extract
		refused error
	)
	err = store.Tx(ctx, s.db, func(tx *gorm.DB) error {
		refused = nil
		q := "UPDATE extracts SET retrieved_at = ?, retrieved_by = ? WHERE id = ? AND retrieved_at IS NULL AND revoked_at IS NULL AND expires_at > ?"
		args := []any{now, userID, extractID, now}
		switch {
		case !u.Active:
			q += " AND 1 = 0"
		case u.Role == RoleStaff:
			q += " AND retriever_kind = 'staff'"
		case u.Role == RoleRequester:
			q += " AND retriever_kind = 'requester' AND retriever_id = ?"
			args = append(args, userID)
		default:
			q += " AND 1 = 0"
		}
		// RETURNING (both databases have it, subqueries included) gives the claimed row and what rendering needs
		// of its request without a second round trip.
		var row claimedRow
		res := tx.Raw(q+` RETURNING *,
			(SELECT requester_id FROM approval_requests WHERE id = extracts.request_id) AS request_requester_id,
			(SELECT patient_sealed FROM approval_requests WHERE id = extracts.request_id) AS request_patient_sealed,
			(SELECT purpose FROM approval_requests WHERE id = extracts.request_id) AS request_purpose`, args...).Scan(&row)
		if res.Error != nil {
			return fmt.Errorf("claim extract: %w", res.Error)
		}
		if res.RowsAffected == 1 {
			var err error
			if claimed, err = row.Extract.extract(); err != nil {
				return err
			}
			claimed.claimer, claimed.request = &u, &row.Request
			return audit.Append(tx, audit.Event{At: now, Actor: "user:" + userID, Action: "extract.retrieved",
				Subject: "extract:" + extractID, Details: map[string]any{"request": row.Extract.RequestID, "entries": len(claimed.Entries)}})
		}
		err := tx.Where("id = ?", extractID).Take(&row.Extract).Error
		switch {
		case errors.Is(err, gorm.ErrRecordNotFound):
			refused = ErrNotFound
		case err != nil:
			return err
		case !isRetriever(u, row.Extract):
			// Anyone else learns nothing of the extract's state: the caller answers as for an unknown id.
			refused = ErrNotRetriever
		case row.Extract.RevokedAt != nil:
			refused = ErrRevoked
		case row.Extract.RetrievedAt != nil:
			refused = ErrAlreadyRetrieved
		case !row.Extract.ExpiresAt.After(now):
			refused = ErrExpired
		default:
			refused = ErrNotRetriever
		}
		return audit.Append(tx, audit.Event{At: now, Actor: "user:" + userID, Action: "extract.refused",
			Subject: "extract:" + extractID, Details: map[string]any{"reason": refusalCode(refused)}})
	})
	if err != nil {
		return Extract{}, err
	}
	if refused != nil {
		return Extract{}, fmt.Errorf("extract %s: %w", extractID, refused)
	}
	return claimed, nil
}

// isRetriever says whether u is who the extract is released to: the named requester, or any staff member.
func isRetriever(u User, row extractRow) bool {
	switch {
	case !u.Active:
		return false
	case u.Role == RoleStaff:
		return row.RetrieverKind == string(ToStaff)
	case u.Role == RoleRequester:
		return row.RetrieverKind == string(ToRequester) && row.RetrieverID == u.ID
	}
	return false
}

func refusalCode(err error) string {
	switch err {
	case ErrNotFound:
		return "not_found"
	case ErrRevoked:
		return "revoked"
	case ErrAlreadyRetrieved:
		return "already_retrieved"
	case ErrExpired:
		return "expired"
	}
	return "not_retriever"
}

// RevokeExtract withdraws an extract not yet retrieved, unsigned. The console revokes with a signature
// (PrepareRevocation, CompleteRevocation); this stays for tools and tests that need a revoked extract.
func (s *Service) RevokeExtract(ctx context.Context, officerID, extractID string) error {
	if _, err := s.officer(ctx, officerID); err != nil {
		return err
	}
	now := s.clock()
	return store.Tx(ctx, s.db, func(tx *gorm.DB) error {
		res := tx.Exec("UPDATE extracts SET revoked_at = ?, revoked_by = ? WHERE id = ? AND retrieved_at IS NULL AND revoked_at IS NULL",
			now, officerID, extractID)
		if res.Error != nil {
			return fmt.Errorf("revoke extract: %w", res.Error)
		}
		if res.RowsAffected != 1 {
			var row extractRow
			if err := tx.Where("id = ?", extractID).Take(&row).Error; errors.Is(err, gorm.ErrRecordNotFound) {
				return fmt.Errorf("extract %s: %w", extractID, ErrNotFound)
			} else if err != nil {
				return err
			}
			if row.RetrievedAt != nil {
				return fmt.Errorf("extract %s: %w", extractID, ErrAlreadyRetrieved)
			}
			return fmt.Errorf("extract %s: %w", extractID, ErrRevoked)
		}
		return audit.Append(tx, audit.Event{At: now, Actor: "user:" + officerID, Action: "extract.revoked",
			Subject: "extract:" + extractID})
	})
}

// entries returns the manifest's entries (nil when the stored JSON does not parse, which extract() reports).
func (r extractRow) entries() []ManifestEntry {
	var es []ManifestEntry
	_ = json.Unmarshal([]byte(r.Manifest), &es)
	return es
}
