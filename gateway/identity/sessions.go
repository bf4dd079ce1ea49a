package identity

import (
	"context"
	"database/sql"
	"errors"
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

// startSession inserts a session inside the caller's transaction (registration).
func (s *Service) startSession(tx *gorm.DB, u User, credentialID, listener string, now time.Time) (NewSession, error) {
	ns, row := s.newSession(u, credentialID, listener, now)
	if err := tx.Create(&row).Error; err != nil {
		return NewSession{}, fmt.Errorf("start session: %w", err)
	}
	return ns, nil
}

// newSession makes a new session and the row that stores it (the token's hash, not the token).
func (s *Service) newSession(u User, credentialID, listener string, now time.Time) (NewSession, sessionRow) {
	token := newToken()
	row := sessionRow{ID: newID(), TokenHash: hashToken(token), UserID: u.ID, CredentialID: credentialID, Listener: listener,
		CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(s.cfg.SessionMax)}
	return NewSession{Token: token, Session: Session{ID: row.ID, Listener: listener, CredentialID: credentialID,
		CreatedAt: now, ExpiresAt: row.ExpiresAt, User: u}}, row
}

// Authenticate returns the session a cookie token stands for on a listener, and marks it seen. It refuses
// (ErrNoSession) a token that is unknown, ended, idle too long, past its absolute lifetime, from the other
// listener, or whose user is suspended or credential revoked.
//
// Every request of a signed-in user runs it: the session, its user and the passkey's state are one statement
// (one round trip), and the last-seen time is written at most once per touchEvery. The row is read through
// store.QueryRow and scanned by hand, not by gorm's Scan, which records the statement with its arguments
// spelled out (the token's hash included) and fills the structs by reflection: a fifth of the session
// check's CPU, for every request (TestAuthenticateReadsTheWholeUser holds the columns to User's fields).
func (s *Service) Authenticate(ctx context.Context, listener, token string) (Session, error) {
	if token == "" {
		return Session{}, ErrNoSession
	}
	now := s.now().UTC()
	db := s.db.WithContext(ctx)
	var (
		row    sessionRow
		u      User
		usable bool
	)
	// One row at most: token_hash is unique.
	err := store.QueryRow(ctx, db, `SELECT `+userColumns+`, s.id, s.credential_id, s.listener, s.created_at, s.last_seen_at, s.expires_at,
			(u.status = ? AND EXISTS (SELECT 1 FROM credentials c WHERE c.id = s.credential_id AND c.revoked_at IS NULL)) AS usable
		FROM sessions s JOIN users u ON u.id = s.user_id
		WHERE s.token_hash = ? AND s.listener = ? AND s.ended_at IS NULL`, StatusActive, hashToken(token), listener).
		Scan(append(u.fields(), &row.ID, &row.CredentialID, &row.Listener, &row.CreatedAt, &row.LastSeenAt, &row.ExpiresAt,
			&usable)...)
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, ErrNoSession
	}
	if err != nil {
		return Session{}, fmt.Errorf("read session: %w", err)
	}
	row.UserID = u.ID
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
	// The user, active, and the session's passkey, not revoked: either missing ends it here.
	if !usable {
		return Session{}, ErrNoSession
	}
	// Last seen is written at most once per touchEvery: a page's many requests cost one write, not one each. The
	// session may so end up to that much before its idle timeout, never after it. The write does not wait for
	// the WAL flush (store.NoFlushWaitJoin's rule): a crash that loses it only makes the session look idle sooner.
	if now.Sub(row.LastSeenAt) >= s.touchEvery(listener) {
		if err := db.Exec("UPDATE sessions SET last_seen_at = ?"+store.NoFlushWaitJoin(db, "FROM")+" WHERE id = ?",
			now, row.ID).Error; err != nil {
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
