package identity

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
)

// Errors of one person, one vote.
var (
	// ErrProfessionalIDTaken: a professional id is one person; a second account with it needs an admin to link
	// the two as one person (SamePersonAs).
	ErrProfessionalIDTaken = errors.New("this professional identifier is already another account's: link the accounts as one person")
	// ErrBadPersonLink: SamePersonAs names no user, or a user with another professional id.
	ErrBadPersonLink = errors.New("the account to link must exist and carry the same professional identifier")
	// ErrBadText: a name or identifier holds a control character or invalid UTF-8.
	ErrBadText = errors.New("text holds control characters or invalid UTF-8")
)

// personFor says which person a new account with professionalID is: the linked user's person when the admin
// linked it (and the professional ids agree), "" (a new person) when the professional id is nobody's yet.
func (s *Service) personFor(ctx context.Context, db *gorm.DB, professionalID, samePersonAs string) (string, error) {
	if samePersonAs != "" {
		var u User
		err := db.WithContext(ctx).Where("id = ?", samePersonAs).Take(&u).Error
		if errors.Is(err, gorm.ErrRecordNotFound) || (err == nil && (u.ProfessionalID == "" || u.ProfessionalID != professionalID)) {
			return "", ErrBadPersonLink
		}
		if err != nil {
			return "", fmt.Errorf("linked user: %w", err)
		}
		return u.PersonID, nil
	}
	if professionalID == "" {
		return "", nil
	}
	var n int64
	if err := db.WithContext(ctx).Model(&User{}).Where("professional_id = ?", professionalID).Count(&n).Error; err != nil {
		return "", fmt.Errorf("professional id: %w", err)
	}
	if n > 0 {
		return "", ErrProfessionalIDTaken
	}
	return "", nil
}

// checkPerson, inside registration's transaction, checks that no account of another person took the
// professional id since the invitation was made (two invitations with one id, neither linked).
func checkPerson(tx *gorm.DB, u User) error {
	if u.ProfessionalID == "" {
		return nil
	}
	var n int64
	if err := tx.Model(&User{}).Where("professional_id = ? AND person_id <> ?", u.ProfessionalID, u.PersonID).Count(&n).Error; err != nil {
		return fmt.Errorf("professional id: %w", err)
	}
	if n > 0 {
		return ErrProfessionalIDTaken
	}
	return nil
}

// auditRefusedInvitation records a refused invitation with its reason code, never the identifier.
func (s *Service) auditRefusedInvitation(ctx context.Context, actor string, cause error) {
	reason := "professional_id_taken"
	if errors.Is(cause, ErrBadPersonLink) {
		reason = "bad_person_link"
	}
	audit.Record(context.WithoutCancel(ctx), s.db, audit.Event{At: s.now().UTC(), Actor: actor, Action: "invitation.refused",
		Subject: "invitations", Details: map[string]any{"reason": reason}})
}

// checkText refuses control characters (newline and tab included: these are one-line values) and invalid
// UTF-8 in names and identifiers.
func checkText(values ...string) error {
	for _, v := range values {
		if !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl) {
			return ErrBadText
		}
	}
	return nil
}
