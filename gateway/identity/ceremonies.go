package identity

import (
	"context"
	"database/sql"
	"encoding/base64"
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
	s.sweepCeremonies(s.db.WithContext(ctx), now)
	// Written without waiting for the WAL flush (store.NoFlushWaitJoin's rule): a ceremony lost in a crash is
	// harmless, its finish fails and the user starts again; and nothing durable can rest on it. Every sign-in
	// begins here: store.Exec, not gorm's statement building.
	if _, err := store.Exec(ctx, s.db, `INSERT INTO ceremonies (id, kind, listener, user_id, invitation_id, session_data, created_at, expires_at)
		SELECT ?, ?, ?, ?, ?, ?, ?, ?`+store.NoFlushWaitJoin(s.db, "FROM"), row.ID, row.Kind, row.Listener, row.UserID,
		row.InvitationID, row.SessionData, row.CreatedAt, row.ExpiresAt); err != nil {
		return nil, "", fmt.Errorf("store ceremony: %w", err)
	}
	return opts, row.ID, nil
}

// sweepEvery is how often a process forgets abandoned ceremonies: not on every begin, where it was one more
// round trip each time.
const sweepEvery = time.Minute

// sweepCeremonies forgets ceremonies abandoned, and sign-ins used, whose time ended over an hour ago, at most
// once per sweepEvery, so that the tables stay small; a failure here is harmless (the next sweep does it). The
// hour covers instances whose clocks differ: a used sign-in is forgotten only when every instance's clock
// refuses it as expired.
func (s *Service) sweepCeremonies(db *gorm.DB, now time.Time) {
	last := s.lastSweep.Load()
	if now.UnixNano()-last < int64(sweepEvery) || !s.lastSweep.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	db.Where("expires_at < ?", now.Add(-time.Hour)).Delete(&ceremonyRow{})
	db.Exec("DELETE FROM used_sign_ins WHERE expires_at < ?", now.Add(-time.Hour))
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

// signInRead is what a sign-in's read found: its ceremony's state (from the ceremony's sealed id), and the
// user its assertion's handle names with the passkey the assertion names if it is theirs and active (or
// lookupErr: ErrNotFound, no such user), for the verification's lookup.
type signInRead struct {
	sd        webauthn.SessionData
	user      waUser
	lookupErr error
}

// readSignIn reads, in one statement that writes nothing, whether the ceremony c was used already
// (ErrCeremonyNotFound) beside the user a user handle names and the passkey credentialID (the assertion's)
// names, if it is that user's and not revoked. The verification needs no other passkey of the user (a
// discoverable sign-in allows any of theirs, and the library looks for the one the assertion names): the
// passkey is found by its primary key, where reading all of the user's went through their index every time.
//
// It does not use the ceremony up: the sign-in's write does, in the statement (or transaction) that opens
// the session, and every failure after this read does (useSignIn). Single use is that INSERT's: of two
// finishes of one ceremony, only the one whose INSERT adds the row writes anything.
//
// Every sign-in runs it: it goes through store.QueryRow, not gorm's statement building and reflection.
func (s *Service) readSignIn(ctx context.Context, c signInCeremony, handle, credentialID []byte) (signInRead, error) {
	var (
		used                                        bool
		uID, uRole, uName, uProID, uPerson, uStatus sql.NullString
		uCreated, cCreated, cLastUsed               sql.NullTime
		cID, cUser, cData, cFormat                  sql.NullString
		cCount                                      sql.NullInt64
		uHandle                                     []byte
	)
	// One row: the ceremony's use by its primary key, the user by their unique handle, the passkey by its id.
	err := store.QueryRow(ctx, s.db, `SELECT EXISTS (SELECT 1 FROM used_sign_ins WHERE id = ?),
			u.id, u.webauthn_id, u.role, u.display_name, u.professional_id, u.person_id, u.status, u.created_at,
			c.id, c.user_id, c.data, c.sign_count, c.attestation_format, c.created_at, c.last_used_at
		FROM (SELECT 1 AS one) AS k LEFT JOIN users u ON u.webauthn_id = ?
			LEFT JOIN credentials c ON c.id = ? AND c.user_id = u.id AND c.revoked_at IS NULL`,
		c.ID, handle, base64.RawURLEncoding.EncodeToString(credentialID)).
		Scan(&used, &uID, &uHandle, &uRole, &uName, &uProID, &uPerson, &uStatus, &uCreated,
			&cID, &cUser, &cData, &cCount, &cFormat, &cCreated, &cLastUsed)
	if err != nil {
		return signInRead{}, fmt.Errorf("read sign-in: %w", err)
	}
	if used {
		return signInRead{}, ErrCeremonyNotFound
	}
	read := signInRead{sd: c.Session}
	if !uID.Valid {
		read.lookupErr = ErrNotFound
	} else {
		read.user.u = User{ID: uID.String, WebAuthnID: uHandle, Role: uRole.String, DisplayName: uName.String,
			ProfessionalID: uProID.String, PersonID: uPerson.String, Status: uStatus.String, CreatedAt: uCreated.Time}
	}
	if cID.Valid {
		c := Credential{ID: cID.String, UserID: cUser.String, Data: cData.String, SignCount: cCount.Int64,
			AttestationFormat: cFormat.String, CreatedAt: cCreated.Time}
		if cLastUsed.Valid {
			c.LastUsedAt = &cLastUsed.Time
		}
		if err := read.user.add([]Credential{c}); err != nil {
			return signInRead{}, err
		}
	}
	return read, nil
}
