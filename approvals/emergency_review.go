package approvals

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

// Verdicts of a post-hoc review of an emergency release.
const (
	ReviewConfirmed = "confirmed"
	ReviewFlagged   = "flagged"
)

// ErrAlreadyReviewed is returned when an emergency release was already confirmed or flagged.
var ErrAlreadyReviewed = errors.New("this emergency release was already reviewed")

// ErrOwnRelease is returned when the officer who signed an emergency release tries to review it.
var ErrOwnRelease = errors.New("the post-hoc review of an emergency release must be made by another officer")

// EmergencyReview is one emergency release awaiting, or having had, its post-hoc review.
type EmergencyReview struct {
	DecisionID string
	RequestID  string
	ExtractID  string
	// OfficerID signed the release; the reviewer must be another person.
	OfficerID  string
	ReleasedAt time.Time
	DueAt      time.Time
	ReviewerID string
	// Verdict is ReviewConfirmed, ReviewFlagged or "" (awaiting).
	Verdict    string
	Reason     string
	ReviewedAt *time.Time
	// Overdue: not reviewed and past DueAt (at the time of reading).
	Overdue bool
}

type emergencyReviewRow struct {
	DecisionID   string `gorm:"primaryKey"`
	RequestID    string
	ExtractID    string
	OfficerID    string
	ReleasedAt   time.Time
	DueAt        time.Time
	ReviewerID   *string
	Verdict      *string
	ReasonSealed []byte
	ReviewedAt   *time.Time
	OverdueAt    *time.Time
}

func (emergencyReviewRow) TableName() string { return "emergency_reviews" }

// awaitEmergencyReview, inside CompleteDecision's transaction, enters an emergency release into the post-hoc
// review list with its deadline.
func (s *Service) awaitEmergencyReview(tx *gorm.DB, prep decisionRow, extractID string, now time.Time) error {
	due := now.Add(s.policy.EmergencyReviewWithin)
	if err := tx.Create(&emergencyReviewRow{DecisionID: prep.ID, RequestID: prep.RequestID, ExtractID: extractID,
		OfficerID: prep.OfficerID, ReleasedAt: now, DueAt: due}).Error; err != nil {
		return fmt.Errorf("emergency review of %s: %w", prep.ID, err)
	}
	return audit.Append(tx, audit.Event{At: now, Actor: "system", Action: "emergency.review_due",
		Subject: "request:" + prep.RequestID, Details: map[string]any{"decision": prep.ID, "extract": extractID,
			"due": due.Format(TimeFormat)}})
}

// EmergencyReviews lists one page of the emergency releases, newest first, those awaiting review and those
// reviewed, with their total. Listing is not audited: it shows ids and dates, no patient data.
func (s *Service) EmergencyReviews(ctx context.Context, officerID string, p store.Page) (store.Listed[EmergencyReview], error) {
	if _, err := s.officer(ctx, officerID); err != nil {
		return store.Listed[EmergencyReview]{}, err
	}
	var rows []emergencyReviewRow
	total, err := store.NewestFirst(s.db.WithContext(ctx).Model(&emergencyReviewRow{}), "released_at", "decision_id", p, &rows)
	if err != nil {
		return store.Listed[EmergencyReview]{}, fmt.Errorf("emergency reviews: %w", err)
	}
	now := s.clock()
	out := make([]EmergencyReview, 0, len(rows))
	for _, r := range rows {
		v, err := s.emergencyReview(r, now)
		if err != nil {
			return store.Listed[EmergencyReview]{}, err
		}
		out = append(out, v)
	}
	return store.PageOf(out, p, total, func(v EmergencyReview) store.Cursor {
		return store.Cursor{At: v.ReleasedAt, ID: v.DecisionID}
	}), nil
}

func (s *Service) emergencyReview(r emergencyReviewRow, now time.Time) (EmergencyReview, error) {
	v := EmergencyReview{DecisionID: r.DecisionID, RequestID: r.RequestID, ExtractID: r.ExtractID, OfficerID: r.OfficerID,
		ReleasedAt: r.ReleasedAt.UTC(), DueAt: r.DueAt.UTC(), ReviewedAt: utc(r.ReviewedAt)}
	if r.ReviewerID != nil {
		v.ReviewerID = *r.ReviewerID
	}
	if r.Verdict != nil {
		v.Verdict = *r.Verdict
	}
	if len(r.ReasonSealed) > 0 {
		reason, err := s.sealer.open("emergency_reviews", "reason", r.DecisionID, r.ReasonSealed)
		if err != nil {
			return EmergencyReview{}, err
		}
		v.Reason = string(reason)
	}
	v.Overdue = v.ReviewedAt == nil && !v.DueAt.After(now)
	return v, nil
}

