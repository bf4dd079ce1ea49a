package identity

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
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
	// Forget abandoned ceremonies now and then, so the table stays small; a failure here is harmless.
	db.Where("expires_at < ?", now.Add(-time.Hour)).Delete(&ceremonyRow{})
	if err := db.Create(&row).Error; err != nil {
		return nil, "", fmt.Errorf("store ceremony: %w", err)
	}
	return opts, row.ID, nil
}

// consumeCeremony takes a ceremony out of the table in one statement (DELETE ... RETURNING): of two
// concurrent finishes, one gets it and the other ErrCeremonyNotFound. An expired ceremony is consumed too.
func (s *Service) consumeCeremony(ctx context.Context, id, kind, listener string) (ceremonyRow, webauthn.SessionData, error) {
	var rows []ceremonyRow
	err := s.db.WithContext(ctx).Raw(`DELETE FROM ceremonies WHERE id = ? AND kind = ? AND listener = ?
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
