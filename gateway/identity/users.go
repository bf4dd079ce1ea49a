package identity

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

// User is one account. Accounts of one person (one professional id, linked by an admin) share PersonID.
type User struct {
	ID             string
	WebAuthnID     []byte `gorm:"column:webauthn_id"`
	Role           string
	DisplayName    string
	ProfessionalID string
	PersonID       string
	Status         string
	CreatedAt      time.Time
}

// TableName tells gorm the table.
func (User) TableName() string { return "users" }

// Credential is one passkey of a user.
type Credential struct {
	ID                string // base64url of the credential id
	UserID            string
	Data              string // webauthn.Credential as JSON
	SignCount         int64
	AttestationFormat string
	CreatedAt         time.Time
	LastUsedAt        *time.Time
	RevokedAt         *time.Time
}

// TableName tells gorm the table.
func (Credential) TableName() string { return "credentials" }

func (c Credential) webauthn() (webauthn.Credential, error) {
	var wc webauthn.Credential
	if err := json.Unmarshal([]byte(c.Data), &wc); err != nil {
		return wc, fmt.Errorf("credential %s: %w", c.ID, err)
	}
	return wc, nil
}

// waUser adapts a user and their active credentials to go-webauthn, and keeps the credentials' rows as read
// (recordUse writes the sign count back on condition that it is still the one read here).
type waUser struct {
	u     User
	creds []webauthn.Credential
	rows  []Credential
}

// stored returns the row of one of the user's active credentials, as loaded.
func (w waUser) stored(id []byte) (Credential, bool) {
	want := base64.RawURLEncoding.EncodeToString(id)
	for _, r := range w.rows {
		if r.ID == want {
			return r, true
		}
	}
	return Credential{}, false
}

func (w waUser) WebAuthnID() []byte                         { return w.u.WebAuthnID }
func (w waUser) WebAuthnName() string                       { return w.u.ID }
func (w waUser) WebAuthnDisplayName() string                { return w.u.DisplayName }
func (w waUser) WebAuthnCredentials() []webauthn.Credential { return w.creds }

func (s *Service) loadWAUser(tx *gorm.DB, u User) (waUser, error) {
	var rows []Credential
	if err := tx.Where("user_id = ? AND revoked_at IS NULL", u.ID).Find(&rows).Error; err != nil {
		return waUser{}, fmt.Errorf("load credentials: %w", err)
	}
	w := waUser{u: u}
	if err := w.add(rows); err != nil {
		return waUser{}, err
	}
	return w, nil
}

// add adds credentials' rows to w.
func (w *waUser) add(rows []Credential) error {
	for _, r := range rows {
		wc, err := r.webauthn()
		if err != nil {
			return err
		}
		w.creds, w.rows = append(w.creds, wc), append(w.rows, r)
	}
	return nil
}

// UserWithCredentials is a user as the admin pages list them.
type UserWithCredentials struct {
	User
	Credentials []Credential
}

// Users lists one page of the users, newest first, each with their credentials, and the total.
func (s *Service) Users(ctx context.Context, p store.Page) (store.Listed[UserWithCredentials], error) {
	var users []User
	total, err := store.NewestFirst(s.db.WithContext(ctx).Model(&User{}), "created_at", "id", p, &users)
	if err != nil {
		return store.Listed[UserWithCredentials]{}, fmt.Errorf("list users: %w", err)
	}
	page := store.PageOf(users, p, total, func(u User) store.Cursor { return store.Cursor{At: u.CreatedAt, ID: u.ID} })
	ids := make([]string, len(page.Items))
	for i, u := range page.Items {
		ids[i] = u.ID
	}
	var creds []Credential
	if err := s.db.WithContext(ctx).Where("user_id IN ?", ids).Order("created_at, id").Find(&creds).Error; err != nil {
		return store.Listed[UserWithCredentials]{}, fmt.Errorf("list credentials: %w", err)
	}
	byUser := map[string][]Credential{}
	for _, c := range creds {
		byUser[c.UserID] = append(byUser[c.UserID], c)
	}
	out := store.Listed[UserWithCredentials]{Items: make([]UserWithCredentials, len(page.Items)), Total: page.Total, Next: page.Next}
	for i, u := range page.Items {
		out.Items[i] = UserWithCredentials{User: u, Credentials: byUser[u.ID]}
	}
	return out, nil
}

