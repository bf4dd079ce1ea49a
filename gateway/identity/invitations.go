package identity

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

// Invitation is a one-time link for a role. Only the hash of its token is stored.
type Invitation struct {
	ID             string
	TokenHash      string
	Role           string
	DisplayName    string
	ProfessionalID string
	CreatedBy      string
	CreatedAt      time.Time
	ExpiresAt      time.Time
	UsedAt         *time.Time
	UserID         *string
}

// TableName tells gorm the table.
func (Invitation) TableName() string { return "invitations" }

// NewInvitation is what an admin (or the CLI) asks for.
type NewInvitation struct {
	Role           string
	DisplayName    string
	ProfessionalID string
}

// CreatedInvitation is the one time the token exists in clear: the caller shows the link and forgets it.
type CreatedInvitation struct {
	Invitation
	Token string
	Link  string // on the public origin of the role's listener
}

// Invite makes an invitation in one transaction with its audit row. actor is "user:<id>" or "cli".
func (s *Service) Invite(ctx context.Context, actor string, in NewInvitation) (CreatedInvitation, error) {
	in.DisplayName = strings.TrimSpace(in.DisplayName)
	in.ProfessionalID = strings.TrimSpace(in.ProfessionalID)
	if !ValidRole(in.Role) {
		return CreatedInvitation{}, fmt.Errorf("%w %q (want one of %s)", ErrInvalidRole, in.Role, strings.Join(Roles, ", "))
	}
	if n := utf8.RuneCountInString(in.DisplayName); n == 0 || n > 200 {
		return CreatedInvitation{}, ErrBadDisplayName
	}
	if utf8.RuneCountInString(in.ProfessionalID) > 64 {
		return CreatedInvitation{}, ErrBadProfessionalID
	}
	now := s.now().UTC()
	token := newToken()
	inv := Invitation{ID: newID(), TokenHash: hashToken(token), Role: in.Role, DisplayName: in.DisplayName,
		ProfessionalID: in.ProfessionalID, CreatedBy: actor, CreatedAt: now, ExpiresAt: now.Add(s.cfg.InvitationTTL)}
	err := store.Tx(ctx, s.db, func(tx *gorm.DB) error {
		if err := tx.Create(&inv).Error; err != nil {
			return fmt.Errorf("create invitation: %w", err)
		}
		return audit.Append(tx, audit.Event{At: now, Actor: actor, Action: "invitation.created", Subject: "invitation:" + inv.ID,
			Details: map[string]any{"role": inv.Role, "expires_at": inv.ExpiresAt.Format(time.RFC3339)}})
	})
	if err != nil {
		return CreatedInvitation{}, err
	}
	return CreatedInvitation{Invitation: inv, Token: token, Link: s.InvitationLink(inv.Role, token)}, nil
}

// InvitationLink is the page a person opens to register.
func (s *Service) InvitationLink(role, token string) string {
	return s.orig[ListenerFor(role)] + "/invite/" + token
}

// PendingInvitations lists one page of the invitations neither used nor expired, newest first, and the total.
func (s *Service) PendingInvitations(ctx context.Context, p store.Page) (store.Listed[Invitation], error) {
	var rows []Invitation
	total, err := store.NewestFirst(s.db.WithContext(ctx).Model(&Invitation{}).
		Where("used_at IS NULL AND expires_at > ?", s.now().UTC()), "created_at", "id", p, &rows)
	if err != nil {
		return store.Listed[Invitation]{}, fmt.Errorf("list invitations: %w", err)
	}
	return store.PageOf(rows, p, total, func(i Invitation) store.Cursor { return store.Cursor{At: i.CreatedAt, ID: i.ID} }), nil
}

// OpenInvitation finds a usable invitation by its token for a listener. Unknown, used, expired and
// other-listener invitations all say ErrInvitationInvalid: the page must not tell them apart.
func (s *Service) OpenInvitation(ctx context.Context, listener, token string) (Invitation, error) {
	var inv Invitation
	err := s.db.WithContext(ctx).Where("token_hash = ?", hashToken(token)).Take(&inv).Error
	if err == gorm.ErrRecordNotFound {
		return inv, ErrInvitationInvalid
	}
	if err != nil {
		return inv, fmt.Errorf("open invitation: %w", err)
	}
	if inv.UsedAt != nil || !s.now().Before(inv.ExpiresAt) || ListenerFor(inv.Role) != listener {
		return inv, ErrInvitationInvalid
	}
	return inv, nil
}
