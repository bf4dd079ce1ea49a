package identity

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

// sessionRow is a signed-in browser. Only the hash of its token is stored: the database holds nothing a
// thief could put in a cookie.
type sessionRow struct {
	ID           string
	TokenHash    string
	UserID       string
	CredentialID string
	Listener     string
	CreatedAt    time.Time
	LastSeenAt   time.Time
	ExpiresAt    time.Time
	EndedAt      *time.Time
}

func (sessionRow) TableName() string { return "sessions" }

// Session is a valid session and its user.
type Session struct {
	ID           string
	Listener     string
	CredentialID string
	CreatedAt    time.Time
	ExpiresAt    time.Time
	User         User
}

// NewSession is a session just opened: Token goes into the cookie, never into the database.
type NewSession struct {
	Session
	Token string
}

// startSession inserts a session inside the caller's transaction (sign-in and registration).
func (s *Service) startSession(tx *gorm.DB, u User, credentialID, listener string, now time.Time) (NewSession, error) {
	token := newToken()
	row := sessionRow{ID: newID(), TokenHash: hashToken(token), UserID: u.ID, CredentialID: credentialID, Listener: listener,
		CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(s.cfg.SessionMax)}
	if err := tx.Create(&row).Error; err != nil {
		return NewSession{}, fmt.Errorf("start session: %w", err)
	}
	return NewSession{Token: token, Session: Session{ID: row.ID, Listener: listener, CredentialID: credentialID,
		CreatedAt: now, ExpiresAt: row.ExpiresAt, User: u}}, nil
}

// Authenticate returns the session a cookie token stands for on a listener, and marks it seen. It refuses
// (ErrNoSession) a token that is unknown, ended, idle too long, past its absolute lifetime, from the other
// listener, or whose user is suspended or credential revoked.
func (s *Service) Authenticate(ctx context.Context, listener, token string) (Session, error) {
	if token == "" {
		return Session{}, ErrNoSession
	}
	now := s.now().UTC()
	var row sessionRow
	db := s.db.WithContext(ctx)
	err := db.Where("token_hash = ? AND listener = ? AND ended_at IS NULL", hashToken(token), listener).Take(&row).Error
	if err == gorm.ErrRecordNotFound {
		return Session{}, ErrNoSession
	}
	if err != nil {
		return Session{}, fmt.Errorf("read session: %w", err)
	}
	if !now.Before(row.ExpiresAt) || now.Sub(row.LastSeenAt) >= s.IdleTimeout(listener) {
		// Ended with its audit row, like every change; the session is refused whether or not that commits.
		store.Tx(ctx, s.db, func(tx *gorm.DB) error {
			res := tx.Model(&sessionRow{}).Where("id = ? AND ended_at IS NULL", row.ID).Update("ended_at", now)
			if res.Error != nil || res.RowsAffected != 1 {
				return res.Error
			}
			return audit.Append(tx, audit.Event{At: now, Actor: "system", Action: "session.expired",
				Subject: "session:" + row.ID, Details: map[string]any{"listener": listener}})
		})
		return Session{}, ErrNoSession
	}
	// The user, active, and the session's passkey, not revoked, in one statement: either missing ends it here.
	var u User
	err = db.Where("id = ? AND status = ? AND EXISTS (SELECT 1 FROM credentials WHERE id = ? AND revoked_at IS NULL)",
		row.UserID, StatusActive, row.CredentialID).Take(&u).Error
	if err == gorm.ErrRecordNotFound {
		return Session{}, ErrNoSession
	}
	if err != nil {
		return Session{}, fmt.Errorf("read session user: %w", err)
	}
	// Last seen is written at most once per touchEvery: a page's many requests cost one write, not one each. The
	// session may so end up to that much before its idle timeout, never after it.
	if now.Sub(row.LastSeenAt) >= s.touchEvery(listener) {
		if err := db.Model(&sessionRow{}).Where("id = ?", row.ID).Update("last_seen_at", now).Error; err != nil {
			return Session{}, fmt.Errorf("touch session: %w", err)
		}
	}
	return Session{ID: row.ID, Listener: row.Listener, CredentialID: row.CredentialID, CreatedAt: row.CreatedAt,
		ExpiresAt: row.ExpiresAt, User: u}, nil
}

// touchEvery is how stale a session's last-seen time may be: a minute, or a tenth of the idle timeout when
// that is shorter.
func (s *Service) touchEvery(listener string) time.Duration {
	return min(time.Minute, s.IdleTimeout(listener)/10)
}

// SignOut ends a session on the server: its cookie is worthless afterwards.
func (s *Service) SignOut(ctx context.Context, sessionID string) error {
	now := s.now().UTC()
	return store.Tx(ctx, s.db, func(tx *gorm.DB) error {
		var row sessionRow
		if err := tx.Where("id = ? AND ended_at IS NULL", sessionID).Take(&row).Error; err != nil {
			if err == gorm.ErrRecordNotFound {
				return ErrNoSession
			}
			return fmt.Errorf("sign out: %w", err)
		}
		if err := tx.Model(&sessionRow{}).Where("id = ?", sessionID).Update("ended_at", now).Error; err != nil {
			return fmt.Errorf("sign out: %w", err)
		}
		return audit.Append(tx, audit.Event{At: now, Actor: "user:" + row.UserID, Action: "session.signed_out",
			Subject: "session:" + row.ID, Details: map[string]any{"listener": row.Listener}})
	})
}