// User returns one user.
//
// A retrieval reads its requester's account through it (the rendering names them): one statement scanned by
// hand, as Authenticate's, not gorm's statement building and reflection (a twentieth of a retrieval's server CPU
// on PostgreSQL went there).
func (s *Service) User(ctx context.Context, id string) (User, error) {
	var u User
	err := store.QueryRow(ctx, s.db.WithContext(ctx), `SELECT `+userColumns+` FROM users u WHERE u.id = ?`, id).Scan(u.fields()...)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("read user: %w", err)
	}
	return u, nil
}

// userColumns are a User's columns (the users table as u), in the order of fields: the statements read on every
// request scan them by hand (TestAuthenticateReadsTheWholeUser holds them to the table and the struct).
const userColumns = `u.id, u.webauthn_id, u.role, u.display_name, u.professional_id, u.person_id, u.status, u.created_at`

// fields are where userColumns scan to.
func (u *User) fields() []any {
	return []any{&u.ID, &u.WebAuthnID, &u.Role, &u.DisplayName, &u.ProfessionalID, &u.PersonID, &u.Status, &u.CreatedAt}
}

// Suspend stops a user at once: their status changes and every open session ends, in one transaction with
// its audit row. Suspending a suspended user changes nothing and says ErrNotFound.
func (s *Service) Suspend(ctx context.Context, actor, userID string) error {
	now := s.now().UTC()
	return store.Tx(ctx, s.db, func(tx *gorm.DB) error {
		res := tx.Model(&User{}).Where("id = ? AND status = ?", userID, StatusActive).Update("status", StatusSuspended)
		if res.Error != nil {
			return fmt.Errorf("suspend user: %w", res.Error)
		}
		if res.RowsAffected != 1 {
			return ErrNotFound
		}
		ended := tx.Model(&sessionRow{}).Where("user_id = ? AND ended_at IS NULL", userID).Update("ended_at", now)
		if ended.Error != nil {
			return fmt.Errorf("end sessions: %w", ended.Error)
		}
		return audit.Append(tx, audit.Event{At: now, Actor: actor, Action: "user.suspended", Subject: "user:" + userID,
			Details: map[string]any{"sessions_ended": ended.RowsAffected}})
	})
}

// RevokeCredential stops a passkey at once, ending the sessions it opened.
func (s *Service) RevokeCredential(ctx context.Context, actor, credentialID string) error {
	now := s.now().UTC()
	return store.Tx(ctx, s.db, func(tx *gorm.DB) error {
		var c Credential
		if err := tx.Where("id = ? AND revoked_at IS NULL", credentialID).Take(&c).Error; err != nil {
			if err == gorm.ErrRecordNotFound {
				return ErrNotFound
			}
			return fmt.Errorf("revoke credential: %w", err)
		}
		res := tx.Model(&Credential{}).Where("id = ? AND revoked_at IS NULL", credentialID).Update("revoked_at", now)
		if res.Error != nil {
			return fmt.Errorf("revoke credential: %w", res.Error)
		}
		if res.RowsAffected != 1 {
			return ErrNotFound
		}
		ended := tx.Model(&sessionRow{}).Where("credential_id = ? AND ended_at IS NULL", credentialID).Update("ended_at", now)
		if ended.Error != nil {
			return fmt.Errorf("end sessions: %w", ended.Error)
		}
		return audit.Append(tx, audit.Event{At: now, Actor: actor, Action: "credential.revoked", Subject: "credential:" + credentialID,
			Details: map[string]any{"user_id": c.UserID, "sessions_ended": ended.RowsAffected}})
	})
}
