package identity

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"gorm.io/gorm"

	"gatewayd/gateway/store"
)

// Ceremony kinds.
const (
	kindRegister = "register"
	kindSignIn   = "signin"
	kindSign     = "sign"
)

// ceremonyRow holds the library's SessionData, whole, between a begin and its finish.
type ceremonyRow struct {
	ID           string
	Kind         string
	Listener     string
	UserID       string
	InvitationID string
	SessionData  string
	CreatedAt    time.Time
	ExpiresAt    time.Time
}

func (ceremonyRow) TableName() string { return "ceremonies" }

// startCeremony stores a ceremony's state (the library's SessionData, whole) and returns the options for the
// browser, encoded, with the ceremony's id.
func (s *Service) startCeremony(ctx context.Context, kind, listener, userID, invitationID string, sd *webauthn.SessionData, options any) (json.RawMessage, string, error) {
	opts, err := json.Marshal(options)
	if err != nil {
		return nil, "", fmt.Errorf("encode options: %w", err)
	}
	raw, err := json.Marshal(sd)
	if err != nil {
		return nil, "", fmt.Errorf("encode ceremony: %w", err)
	}
	now := s.now().UTC()
	row := ceremonyRow{ID: newToken(), Kind: kind, Listener: listener, UserID: userID, InvitationID: invitationID,
		SessionData: string(raw), CreatedAt: now, ExpiresAt: now.Add(s.cfg.CeremonyTTL)}
	db := s.db.WithContext(ctx)
	s.sweepCeremonies(db, now)
	// Written without waiting for the WAL flush (store.NoFlushWait's rule): a ceremony lost in a crash is
	// harmless, its finish fails and the user starts again; and nothing durable can rest on it.
	if err := db.Exec(`INSERT INTO ceremonies (id, kind, listener, user_id, invitation_id, session_data, created_at, expires_at)
		SELECT ?, ?, ?, ?, ?, ?, ?, ?`+store.NoFlushWaitJoin(db, "FROM"), row.ID, row.Kind, row.Listener, row.UserID,
		row.InvitationID, row.SessionData, row.CreatedAt, row.ExpiresAt).Error; err != nil {
		return nil, "", fmt.Errorf("store ceremony: %w", err)
	}
	return opts, row.ID, nil
}

// sweepEvery is how often a process forgets abandoned ceremonies: not on every begin, where it was one more
// round trip each time.
const sweepEvery = time.Minute

// sweepCeremonies forgets ceremonies abandoned over an hour ago, at most once per sweepEvery, so that the
// table stays small; a failure here is harmless (the next sweep does it).
func (s *Service) sweepCeremonies(db *gorm.DB, now time.Time) {
	last := s.lastSweep.Load()
	if now.UnixNano()-last < int64(sweepEvery) || !s.lastSweep.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	db.Where("expires_at < ?", now.Add(-time.Hour)).Delete(&ceremonyRow{})
}

// consumeCeremony takes a ceremony out of the table in one statement (DELETE ... RETURNING): of two
// concurrent finishes, one gets it and the other ErrCeremonyNotFound. An expired ceremony is consumed too.
//
// The delete does not wait for the WAL flush (store.NoFlushWait's rule). A crash can bring the ceremony back
// only if nothing durable was committed after it: not the session, decision or registration its finish wrote
// (any of those, committed synchronously or not, comes after it in the WAL), nor any audited action since. What
// comes back is a ceremony whose finish left no trace, as if the user had not finished it yet.
func (s *Service) consumeCeremony(ctx context.Context, id, kind, listener string) (ceremonyRow, webauthn.SessionData, error) {
	var rows []ceremonyRow
	db := s.db.WithContext(ctx)
	err := db.Raw(`DELETE FROM ceremonies`+store.NoFlushWaitJoin(db, "USING")+` WHERE id = ? AND kind = ? AND listener = ?
		RETURNING id, kind, listener, user_id, invitation_id, session_data, created_at, expires_at`, id, kind, listener).
		Scan(&rows).Error
	var sd webauthn.SessionData
	if err != nil {
		return ceremonyRow{}, sd, fmt.Errorf("consume ceremony: %w", err)
	}
	if len(rows) != 1 {
		return ceremonyRow{}, sd, ErrCeremonyNotFound
	}
	row := rows[0]
	if !s.now().Before(row.ExpiresAt) {
		return row, sd, ErrCeremonyExpired
	}
	if err := json.Unmarshal([]byte(row.SessionData), &sd); err != nil {
		return row, sd, fmt.Errorf("decode ceremony: %w", err)
	}
	return row, sd, nil
}