// OverdueEmergencyReviews counts the emergency releases not reviewed by their deadline, for every officer's
// home page. It reads the deadline, not the job's mark: an overdue review shows before the job has run.
func (s *Service) OverdueEmergencyReviews(ctx context.Context) (int, error) {
	var n int64
	if err := s.db.WithContext(ctx).Model(&emergencyReviewRow{}).Where("reviewed_at IS NULL AND due_at <= ?", s.clock()).
		Count(&n).Error; err != nil {
		return 0, fmt.Errorf("overdue emergency reviews: %w", err)
	}
	return int(n), nil
}

// ReviewEmergency records an officer's post-hoc review of an emergency release: confirmed, or flagged with a
// reason (sealed: a free text may hold what it should not). The reviewer must be another person than the
// officer who signed the release. One atomic UPDATE with its audit row: a release is reviewed once.
func (s *Service) ReviewEmergency(ctx context.Context, officerID, decisionID, verdict, reason string) error {
	off, err := s.officer(ctx, officerID)
	if err != nil {
		return err
	}
	reason = normalizeText(reason)
	switch verdict {
	case ReviewConfirmed:
	case ReviewFlagged:
		if reason == "" {
			return ErrReasonRequired
		}
	default:
		return fmt.Errorf("%w: review verdict %q", ErrBadInput, verdict)
	}
	if !cleanText(reason) {
		return ErrControlChars
	}
	if utf8.RuneCountInString(reason) > MaxReasonLen {
		return fmt.Errorf("%w: reason longer than %d characters", ErrBadInput, MaxReasonLen)
	}
	var row emergencyReviewRow
	err = s.db.WithContext(ctx).Where("decision_id = ?", decisionID).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return fmt.Errorf("emergency review %s: %w", decisionID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("emergency review %s: %w", decisionID, err)
	}
	signer, err := s.users.User(ctx, row.OfficerID)
	if err != nil {
		return fmt.Errorf("signer of %s: %w", decisionID, err)
	}
	if signer.person() == off.person() {
		return ErrOwnRelease
	}
	now := s.clock()
	return store.Tx(ctx, s.db, func(tx *gorm.DB) error {
		res := tx.Model(&emergencyReviewRow{}).Where("decision_id = ? AND reviewed_at IS NULL", decisionID).
			Updates(map[string]any{"reviewer_id": officerID, "verdict": verdict, "reviewed_at": now,
				"reason_sealed": s.sealOptional("emergency_reviews", "reason", decisionID, reason)})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected != 1 {
			return ErrAlreadyReviewed
		}
		return audit.Append(tx, audit.Event{At: now, Actor: "user:" + officerID, Action: "emergency." + verdict,
			Subject: "request:" + row.RequestID, Details: map[string]any{"decision": decisionID,
				"overdue": !row.DueAt.After(now)}})
	})
}

// RunOverdueReviews marks, once, every emergency release whose post-hoc review deadline passed unreviewed:
// overdue_at, an audit row and an urgent alert each, under the job lock (one instance does it). It returns how
// many it marked.
func (s *Service) RunOverdueReviews(ctx context.Context, now time.Time) (int, error) {
	now = now.UTC().Truncate(time.Microsecond)
	n := 0
	err := store.Tx(ctx, s.db, func(tx *gorm.DB) error {
		n = 0
		if ok, err := lockJob(tx); err != nil || !ok {
			return err
		}
		var rows []emergencyReviewRow
		if err := tx.Where("reviewed_at IS NULL AND overdue_at IS NULL AND due_at <= ?", now).Order("due_at").
			Find(&rows).Error; err != nil {
			return err
		}
		for _, r := range rows {
			res := tx.Model(&emergencyReviewRow{}).Where("decision_id = ? AND reviewed_at IS NULL AND overdue_at IS NULL", r.DecisionID).
				Update("overdue_at", now)
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected != 1 {
				continue
			}
			if err := audit.Append(tx, audit.Event{At: now, Actor: "system", Action: "emergency.review_overdue",
				Subject: "request:" + r.RequestID, Details: map[string]any{"decision": r.DecisionID,
					"due": r.DueAt.UTC().Format(TimeFormat)}}); err != nil {
				return err
			}
			if err := writeAlert(tx, AlertReviewOverdue, string(Urgent), "decision:"+r.DecisionID, now); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("overdue emergency reviews: %w", err)
	}
	return n, nil
}
