package approvals

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// Alert is a message for the hospital's own alerting (local syslog, an internal webhook): ids, a count and an
// urgency, never patient data. Kinds: AlertFiled (a request entered the queue) and AlertReviewOverdue (an
// emergency release waits past its post-hoc review deadline).
type Alert struct {
	ID   string
	Kind string
	// Urgency is "emergency", "urgent" or "routine".
	Urgency string
	// Subject is what the alert is about: "request:<id>" or "decision:<id>".
	Subject string
	// QueueCount is how many requests filed by the time the alert was written wait for an officer when it is
	// handed out to be sent (ClaimAlerts): counted then, not in the transaction that writes the alert.
	QueueCount int
	CreatedAt  time.Time
}

// Alert kinds.
const (
	AlertFiled         = "request.filed"
	AlertReviewOverdue = "emergency.review_overdue"
)

// UrgencyEmergency is an alert's urgency for an emergency request (above Urgent).
const UrgencyEmergency = "emergency"

// alertRow is an alert in the outbox: written in the transaction of what it announces (so an alert exists
// exactly when its event committed), sent afterwards by one instance at a time.
type alertRow struct {
	ID           string
	Kind         string
	Urgency      string
	Subject      string
	QueueCount   int
	CreatedAt    time.Time
	ClaimedUntil *time.Time
	SentAt       *time.Time
}

func (alertRow) TableName() string { return "alerts" }

// filedAlert is the alert that a request entered the queue, written in the filing's transaction.
func filedAlert(r requestRow, now time.Time) alertRow {
	urgency := r.Urgency
	if r.Emergency {
		urgency = UrgencyEmergency
	}
	return alertRow{ID: newID(), Kind: AlertFiled, Urgency: urgency, Subject: "request:" + r.ID, CreatedAt: now}
}

// insertAlert inserts an alert (id, kind, urgency, subject, created_at); its queue count is left to
// ClaimAlerts. Counting the waiting requests here made every filing scan the whole queue, inside its
// transaction (issue 15: with a few thousand requests waiting, half a filing's database time); the sender
// counts once per alert, outside any filing. selectFrom, when not empty, makes it insert the alert once per
// row of that FROM item instead of once.
func insertAlert(selectFrom string) string {
	return "INSERT INTO alerts (id, kind, urgency, subject, queue_count, created_at) SELECT ?, ?, ?, ?, 0, ?" + selectFrom
}

func (a alertRow) args() []any { return []any{a.ID, a.Kind, a.Urgency, a.Subject, a.CreatedAt} }

// writeAlert inserts an alert in the transaction of what it announces.
func writeAlert(tx *gorm.DB, kind, urgency, subject string, now time.Time) error {
	a := alertRow{ID: newID(), Kind: kind, Urgency: urgency, Subject: subject, CreatedAt: now}
	return tx.Exec(insertAlert(""), a.args()...).Error
}

// alertBatch bounds the alerts one claim hands out.
const alertBatch = 50

// ClaimAlerts hands out the alerts not yet sent, oldest first, claimed for lease by one atomic UPDATE (so that
// several instances do not send one alert twice while the lease runs; an alert another instance claimed
// between the read and the UPDATE is not in what it returns). An alert whose sender died before AlertSent is
// handed out again once its lease ends: alerts are delivered at least once. Two statements a batch, where
// each alert was claimed by an UPDATE of its own (and each such commit waits for the disk): on SQLite, with
// its one writer, a batch of 50 made 50 commits a second beside the requests' own (issue 15).
func (s *Service) ClaimAlerts(ctx context.Context, lease time.Duration) ([]Alert, error) {
	now := s.clock()
	var rows []alertRow
	if err := s.db.WithContext(ctx).Where("sent_at IS NULL AND (claimed_until IS NULL OR claimed_until <= ?)", now).
		Order("created_at, id").Limit(alertBatch).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("claim alerts: %w", err)
	}
	if len(rows) == 0 {
		return nil, nil
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	// The claim also counts, for each alert, the queue it reports: the requests filed by the time it was
	// written that still wait for an officer.
	var claimed []struct {
		ID         string
		QueueCount int
	}
	if err := s.db.WithContext(ctx).Raw(`UPDATE alerts SET claimed_until = ?,
			queue_count = (SELECT COUNT(*) FROM approval_requests WHERE status IN ? AND filed_at <= alerts.created_at)
		WHERE id IN ? AND sent_at IS NULL AND (claimed_until IS NULL OR claimed_until <= ?) RETURNING id, queue_count`,
		now.Add(lease), []Status{StatusPending, StatusAwaitingSecond}, ids, now).Scan(&claimed).Error; err != nil {
		return nil, fmt.Errorf("claim alerts: %w", err)
	}
	counts := make(map[string]int, len(claimed))
	for _, c := range claimed {
		counts[c.ID] = c.QueueCount
	}
	out := make([]Alert, 0, len(claimed))
	for _, r := range rows { // the read's order: oldest first
		if n, ok := counts[r.ID]; ok {
			out = append(out, Alert{ID: r.ID, Kind: r.Kind, Urgency: r.Urgency, Subject: r.Subject,
				QueueCount: n, CreatedAt: r.CreatedAt.UTC()})
		}
	}
	return out, nil
}

// AlertSent records that claimed alerts reached every configured destination: one UPDATE for them all.
func (s *Service) AlertSent(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	if err := s.db.WithContext(ctx).Model(&alertRow{}).Where("id IN ? AND sent_at IS NULL", ids).
		Update("sent_at", s.clock()).Error; err != nil {
		return fmt.Errorf("%d alerts sent: %w", len(ids), err)
	}
	return nil
}
