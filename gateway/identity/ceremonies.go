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
	// Written without waiting for the WAL flush (store.NoFlushWaitJoin's rule): a ceremony lost in a crash is
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
// The delete does not wait for the WAL flush (store.NoFlushWaitJoin's rule). A crash can bring the ceremony back
// only if nothing durable was committed after it: not the session, decision or registration its finish wrote
// (any of those, committed synchronously or not, comes after it in the WAL), nor any audited action since. What
// comes back is a ceremony whose finish left no trace, as if the user had not finished it yet.
func (s *Service) consumeCeremony(ctx context.Context, id, kind, listener string) (ceremonyRow, webauthn.SessionData, error) {
	var rows []ceremonyRow
	db := s.db.WithContext(ctx)
	err := db.Raw(`DELETE FROM ceremonies`+store.NoFlushWaitJoin(db, "USING")+` WHERE id = ? AND kind = ? AND listener = ?
		RETURNING id, kind, listener, user_id, invitation_id, session_data, created_at, expires_at`, id, kind, listener).
		Scan(&rows).Error
	if err != nil {
		return ceremonyRow{}, webauthn.SessionData{}, fmt.Errorf("consume ceremony: %w", err)
	}
	return s.consumed(rows)
}

// consumed checks what a consuming DELETE returned: one ceremony, not expired, its state decodable.
func (s *Service) consumed(rows []ceremonyRow) (ceremonyRow, webauthn.SessionData, error) {
	var sd webauthn.SessionData
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

// signInRead is a sign-in's ceremony state, consumed, and what waUserByHandle gives for the user its
// assertion's handle names (the user and their active passkeys, or lookupErr: ErrNotFound), for the
// verification's lookup.
type signInRead struct {
	sd        webauthn.SessionData
	user      waUser
	lookupErr error
}

// ceremonyUserRow is a consumed ceremony beside the user a handle names and one of their active passkeys.
type ceremonyUserRow struct {
	Ceremony   ceremonyRow `gorm:"embedded;embeddedPrefix:k_"`
	User       `gorm:"embedded"`
	Credential Credential `gorm:"embedded;embeddedPrefix:c_"`
}

// consumeSignIn is consumeCeremony for a sign-in, with the read of the user the assertion's user handle names
// (waUserByHandle). On PostgreSQL both are one statement, the DELETE's RETURNING joined to the user and their
// passkeys: one round trip fewer per sign-in. SQLite's WITH cannot hold a DELETE: there they are two.
func (s *Service) consumeSignIn(ctx context.Context, id, listener string, handle []byte) (signInRead, error) {
	db := s.db.WithContext(ctx)
	if store.DialectOf(db) != store.Postgres {
		_, sd, err := s.consumeCeremony(ctx, id, kindSignIn, listener)
		if err != nil {
			return signInRead{}, err
		}
		w, err := s.waUserByHandle(db, handle)
		return signInRead{sd: sd, user: w, lookupErr: err}, nil
	}
	var rows []ceremonyUserRow
	err := db.Raw(`WITH k AS (DELETE FROM ceremonies`+store.NoFlushWaitJoin(db, "USING")+` WHERE id = ? AND kind = ? AND listener = ?
			RETURNING id, kind, listener, user_id, invitation_id, session_data, created_at, expires_at)
		SELECT k.id AS k_id, k.kind AS k_kind, k.listener AS k_listener, k.user_id AS k_user_id,
			k.invitation_id AS k_invitation_id, k.session_data AS k_session_data, k.created_at AS k_created_at,
			k.expires_at AS k_expires_at, u.*, `+credentialColumns+`
		FROM k LEFT JOIN users u ON u.webauthn_id = ? LEFT JOIN credentials c ON c.user_id = u.id AND c.revoked_at IS NULL
		ORDER BY c.created_at`, id, kindSignIn, listener, handle).Scan(&rows).Error
	if err != nil {
		return signInRead{}, fmt.Errorf("consume ceremony: %w", err)
	}
	ceremonies := make([]ceremonyRow, 0, 1)
	users := make([]userCredentialRow, 0, len(rows))
	for i, r := range rows {
		if i == 0 {
			ceremonies = append(ceremonies, r.Ceremony)
		}
		if r.User.ID != "" {
			users = append(users, userCredentialRow{User: r.User, Credential: r.Credential})
		}
	}
	_, sd, err := s.consumed(ceremonies)
	if err != nil {
		return signInRead{}, err
	}
	w, err := waUserOf(users)
	return signInRead{sd: sd, user: w, lookupErr: err}, nil
}
